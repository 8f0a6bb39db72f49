// Calls naca::modulation through the dispatcher by name only: no header of the
// package, no symbol of libnaca. The op is there only if libnaca was linked (and
// so loaded, running its registrations) despite --as-needed.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <iostream>

int main() {
  const auto op = c10::Dispatcher::singleton().findSchema({"naca::modulation", ""});
  if (!op.has_value()) {
    std::cerr << "dispatcher_only: naca::modulation is not registered (libnaca was not loaded)\n";
    return 1;
  }
  // f(0) = 1, f(lam) = 0, f(lam / 4) = theta.
  torch::jit::Stack stack{at::tensor({0.0, 0.5, 0.125}, at::kDouble), 0.5, 1.2};
  op->callBoxed(stack);
  const auto f = stack[0].toTensor();
  if (!at::allclose(f, at::tensor({1.0, 0.0, 1.2}, at::kDouble))) {
    std::cerr << "dispatcher_only: unexpected f = " << f << "\n";
    return 1;
  }
  std::cout << "dispatcher_only: ok\n";
  return 0;
}
