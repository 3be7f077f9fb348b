// A fake libcublasLt for tests: the descriptor calls kiln makes, checked the way cuBLASLt
// defines them, and cublasLtMatmul computed on the host (column-major, D = α·op(A)·op(B) + β·C,
// double accumulation) over the fake driver's device memory.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "fake_state.h"

namespace {

enum : int { kOk = 0, kNotInitialized = 1, kInvalidValue = 7, kNotSupported = 15 };
constexpr int kCompute32F = 68, kR32F = 0, kR16F = 2, kR16BF = 14;
constexpr uint64_t kAlgoMagic = 0x6b696c6e616c676full;

struct Desc {
  int compute, scale, transa = 0, transb = 0;
  unsigned epilogue = 1;  // CUBLASLT_EPILOGUE_DEFAULT
  uint64_t bias = 0;
};
struct Layout {
  int type;
  uint64_t rows, cols;
  int64_t ld;
};
struct Pref {
  uint64_t workspace = 0;
};

int bad(const std::string& why) {
  std::fprintf(stderr, "[fake cuBLASLt] CUBLAS_STATUS_INVALID_VALUE: %s\n", why.c_str());
  return kInvalidValue;
}

// an f16 bit pattern widened exactly: subnormals scaled from their integer mantissa
float widenHalf(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t bits;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m · 2^-24
    return sign ? -v : v;
  }
  bits = sign | (e == 0x1f ? 0x7f800000u | (m << 13) : ((e + 112) << 23) | (m << 13));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float load(const void* base, int type, uint64_t index) {
  if (type == kR32F) return static_cast<const float*>(base)[index];
  if (type == kR16F) return widenHalf(static_cast<const uint16_t*>(base)[index]);
  const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[index]) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

size_t elementBytes(int type) { return type == kR32F ? 4 : 2; }

// op(X) as (rows, cols) of the product
void opShape(const Layout& l, int trans, uint64_t& r, uint64_t& c) {
  r = trans ? l.cols : l.rows;
  c = trans ? l.rows : l.cols;
}

}  // namespace

