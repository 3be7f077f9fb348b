// A fake libnvrtc for tests: compiles the program with the real nvcc (to a real CUBIN) and keeps
// NVRTC's rules that matter to kiln: options must be NVRTC's spelling (--gpu-architecture=sm_XX,
// --std=c++17, -I<dir>), and a program may #include only its in-memory headers or files found in
// the -I folders — no implicit system headers — so a kernel that would fail under NVRTC fails here.
// A program whose kernels were not built into the emulator (one kiln generated) is also compiled
// as host C++ into a shared object, cached by a hash of its text in `generated` beside this
// library; its CUBIN carries the object's name, and cuModuleLoadData loads it.
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "fake_state.h"
#include "kernel_registry.h"

// Set by build_emulator.ts: the folder of gpu_emu.h, and the g++ flags of the built-in kernels.
#ifndef KILN_EMU_DIR
#error "KILN_EMU_DIR must name the emulator's source folder"
#endif
#ifndef KILN_EMU_KERNEL_FLAGS
#error "KILN_EMU_KERNEL_FLAGS must hold the kernels' g++ flags"
#endif

namespace {

struct Program {
  std::string source, name;
  std::vector<std::pair<std::string, std::string>> headers;  // include name → text
  std::string log;
  std::vector<unsigned char> cubin;
};

bool fileExists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string shellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Every #include of text must be an in-memory header or a file in one of the -I folders.
bool checkIncludes(const std::string& text, const Program& p, const std::vector<std::string>& dirs, std::string& log) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t h = line.find_first_not_of(" \t");
    if (h == std::string::npos || line.compare(h, 8, "#include") != 0) continue;
    const size_t open = line.find_first_of("<\"", h + 8);
    const size_t close = open == std::string::npos ? open : line.find_first_of(">\"", open + 1);
    if (close == std::string::npos) continue;
    const std::string name = line.substr(open + 1, close - open - 1);
    bool found = false;
    for (const auto& hd : p.headers) found = found || hd.first == name;
    for (const auto& d : dirs) found = found || fileExists(d + "/" + name);
    if (!found) {
      log += p.name + ": catastrophic error: cannot open source file \"" + name + "\" (no directories in search list)\n";
      return false;
    }
  }
  return true;
}

// The extern "C" __global__ functions of a source, in order.
std::vector<std::string> kernelNames(const std::string& text) {
  static const std::regex kernel(R"(extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\()");
  std::vector<std::string> names;
  for (std::sregex_iterator it(text.begin(), text.end(), kernel), end; it != end; ++it) names.push_back((*it)[1]);
  return names;
}

bool builtIn(const std::string& name) {
  for (const auto& k : kiln_emu::kernels()) {
    if (name == k.name) return true;
  }
  return false;
}

// FNV-1a, 64 bits, as 16 hex digits: stable across processes.
std::string hashOf(const std::vector<std::string>& parts) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& part : parts) {
    for (unsigned char c : part + '\0') h = (h ^ c) * 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string selfPath() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&hashOf), &info) == 0 || !info.dli_fname) return "";
  char* real = realpath(info.dli_fname, nullptr);
  std::string path = real ? real : info.dli_fname;
  std::free(real);
  return path;
}

// Runs a shell command; appends its output to `log`; true when it exits 0.
bool runCommand(const std::string& cmd, std::string& log) {
  FILE* pipe = popen((cmd + " </dev/null 2>&1").c_str(), "r");
  if (!pipe) return false;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) log.append(buf, n);
  return pclose(pipe) == 0;
}

// The program as host C++: gpu_emu.h, the source (its dynamic shared array a pointer to the
// launch's buffer, the lines numbered as in the program), then a table of its kernels.
std::string hostSource(const Program& p, const std::vector<std::string>& names) {
  static const std::regex dynamicShared(R"(extern\s+__shared__\s+(\w[\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;)");
  std::string text = "#include \"gpu_emu.h\"\n#line 1 \"" + p.name + "\"\n";
  text += std::regex_replace(p.source, dynamicShared, "$1* const $2 = static_cast<$1*>(::kiln_emu::g_dynamicShared);");
  text += "\n#include \"kernel_registry.h\"\n";
  text += "extern \"C\" const std::vector<kiln_emu::KernelEntry>* kiln_emu_program_kernels() {\n";
  text += "  static const std::vector<kiln_emu::KernelEntry> all = {\n";
  for (const auto& n : names) text += "    KILN_EMU_KERNEL(" + n + "),\n";
  return text + "  };\n  return &all;\n}\n";
}

