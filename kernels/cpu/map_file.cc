// mapFile(path) → ArrayBuffer over the whole file, memory-mapped copy-on-write: an engine
// artifact's weights become typed-array views of the page cache, with nothing read or copied up
// front (pages come in as the first forward pass touches them). Writes through a view land in
// private pages, never in the file. The mapping lives as long as the ArrayBuffer.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "map_file.h"

namespace kiln {

Napi::Value mapFileBinding(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "mapFile(path): path must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const auto fail = [&](const char* what) {
    Napi::Error::New(env, "mapFile " + path + ": " + what + ": " + std::strerror(errno)).ThrowAsJavaScriptException();
    return env.Undefined();
  };
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("open");
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return fail("fstat");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    close(fd);
    return Napi::ArrayBuffer::New(env, 0);
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int saved = errno;
  close(fd);  // the mapping keeps the file
  errno = saved;
  if (data == MAP_FAILED) return fail("mmap");
  return Napi::ArrayBuffer::New(
      env, data, size, [](Napi::Env, void* p, size_t* bytes) { munmap(p, *bytes); delete bytes; }, new size_t(size));
}

}  // namespace kiln
