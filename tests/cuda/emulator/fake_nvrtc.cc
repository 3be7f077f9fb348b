// A fake libnvrtc for tests: compiles the program with the real nvcc (to a real CUBIN) and keeps
// NVRTC's rules that matter to kiln: options must be NVRTC's spelling (--gpu-architecture=sm_XX,
// --std=c++17, -I<dir>), and a program may #include only its in-memory headers or files found in
// the -I folders — no implicit system headers — so a kernel that would fail under NVRTC fails here.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

}  // namespace

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
  const int status = pclose(pipe);
  std::ifstream cubin(dir + "/program.cubin", std::ios::binary);
  p->cubin.assign(std::istreambuf_iterator<char>(cubin), std::istreambuf_iterator<char>());
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
