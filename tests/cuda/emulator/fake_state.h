// What the fake libcuda shares with the fake cuBLASLt in the same shared object: the device
// allocations (to check pointers) and stream capture (to record work into a graph).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace kiln_fake {

// A CUBIN of a program whose kernels were compiled for the host at nvrtcCompileProgram carries
// this tag, then the host object's file name (in the emulator's `generated` folder), in its bytes.
constexpr char kHostObjectTag[] = "kiln-emu-host-object:";
// The folder that holds the host objects of NVRTC programs: `generated` beside this library.
std::string hostObjectDir();

// true when [p, p + n) lies inside one live device allocation
bool isDeviceRange(uintptr_t p, size_t n);
// Runs `op` now, or records it when `stream` is being captured. Returns a CUresult.
int enqueue(uint64_t stream, const std::function<int()>& op);
// Remembers a detail for the next cuGetErrorString of `code`, prints it, and returns `code`.
int fail(int code, const std::string& detail);

}  // namespace kiln_fake
