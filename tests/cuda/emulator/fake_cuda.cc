// A fake libcuda for tests on machines without a GPU: device memory is host memory (each
// allocation ends at a PROT_NONE guard page, so overruns fault) and kernels are kiln's own .cu
// files compiled as host C++ and run by the fiber emulator; streams, events and graph capture are
// in fake_streams.cc. A module compiled from a generated program (see fake_nvrtc.cc) brings
// its kernels in a host object, loaded with the module. Calls are checked the way the driver checks them (initialised,
// context current, pointers inside live allocations, no host copies while capturing), and a
// refused call explains itself through cuGetErrorString.
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fake_state.h"
#include "fibers.h"
#include "kernel_registry.h"

namespace {

using namespace kiln_fake::cu;

constexpr unsigned int kMaxDynamicShared = 48 * 1024;
constexpr unsigned int kMaxSharedOptIn = 227 * 1024;  // sm_90's per-block limit

struct Allocation {
  void* mapping;
  size_t mappingBytes;
  size_t bytes;
};

bool initialised = false;
bool contextCurrent = false;
int primaryRefs = 0;
std::map<uintptr_t, Allocation> allocations;
size_t allocatedBytes = 0;
std::map<uint64_t, std::vector<unsigned char>> modules;
// the kernels of a module's host object, for modules that have one
std::map<uint64_t, const std::vector<kiln_emu::KernelEntry>*> moduleKernels;
std::map<uint64_t, const kiln_emu::KernelEntry*> functions;
// the dynamic shared memory a function opted in to (cuFuncSetAttribute), when above the default
std::map<uint64_t, unsigned int> sharedOptIn;
uint64_t nextHandle = 0x1000;
int lastCode = 0;
std::string lastDetail;
std::string errorText;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));
const size_t kTotalMemory = size_t{8} << 30;

int devices() {
  const char* env = std::getenv("KILN_FAKE_CUDA_DEVICES");
  return env ? std::atoi(env) : 1;
}

const char* codeName(int code) {
  switch (code) {
    case kSuccess: return "CUDA_SUCCESS";
    case kInvalidValue: return "CUDA_ERROR_INVALID_VALUE";
    case kOutOfMemory: return "CUDA_ERROR_OUT_OF_MEMORY";
    case kNotInitialized: return "CUDA_ERROR_NOT_INITIALIZED";
    case kNoDevice: return "CUDA_ERROR_NO_DEVICE";
    case kInvalidDevice: return "CUDA_ERROR_INVALID_DEVICE";
    case kInvalidImage: return "CUDA_ERROR_INVALID_IMAGE";
    case kInvalidContext: return "CUDA_ERROR_INVALID_CONTEXT";
    case kInvalidHandle: return "CUDA_ERROR_INVALID_HANDLE";
    case kNotFound: return "CUDA_ERROR_NOT_FOUND";
    case kIllegalAddress: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case kLaunchFailed: return "CUDA_ERROR_LAUNCH_FAILED";
    case kCaptureUnsupported: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
    case kCaptureInvalidated: return "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED";
    default: return nullptr;
  }
}

}  // namespace