// Builds (or finds) the program's host object; returns its file name, or "" with the reason in `log`.
std::string buildHostObject(const Program& p, const std::vector<std::string>& names, const std::vector<std::string>& dirs,
                            const std::string& headerDir, std::string& log) {
  const std::string self = selfPath();
  if (self.empty()) {
    log += "emulator: cannot find its own library to link the program against\n";
    return "";
  }
  std::vector<std::string> parts{p.source, KILN_EMU_KERNEL_FLAGS};
  for (const auto& h : p.headers) parts.insert(parts.end(), {h.first, h.second});
  for (const auto& d : dirs) parts.push_back(d);
  const std::string file = hashOf(parts) + ".so";
  const std::string dir = kiln_fake::hostObjectDir();
  if (fileExists(dir + "/" + file)) return file;
  mkdir(dir.c_str(), 0755);
  const std::string cc = headerDir + "/host_program.cc";
  std::ofstream(cc) << hostSource(p, names);
  const std::string tmp = dir + "/" + file + "." + std::to_string(getpid()) + ".tmp";
  std::string cmd = std::string("g++ ") + KILN_EMU_KERNEL_FLAGS + " -Wno-unknown-pragmas -shared -Wl,-Bsymbolic";
  cmd += " -I" + shellQuote(std::string(KILN_EMU_DIR) + "/include") + " -I" + shellQuote(KILN_EMU_DIR);
  cmd += " -I" + shellQuote(headerDir);
  for (const auto& d : dirs) cmd += " -I" + shellQuote(d);
  cmd += " -o " + shellQuote(tmp) + " " + shellQuote(cc) + " " + shellQuote(self);
  std::string out;
  if (!runCommand(cmd, out)) {
    log += "emulator: the program did not compile as host C++:\n" + out;
    std::remove(tmp.c_str());
    return "";
  }
  std::rename(tmp.c_str(), (dir + "/" + file).c_str());  // atomic: a racing build wrote the same bytes
  return file;
}

// The CUBIN plus a trailer naming the host object, inside the ELF image: the tag and name after
// the file's end, then a copy of the section header table, which e_shoff now points at.
void tagCubin(std::vector<unsigned char>& cubin, const std::string& object) {
  uint64_t shoff;
  uint16_t shentsize, shnum;
  std::memcpy(&shoff, cubin.data() + 0x28, 8);
  std::memcpy(&shentsize, cubin.data() + 0x3a, 2);
  std::memcpy(&shnum, cubin.data() + 0x3c, 2);
  const std::vector<unsigned char> table(cubin.begin() + shoff, cubin.begin() + shoff + size_t{shentsize} * shnum);
  const std::string tag = std::string(1, '\0') + kiln_fake::kHostObjectTag + object + '\0';
  cubin.insert(cubin.end(), tag.begin(), tag.end());
  cubin.resize((cubin.size() + 7) & ~size_t{7}, 0);
  const uint64_t newOff = cubin.size();
  cubin.insert(cubin.end(), table.begin(), table.end());
  std::memcpy(cubin.data() + 0x28, &newOff, 8);
}

}  // namespace

namespace kiln_fake {

std::string hostObjectDir() {
  const std::string self = selfPath();
  return self.substr(0, self.rfind('/')) + "/generated";
}

}  // namespace kiln_fake

