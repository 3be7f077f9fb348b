// The emulated kernels by name. The build (build_emulator.ts) compiles every kernels/cuda/*.cu as
// host C++ into one file and lists each extern "C" __global__ function with KILN_EMU_KERNEL, which
// records how to call it from cuLaunchKernel's kernelParams (argument i is *(Ai*)params[i]) and
// each argument's size and pointer-ness, so the fake driver can copy and check arguments.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln_emu {

struct KernelEntry {
  const char* name;
  void (*invoke)(void** params);
  std::vector<size_t> argSizes;
  std::vector<bool> argIsPointer;
};

template <class Sig>
struct Invoker;

template <class... A>
struct Invoker<void(A...)> {
  template <void (*F)(A...), size_t... I>
  static void call(void** p, std::index_sequence<I...>) {
    F(*static_cast<std::remove_cv_t<A>*>(p[I])...);
  }
  template <void (*F)(A...)>
  static void invoke(void** p) {
    call<F>(p, std::index_sequence_for<A...>{});
  }
  template <void (*F)(A...)>
  static KernelEntry entry(const char* name) {
    return KernelEntry{name, &invoke<F>, {sizeof(A)...}, {std::is_pointer_v<A>...}};
  }
};

#define KILN_EMU_KERNEL(fn) ::kiln_emu::Invoker<decltype(fn)>::template entry<fn>(#fn)

// Defined by the generated kernels file.
const std::vector<KernelEntry>& kernels();

}  // namespace kiln_emu