namespace kiln_fake {

bool isDeviceRange(uintptr_t p, size_t n) {
  auto it = allocations.upper_bound(p);
  if (it == allocations.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second.bytes;
}

int ready() {
  if (!initialised) return kNotInitialized;
  if (!contextCurrent) return kInvalidContext;
  return kSuccess;
}

uint64_t newHandle() { return nextHandle++; }

int fail(int code, const std::string& detail) {
  lastCode = code;
  lastDetail = detail;
  std::fprintf(stderr, "[fake libcuda] %s: %s\n", codeName(code) ? codeName(code) : "error", detail.c_str());
  return code;
}

}  // namespace kiln_fake

using kiln_fake::fail;
using kiln_fake::hostCopyAllowed;
using kiln_fake::ready;
using kiln_fake::validStream;

extern "C" {

int cuInit(unsigned int flags) {
  if (flags != 0) return fail(kInvalidValue, "cuInit flags must be 0");
  if (const char* e = std::getenv("KILN_FAKE_CUDA_INIT_ERROR")) return fail(std::atoi(e), "KILN_FAKE_CUDA_INIT_ERROR");
  initialised = true;
  return kSuccess;
}

int cuDriverGetVersion(int* v) {
  *v = 13000;
  return kSuccess;
}

int cuGetErrorName(int code, const char** name) {
  const char* n = codeName(code);
  if (!n) return kInvalidValue;
  *name = n;
  return kSuccess;
}

int cuGetErrorString(int code, const char** text) {
  const char* n = codeName(code);
  if (!n) return kInvalidValue;
  errorText = std::string("emulated ") + n;
  if (code == lastCode && !lastDetail.empty()) errorText += ": " + lastDetail;
  *text = errorText.c_str();
  return kSuccess;
}

int cuDeviceGetCount(int* n) {
  if (!initialised) return kNotInitialized;
  *n = devices();
  return kSuccess;
}

int cuDeviceGet(int* dev, int ordinal) {
  if (!initialised) return kNotInitialized;
  if (ordinal < 0 || ordinal >= devices()) return fail(kInvalidDevice, "no such device ordinal");
  *dev = ordinal;
  return kSuccess;
}

int cuDeviceGetName(char* name, int len, int) {
  std::snprintf(name, len, "Kiln Emulated GPU (CPU fibers)");
  return kSuccess;
}

int cuDeviceGetAttribute(int* value, int attribute, int) {
  if (!initialised) return kNotInitialized;
  switch (attribute) {
    case 16: *value = 4; return kSuccess;   // multiprocessors
    case 75: *value = 9; return kSuccess;   // compute capability major
    case 76: *value = 0; return kSuccess;   // minor
    case 97: *value = kMaxSharedOptIn; return kSuccess;  // shared memory per block, opt-in
    default: return fail(kInvalidValue, "attribute " + std::to_string(attribute) + " is not emulated");
  }
}

int cuDeviceTotalMem_v2(size_t* bytes, int) {
  *bytes = kTotalMemory;
  return kSuccess;
}

int cuDevicePrimaryCtxRetain(uint64_t* ctx, int dev) {
  if (!initialised) return kNotInitialized;
  if (dev < 0 || dev >= devices()) return kInvalidDevice;
  ++primaryRefs;
  *ctx = 0xc0de;
  return kSuccess;
}

int cuDevicePrimaryCtxRelease_v2(int) {
  if (primaryRefs <= 0) return fail(kInvalidContext, "primary context released more often than retained");
  --primaryRefs;
  return kSuccess;
}

int cuCtxSetCurrent(uint64_t ctx) {
  if (!initialised) return kNotInitialized;
  if (ctx != 0xc0de || primaryRefs == 0) return fail(kInvalidContext, "not a retained primary context");
  contextCurrent = true;
  return kSuccess;
}

int cuCtxSynchronize() { return ready(); }

int cuMemGetInfo_v2(size_t* freeBytes, size_t* total) {
  if (int r = ready()) return r;
  *total = kTotalMemory;
  *freeBytes = kTotalMemory - allocatedBytes;
  return kSuccess;
}

int cuMemAlloc_v2(uint64_t* ptr, size_t bytes) {
  if (int r = ready()) return r;
  if (bytes == 0) return fail(kInvalidValue, "cuMemAlloc of 0 bytes");
  if (kiln_fake::isCapturing()) return fail(kCaptureUnsupported, "cuMemAlloc while capturing");
  const size_t rounded = (bytes + 15) & ~size_t{15};
  const size_t pages = (rounded + kPage - 1) / kPage;
  const size_t mappingBytes = (pages + 1) * kPage;
  void* m = mmap(nullptr, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return fail(kOutOfMemory, "mmap failed");
  char* guard = static_cast<char*>(m) + pages * kPage;
  mprotect(guard, kPage, PROT_NONE);
  const uintptr_t p = reinterpret_cast<uintptr_t>(guard - rounded);
  std::memset(reinterpret_cast<void*>(p), 0xA5, rounded);  // uninitialised memory is not zero
  allocations[p] = Allocation{m, mappingBytes, bytes};
  allocatedBytes += bytes;
  *ptr = p;
  return kSuccess;
}

int cuMemFree_v2(uint64_t ptr) {
  if (int r = ready()) return r;
  auto it = allocations.find(ptr);
  if (it == allocations.end()) return fail(kInvalidValue, "cuMemFree of a pointer that is not a live allocation");
  munmap(it->second.mapping, it->second.mappingBytes);
  allocatedBytes -= it->second.bytes;
  allocations.erase(it);
  return kSuccess;
}

int cuMemcpyHtoD_v2(uint64_t dst, const void* src, size_t n) {
  if (int r = ready()) return r;
  if (int r = hostCopyAllowed()) return r;
  if (!kiln_fake::isDeviceRange(dst, n)) return fail(kInvalidValue, "cuMemcpyHtoD destination outside device memory");
  std::memcpy(reinterpret_cast<void*>(dst), src, n);
  return kSuccess;
}

int cuMemcpyDtoH_v2(void* dst, uint64_t src, size_t n) {
  if (int r = ready()) return r;
  if (int r = hostCopyAllowed()) return r;
  if (!kiln_fake::isDeviceRange(src, n)) return fail(kInvalidValue, "cuMemcpyDtoH source outside device memory");
  std::memcpy(dst, reinterpret_cast<const void*>(src), n);
  return kSuccess;
}

int cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, uint64_t stream) {
  if (!validStream(stream)) return fail(kInvalidHandle, "unknown stream");
  return cuMemcpyHtoD_v2(dst, src, n);
}

int cuMemcpyDtoHAsync_v2(void* dst, uint64_t src, size_t n, uint64_t stream) {
  if (!validStream(stream)) return fail(kInvalidHandle, "unknown stream");
  return cuMemcpyDtoH_v2(dst, src, n);
}

int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, uint64_t stream) {
  if (int r = ready()) return r;
  if (!kiln_fake::isDeviceRange(dst, n) || !kiln_fake::isDeviceRange(src, n)) {
    return fail(kInvalidValue, "cuMemcpyDtoDAsync range outside device memory");
  }
  return kiln_fake::enqueue(stream, [=] {
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return kSuccess;
  });
}

int cuMemsetD8Async(uint64_t dst, unsigned char value, size_t n, uint64_t stream) {
  if (int r = ready()) return r;
  if (!kiln_fake::isDeviceRange(dst, n)) return fail(kInvalidValue, "cuMemsetD8Async range outside device memory");
  return kiln_fake::enqueue(stream, [=] {
    std::memset(reinterpret_cast<void*>(dst), value, n);
    return kSuccess;
  });
}

int cuMemsetD32Async(uint64_t dst, unsigned int value, size_t n, uint64_t stream) {
  if (int r = ready()) return r;
  if (dst % 4 != 0 || !kiln_fake::isDeviceRange(dst, n * 4)) return fail(kInvalidValue, "cuMemsetD32Async range");
  return kiln_fake::enqueue(stream, [=] {
    auto* p = reinterpret_cast<unsigned int*>(dst);
    for (size_t i = 0; i < n; ++i) p[i] = value;
    return kSuccess;
  });
}

int cuModuleLoadData(uint64_t* module, const void* image) {
  if (int r = ready()) return r;
  const auto* bytes = static_cast<const unsigned char*>(image);
  if (std::memcmp(bytes, "\x7f" "ELF", 4) != 0) return fail(kInvalidImage, "the image is not an ELF CUBIN");
  // ELF64 header: e_shoff (8 bytes at 0x28), e_shentsize (2 at 0x3a), e_shnum (2 at 0x3c)
  // and e_phoff (8 at 0x20), e_phentsize (2 at 0x36), e_phnum (2 at 0x38): the image ends with
  // the later of the two tables
  uint64_t shoff, phoff;
  uint16_t shentsize, shnum, phentsize, phnum;
  std::memcpy(&shoff, bytes + 0x28, 8);
  std::memcpy(&shentsize, bytes + 0x3a, 2);
  std::memcpy(&shnum, bytes + 0x3c, 2);
  std::memcpy(&phoff, bytes + 0x20, 8);
  std::memcpy(&phentsize, bytes + 0x36, 2);
  std::memcpy(&phnum, bytes + 0x38, 2);
  const size_t shEnd = shoff + static_cast<size_t>(shentsize) * shnum;
  const size_t phEnd = phoff + static_cast<size_t>(phentsize) * phnum;
  const size_t size = shEnd > phEnd ? shEnd : phEnd;
  std::vector<unsigned char> img(bytes, bytes + size);
  const std::vector<kiln_emu::KernelEntry>* hosted = nullptr;
  const std::string tag = std::string(1, '\0') + kiln_fake::kHostObjectTag;
  const auto at = std::search(img.begin(), img.end(), tag.begin(), tag.end());
  if (at != img.end()) {
    const auto nameEnd = std::find(at + tag.size(), img.end(), 0);
    const std::string path = kiln_fake::hostObjectDir() + "/" + std::string(at + tag.size(), nameEnd);
    // never dlclosed: function handles may outlive the module
    void* so = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!so) return fail(kInvalidImage, std::string("the CUBIN's host object did not load (") + dlerror() + "); a CUBIN cached by another emulator build names one that build made");
    using Table = const std::vector<kiln_emu::KernelEntry>* (*)();
    auto table = reinterpret_cast<Table>(dlsym(so, "kiln_emu_program_kernels"));
    if (!table) return fail(kInvalidImage, path + " has no kernel table");
    hosted = table();
  }
  const uint64_t id = nextHandle++;
  modules[id] = std::move(img);
  if (hosted) moduleKernels[id] = hosted;
  *module = id;
  return kSuccess;
}