extern "C" {

int nvrtcVersion(int* major, int* minor) {
  *major = 13;
  *minor = 0;
  return 0;
}

const char* nvrtcGetErrorString(int status) {
  switch (status) {
    case 0: return "NVRTC_SUCCESS";
    case 1: return "NVRTC_ERROR_OUT_OF_MEMORY";
    case 2: return "NVRTC_ERROR_PROGRAM_CREATION_FAILURE";
    case 3: return "NVRTC_ERROR_INVALID_INPUT";
    case 4: return "NVRTC_ERROR_INVALID_PROGRAM";
    case 5: return "NVRTC_ERROR_INVALID_OPTION";
    case 6: return "NVRTC_ERROR_COMPILATION";
    default: return "NVRTC_ERROR unknown";
  }
}

int nvrtcCreateProgram(uint64_t* prog, const char* src, const char* name, int numHeaders, const char** headers,
                       const char** includeNames) {
  if (!prog || !src) return 3;
  auto* p = new Program{src, name ? name : "default_program", {}, "", {}};
  for (int i = 0; i < numHeaders; ++i) {
    if (!headers[i] || !includeNames[i]) return 3;
    p->headers.emplace_back(includeNames[i], headers[i]);
  }
  *prog = reinterpret_cast<uint64_t>(p);
  return 0;
}

int nvrtcDestroyProgram(uint64_t* prog) {
  delete reinterpret_cast<Program*>(*prog);
  *prog = 0;
  return 0;
}

int nvrtcCompileProgram(uint64_t prog, int numOptions, const char** options) {
  auto* p = reinterpret_cast<Program*>(prog);
  if (!p) return 4;
  p->log.clear();
  std::string arch;
  std::vector<std::string> dirs;
  std::string flags;
  for (int i = 0; i < numOptions; ++i) {
    const std::string o = options[i];
    if (o.rfind("--gpu-architecture=", 0) == 0) {
      arch = o.substr(19);
    } else if (o.rfind("-I", 0) == 0 && o.size() > 2) {
      dirs.push_back(o.substr(2));
    } else if (o == "--std=c++17") {
      flags += " -std=c++17";
    } else {
      p->log = "nvrtc: error: invalid option '" + o + "'\n";
      return 5;
    }
  }
  if (arch.rfind("sm_", 0) != 0) {
    p->log = "nvrtc: error: kiln needs --gpu-architecture=sm_XX to get a CUBIN\n";
    return 5;
  }
  if (!checkIncludes(p->source, *p, dirs, p->log)) return 6;
  for (const auto& h : p->headers) {
    if (!checkIncludes(h.second, *p, dirs, p->log)) return 6;
  }
  char tmpl[] = "/tmp/kiln-fake-nvrtc-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  for (const auto& h : p->headers) std::ofstream(dir + "/" + h.first) << h.second;
  const std::string srcPath = dir + "/program.cu";
  std::ofstream(srcPath) << p->source;
  const char* nvcc = std::getenv("KILN_FAKE_NVCC");
  std::string cmd = std::string(nvcc ? nvcc : "nvcc") + " -cubin -arch=" + arch + flags + " -I" + shellQuote(dir);
  for (const auto& d : dirs) cmd += " -I" + shellQuote(d);
  cmd += " -o " + shellQuote(dir + "/program.cubin") + " " + shellQuote(srcPath) + " </dev/null 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return 1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) p->log.append(buf, n);
  int status = pclose(pipe);
  std::ifstream cubin(dir + "/program.cubin", std::ios::binary);
  p->cubin.assign(std::istreambuf_iterator<char>(cubin), std::istreambuf_iterator<char>());
  if (status == 0 && !p->cubin.empty()) {
    std::vector<std::string> names = kernelNames(p->source);
    bool allBuiltIn = true;
    for (const auto& k : names) allBuiltIn = allBuiltIn && builtIn(k);
    if (!allBuiltIn) {
      const std::string object = buildHostObject(*p, names, dirs, dir, p->log);
      if (object.empty()) {
        p->cubin.clear();
        status = 1;
      } else {
        tagCubin(p->cubin, object);
      }
    }
  }
  std::system(("rm -rf " + shellQuote(dir)).c_str());
  if (status != 0 || p->cubin.empty()) {
    // name the program as NVRTC does in its log
    std::string renamed;
    std::istringstream in(p->log);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find(srcPath);
      renamed += (at == std::string::npos ? line : line.replace(at, srcPath.size(), p->name)) + "\n";
    }
    p->log = renamed;
    return 6;
  }
  return 0;
}

int nvrtcGetProgramLogSize(uint64_t prog, size_t* size) {
  *size = reinterpret_cast<Program*>(prog)->log.size() + 1;
  return 0;
}

int nvrtcGetProgramLog(uint64_t prog, char* log) {
  const auto& l = reinterpret_cast<Program*>(prog)->log;
  std::memcpy(log, l.c_str(), l.size() + 1);
  return 0;
}

int nvrtcGetCUBINSize(uint64_t prog, size_t* size) {
  auto* p = reinterpret_cast<Program*>(prog);
  if (p->cubin.empty()) return 4;
  *size = p->cubin.size();
  return 0;
}

int nvrtcGetCUBIN(uint64_t prog, char* cubin) {
  auto* p = reinterpret_cast<Program*>(prog);
  if (p->cubin.empty()) return 4;
  std::memcpy(cubin, p->cubin.data(), p->cubin.size());
  return 0;
}

}  // extern "C"
