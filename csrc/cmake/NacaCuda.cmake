# The CUDA side of the build, included before find_package(Torch).
#
# A CUDA build of torch looks for the toolkit and the GPU's architecture even when
# only the CPU kernels are built; on a machine with nvcc but no GPU (CI) it needs
# both named. A minimal toolkit (nvcc and the runtime) lacks the headers and
# libnvrtc that torch's CUDA headers and config need: torch's pip wheels ship them
# (site-packages/nvidia/*/), found here through the Python interpreter when present.
#
# Inputs: NACA_CUDA, CUDA_TOOLKIT_ROOT_DIR (default /usr/local/cuda when it holds
# nvcc), the environment's TORCH_CUDA_ARCH_LIST (default: the GPUs nvidia-smi
# reports, else 9.0), Python3_EXECUTABLE (to find the pip wheels' CUDA files).
# Defines naca_cuda_target(<target>): the nvcc flags of the kernels.

if(NOT DEFINED CUDA_TOOLKIT_ROOT_DIR AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CUDA_TOOLKIT_ROOT_DIR /usr/local/cuda)
endif()

if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(_naca_arch "")
  find_program(NACA_NVIDIA_SMI nvidia-smi)
  if(NACA_NVIDIA_SMI)
    execute_process(COMMAND ${NACA_NVIDIA_SMI} --query-gpu=compute_cap --format=csv,noheader
                    OUTPUT_VARIABLE _naca_arch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET
                    RESULT_VARIABLE _naca_smi_rc)
    if(NOT _naca_smi_rc EQUAL 0)
      set(_naca_arch "")
    endif()
    string(REGEX REPLACE "[ \t\r\n]+" ";" _naca_arch "${_naca_arch}")
    list(REMOVE_DUPLICATES _naca_arch)
  endif()
  if(NOT _naca_arch)
    set(_naca_arch "9.0")
  endif()
  set(ENV{TORCH_CUDA_ARCH_LIST} "${_naca_arch}")
  message(STATUS "TorchPluginNaca: TORCH_CUDA_ARCH_LIST=$ENV{TORCH_CUDA_ARCH_LIST}")
endif()

# The pip wheels' CUDA files, if any: libnvrtc for torch's config, headers for the kernels.
set(NACA_PIP_CUDA_INCLUDES "")
if(NOT Python3_EXECUTABLE)
  find_package(Python3 COMPONENTS Interpreter QUIET)
endif()
if(Python3_EXECUTABLE)
  execute_process(COMMAND ${Python3_EXECUTABLE} -c "import nvidia; print(';'.join(nvidia.__path__))"
                  OUTPUT_VARIABLE _naca_pip_nvidia OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_naca_pip_nvidia)
    if(NOT CUDA_nvrtc_LIBRARY)
      file(GLOB _naca_nvrtc ${_naca_pip_nvidia}/*/lib/libnvrtc.so*)
      list(FILTER _naca_nvrtc EXCLUDE REGEX "builtins|alt")
      if(_naca_nvrtc)
        list(GET _naca_nvrtc 0 _naca_nvrtc)
        set(CUDA_nvrtc_LIBRARY ${_naca_nvrtc} CACHE FILEPATH "libnvrtc from torch's pip wheels")
      endif()
    endif()
    file(GLOB_RECURSE _naca_cusparse ${_naca_pip_nvidia}/*/include/cusparse.h)
    foreach(_h IN LISTS _naca_cusparse)
      get_filename_component(_d ${_h} DIRECTORY)
      list(APPEND NACA_PIP_CUDA_INCLUDES ${_d})
    endforeach()
  endif()
endif()

if(NACA_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND CUDA_TOOLKIT_ROOT_DIR)
    set(CMAKE_CUDA_COMPILER ${CUDA_TOOLKIT_ROOT_DIR}/bin/nvcc)
  endif()
  enable_language(CUDA)
  # CMake before 3.26 does not know nvcc's C++20 flag; torch's headers need it.
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
endif()

function(naca_cuda_target target)
  # torch's config has put the -gencode flags of TORCH_CUDA_ARCH_LIST and
  # --expt-relaxed-constexpr in CMAKE_CUDA_FLAGS; these are the rest of what torch's
  # own extension builds pass to nvcc.
  target_compile_options(${target} PRIVATE
    "$<$<COMPILE_LANGUAGE:CUDA>:-lineinfo;-D__CUDA_NO_HALF_OPERATORS__;-D__CUDA_NO_HALF_CONVERSIONS__;-D__CUDA_NO_BFLOAT16_CONVERSIONS__;-D__CUDA_NO_HALF2_OPERATORS__>")
  if(NACA_PIP_CUDA_INCLUDES)
    target_include_directories(${target} PRIVATE ${NACA_PIP_CUDA_INCLUDES})
  endif()
endfunction()