int cuModuleUnload(uint64_t module) {
  if (modules.erase(module) == 0) return fail(kInvalidHandle, "unknown module");
  moduleKernels.erase(module);
  return kSuccess;
}

int cuModuleGetFunction(uint64_t* fn, uint64_t module, const char* name) {
  if (int r = ready()) return r;
  auto m = modules.find(module);
  if (m == modules.end()) return fail(kInvalidHandle, "unknown module");
  const std::string needle = std::string(name) + '\0';
  const auto& img = m->second;
  bool inImage = false;
  for (size_t i = 0; i + needle.size() <= img.size() && !inImage; ++i) {
    inImage = std::memcmp(img.data() + i, needle.data(), needle.size()) == 0 && (i == 0 || img[i - 1] == 0);
  }
  if (!inImage) return fail(kNotFound, std::string("no function '") + name + "' in the module");
  auto hosted = moduleKernels.find(module);
  for (const auto* table : {hosted == moduleKernels.end() ? nullptr : hosted->second, &kiln_emu::kernels()}) {
    if (!table) continue;
    for (const auto& k : *table) {
      if (std::strcmp(k.name, name) == 0) {
        const uint64_t id = nextHandle++;
        functions[id] = &k;
        *fn = id;
        return kSuccess;
      }
    }
  }
  return fail(kNotFound, std::string("'") + name + "' is in the CUBIN but was not built into the emulator");
}

