// The Python module torch_plugin._C. Importing it runs the TORCH_LIBRARY
// registrations of this library; the ops are then reached through
// torch.ops.naca.*. No Python API of its own: it is an empty module.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "torch_plugin native ops (torch.ops.naca)", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}
