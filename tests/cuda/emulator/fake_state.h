// What the parts of the fake libcuda (fake_cuda.cc, fake_streams.cc) share with each other and
// with the fake cuBLASLt in the same shared object: the device allocations (to check pointers),
// the driver's state and stream capture (to record work into a graph).
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

// The CUresult codes the fake libcuda returns.
namespace cu {
constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;
constexpr int kOutOfMemory = 2;
constexpr int kNotInitialized = 3;
constexpr int kNoDevice = 100;
constexpr int kInvalidDevice = 101;
constexpr int kInvalidImage = 200;
constexpr int kInvalidContext = 201;
constexpr int kInvalidHandle = 400;
constexpr int kNotFound = 500;
constexpr int kIllegalAddress = 700;
constexpr int kLaunchFailed = 719;
constexpr int kCaptureUnsupported = 900;
constexpr int kCaptureInvalidated = 901;
}  // namespace cu

// CUDA_SUCCESS when the driver is initialised and a context is current, else the error code.
int ready();
// A new handle (stream, event, module, graph, ...), unique in the process.
uint64_t newHandle();
// Stream 0 or a created stream.
bool validStream(uint64_t s);
// Whether a stream is being captured now.
bool isCapturing();
// CUDA_SUCCESS, or the error of a synchronous host copy during a capture (which it invalidates).
int hostCopyAllowed();

// true when [p, p + n) lies inside one live device allocation
bool isDeviceRange(uintptr_t p, size_t n);
// Runs `op` now, or records it when `stream` is being captured. Returns a CUresult.
int enqueue(uint64_t stream, const std::function<int()>& op);
// Remembers a detail for the next cuGetErrorString of `code`, prints it, and returns `code`.
int fail(int code, const std::string& detail);

}  // namespace kiln_fake