extern "C" {

int cublasLtCreate(uint64_t* handle) {
  *handle = 0x1a;
  return kOk;
}
int cublasLtDestroy(uint64_t handle) { return handle == 0x1a ? kOk : kNotInitialized; }
size_t cublasLtGetVersion() { return 130100; }

const char* cublasLtGetStatusName(int s) {
  switch (s) {
    case kOk: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}
const char* cublasLtGetStatusString(int s) { return s == kOk ? "success" : "emulated cuBLASLt refused the call"; }

int cublasLtMatmulDescCreate(uint64_t* desc, int compute, int scale) {
  if (compute != kCompute32F) return bad("compute type must be CUBLAS_COMPUTE_32F");
  if (scale != kR32F) return bad("scale type must be CUDA_R_32F");
  *desc = reinterpret_cast<uint64_t>(new Desc{compute, scale});
  return kOk;
}
int cublasLtMatmulDescDestroy(uint64_t desc) {
  delete reinterpret_cast<Desc*>(desc);
  return kOk;
}
int cublasLtMatmulDescSetAttribute(uint64_t desc, int attr, const void* buf, size_t size) {
  auto* d = reinterpret_cast<Desc*>(desc);
  if ((attr == 3 || attr == 4) && size == 4) {
    int v;
    std::memcpy(&v, buf, 4);
    if (v != 0 && v != 1) return bad("transpose must be CUBLAS_OP_N or CUBLAS_OP_T");
    (attr == 3 ? d->transa : d->transb) = v;
    return kOk;
  }
  if (attr == 7 && size == 4) {  // CUBLASLT_MATMUL_DESC_EPILOGUE: DEFAULT or BIAS only
    unsigned v;
    std::memcpy(&v, buf, 4);
    if (v != 1 && v != 4) return bad("epilogue must be CUBLASLT_EPILOGUE_DEFAULT or CUBLASLT_EPILOGUE_BIAS");
    d->epilogue = v;
    return kOk;
  }
  if (attr == 8 && size == 8) {  // CUBLASLT_MATMUL_DESC_BIAS_POINTER
    std::memcpy(&d->bias, buf, 8);
    return kOk;
  }
  return bad("descriptor attribute " + std::to_string(attr) + " with " + std::to_string(size) + " bytes");
}

int cublasLtMatrixLayoutCreate(uint64_t* layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (type != kR32F && type != kR16F && type != kR16BF) return bad("layout type");
  if (ld < static_cast<int64_t>(rows) || rows == 0 || cols == 0) return bad("layout ld < rows, or an empty matrix");
  *layout = reinterpret_cast<uint64_t>(new Layout{type, rows, cols, ld});
  return kOk;
}
int cublasLtMatrixLayoutDestroy(uint64_t layout) {
  delete reinterpret_cast<Layout*>(layout);
  return kOk;
}

int cublasLtMatmulPreferenceCreate(uint64_t* pref) {
  *pref = reinterpret_cast<uint64_t>(new Pref{});
  return kOk;
}
int cublasLtMatmulPreferenceDestroy(uint64_t pref) {
  delete reinterpret_cast<Pref*>(pref);
  return kOk;
}
int cublasLtMatmulPreferenceSetAttribute(uint64_t pref, int attr, const void* buf, size_t size) {
  if (attr != 1 || size != 8) return bad("preference attribute");
  std::memcpy(&reinterpret_cast<Pref*>(pref)->workspace, buf, 8);
  return kOk;
}

static int checkShapes(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dl) {
  uint64_t am, ak, bk, bn;
  opShape(a, d.transa, am, ak);
  opShape(b, d.transb, bk, bn);
  if (ak != bk) return bad("op(A) and op(B) disagree on k");
  if (c.rows != am || c.cols != bn || dl.rows != am || dl.cols != bn) return bad("C/D are not m×n");
  if (a.type != b.type) return bad("A and B types differ");
  if (c.type != kR32F || dl.type != kR32F) return bad("kiln's C and D are fp32");
  return kOk;
}

int cublasLtMatmulAlgoGetHeuristic(uint64_t handle, uint64_t desc, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
                                   uint64_t pref, int requested, uint64_t results, int* returned) {
  if (handle != 0x1a) return kNotInitialized;
  if (requested < 1) return bad("requestedAlgoCount < 1");
  if (int r = checkShapes(*reinterpret_cast<Desc*>(desc), *reinterpret_cast<Layout*>(a), *reinterpret_cast<Layout*>(b),
                          *reinterpret_cast<Layout*>(c), *reinterpret_cast<Layout*>(d))) {
    return r;
  }
  (void)pref;
  auto* out = reinterpret_cast<unsigned char*>(results);
  std::memset(out, 0, 96);
  std::memcpy(out, &kAlgoMagic, 8);  // algo
  *returned = 1;                      // workspaceSize 0, state success
  return kOk;
}

int cublasLtMatmul(uint64_t handle, uint64_t descH, uint64_t alphaP, uint64_t aP, uint64_t aL, uint64_t bP, uint64_t bL,
                   uint64_t betaP, uint64_t cP, uint64_t cL, uint64_t dP, uint64_t dL, uint64_t algo, uint64_t workspace,
                   size_t workspaceBytes, uint64_t stream) {
  if (handle != 0x1a) return kNotInitialized;
  const Desc d = *reinterpret_cast<Desc*>(descH);
  const Layout a = *reinterpret_cast<Layout*>(aL), b = *reinterpret_cast<Layout*>(bL);
  const Layout c = *reinterpret_cast<Layout*>(cL), dl = *reinterpret_cast<Layout*>(dL);
  if (int r = checkShapes(d, a, b, c, dl)) return r;
  uint64_t magic;
  std::memcpy(&magic, reinterpret_cast<const void*>(algo), 8);
  if (magic != kAlgoMagic) return bad("algo was not produced by cublasLtMatmulAlgoGetHeuristic");
  if (workspaceBytes > 0 && !kiln_fake::isDeviceRange(workspace, workspaceBytes)) return bad("workspace outside device memory");
  const auto span = [](const Layout& l) { return (l.cols - 1) * l.ld + l.rows; };
  if (!kiln_fake::isDeviceRange(aP, span(a) * elementBytes(a.type)) || !kiln_fake::isDeviceRange(bP, span(b) * elementBytes(b.type)) ||
      !kiln_fake::isDeviceRange(cP, span(c) * 4) || !kiln_fake::isDeviceRange(dP, span(dl) * 4)) {
    return bad("a matrix lies outside device memory");
  }
  uint64_t biasM, biasK;
  opShape(a, d.transa, biasM, biasK);
  if (d.epilogue == 4 && !kiln_fake::isDeviceRange(d.bias, biasM * 4)) return bad("the bias epilogue's vector lies outside device memory");
  float alpha, beta;
  std::memcpy(&alpha, reinterpret_cast<const void*>(alphaP), 4);
  std::memcpy(&beta, reinterpret_cast<const void*>(betaP), 4);
  return kiln_fake::enqueue(stream, [=] {
    uint64_t m, k, k2, n;
    opShape(a, d.transa, m, k);
    opShape(b, d.transb, k2, n);
    const void* A = reinterpret_cast<const void*>(aP);
    const void* B = reinterpret_cast<const void*>(bP);
    const float* C = reinterpret_cast<const float*>(cP);
    float* D = reinterpret_cast<float*>(dP);
    for (uint64_t j = 0; j < n; ++j) {
      for (uint64_t i = 0; i < m; ++i) {
        double s = 0;
        for (uint64_t p = 0; p < k; ++p) {
          const uint64_t ai = d.transa ? i * a.ld + p : p * a.ld + i;
          const uint64_t bi = d.transb ? p * b.ld + j : j * b.ld + p;
          s += static_cast<double>(load(A, a.type, ai)) * load(B, b.type, bi);
        }
        const double prior = beta == 0.0f ? 0.0 : static_cast<double>(beta) * C[j * c.ld + i];
        const double bias = d.epilogue == 4 ? static_cast<double>(reinterpret_cast<const float*>(d.bias)[i]) : 0.0;
        D[j * dl.ld + i] = static_cast<float>(alpha * s + prior + bias);
      }
    }
    return 0;
  });
}

}  // extern "C"