// Only the dynamic shared memory limit (attribute 8) is emulated, as the driver bounds it.
int cuFuncSetAttribute(uint64_t fn, int attribute, int value) {
  if (int r = ready()) return r;
  if (functions.find(fn) == functions.end()) return fail(kInvalidHandle, "unknown function handle");
  if (attribute != 8) return fail(kInvalidValue, "function attribute " + std::to_string(attribute) + " is not emulated");
  if (value < 0 || static_cast<unsigned int>(value) > kMaxSharedOptIn) return fail(kInvalidValue, "max dynamic shared size " + std::to_string(value) + " over the device's opt-in limit");
  sharedOptIn[fn] = static_cast<unsigned int>(value);
  return kSuccess;
}

int cuLaunchKernel(uint64_t fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by,
                   unsigned int bz, unsigned int sharedBytes, uint64_t stream, void** params, void** extra) {
  if (int r = ready()) return r;
  auto f = functions.find(fn);
  if (f == functions.end()) return fail(kInvalidHandle, "unknown function handle");
  const kiln_emu::KernelEntry& k = *f->second;
  const std::string who = std::string(k.name) + ": ";
  if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535) return fail(kInvalidValue, who + "grid dimensions");
  if (bx == 0 || by == 0 || bz == 0 || static_cast<unsigned long long>(bx) * by * bz > 1024 || bz > 64) {
    return fail(kInvalidValue, who + "block dimensions");
  }
  const auto optIn = sharedOptIn.find(fn);
  const unsigned int sharedLimit = optIn == sharedOptIn.end() ? kMaxDynamicShared : optIn->second;
  if (sharedBytes > sharedLimit) {
    return fail(kInvalidValue, who + "dynamic shared memory of " + std::to_string(sharedBytes) + " bytes over the kernel's limit of " + std::to_string(sharedLimit) + " (48 KiB unless raised by cuFuncSetAttribute)");
  }
  if (extra != nullptr) return fail(kInvalidValue, who + "`extra` must be null");
  if (params == nullptr) return fail(kInvalidValue, who + "kernelParams is null");
  // copy the arguments now, as the driver does, and check every pointer
  auto copies = std::make_shared<std::vector<std::vector<unsigned char>>>();
  for (size_t i = 0; i < k.argSizes.size(); ++i) {
    const auto* src = static_cast<const unsigned char*>(params[i]);
    copies->emplace_back(src, src + k.argSizes[i]);
    if (k.argIsPointer[i]) {
      uintptr_t p;
      std::memcpy(&p, src, sizeof p);
      if (!kiln_fake::isDeviceRange(p, 0)) {  // inside an allocation, or one past its end
        char buf[64];
        std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(p));
        return fail(kIllegalAddress, who + "argument " + std::to_string(i) + " = " + buf + " is not device memory");
      }
    }
  }
  const kiln_emu::Dim3 grid{gx, gy, gz}, block{bx, by, bz};
  return kiln_fake::enqueue(stream, [&k, copies, grid, block, who, sharedBytes] {
    std::vector<void*> ptrs;
    for (auto& c : *copies) ptrs.push_back(c.data());
    std::string error;
    void** p = ptrs.data();
    // uninitialised, as on the device; one buffer serves every block, since blocks run in turn
    struct alignas(16) Chunk {
      unsigned char bytes[16];
    };
    std::vector<Chunk> shared((sharedBytes + sizeof(Chunk) - 1) / sizeof(Chunk));
    std::memset(static_cast<void*>(shared.data()), 0xA5, shared.size() * sizeof(Chunk));
    kiln_emu::g_dynamicShared = sharedBytes ? shared.data() : nullptr;
    const bool ok = kiln_emu::runGrid(grid, block, [&] { k.invoke(p); }, error);
    kiln_emu::g_dynamicShared = nullptr;
    if (!ok) return fail(kLaunchFailed, who + error);
    return kSuccess;
  });
}

}  // extern "C"
