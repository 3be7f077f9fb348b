// Node-API entry points: check every argument (types, lengths, indices into the caches), then run
// the kernel synchronously on the caller's typed arrays. Signatures mirror runtime/cpu/native.ts.
#include <napi.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "args.h"
#include "kernels.h"
#include "map_file.h"
#include "thread_pool.h"

namespace kiln {
namespace {

// Kernels only throw what allocation throws (std::bad_alloc for scratch); turn that into a JS
// Error instead of letting it escape the Node-API callback.
template <typename F>
void runKernel(const Args& a, F&& kernel) {
  try {
    kernel();
  } catch (const std::exception& e) {
    a.error(e.what());
  }
}

// gemmF32 / gemmBf16(out, x, w, bias | null, M, N, K)
template <typename W>
Napi::Value gemmBinding(const Napi::CallbackInfo& info, const char* fn) {
  const Args a(info, fn, 7);
  auto out = a.array<float>(0, "out");
  auto x = a.array<float>(1, "x");
  auto w = a.array<W>(2, "w");
  const size_t M = a.count(4, "M"), N = a.count(5, "N"), K = a.count(6, "K");
  a.length("out [M, N]", out.ElementLength(), a.mul(M, N));
  a.length("x [M, K]", x.ElementLength(), a.mul(M, K));
  a.length("w [N, K]", w.ElementLength(), a.mul(N, K));
  const float* bias = a.f32OrNull(3, "bias [N]", N);
  a.disjoint("out", out.Data(), out.ElementLength(), "x", x.Data(), x.ElementLength());
  a.disjoint("out", out.Data(), out.ElementLength(), "w", w.Data(), w.ElementLength());
  if (bias) a.disjoint("out", out.Data(), out.ElementLength(), "bias", bias, N);
  runKernel(a, [&] {
    if constexpr (std::is_same_v<W, float>) {
      gemmF32(out.Data(), x.Data(), w.Data(), bias, M, N, K);
    } else {
      gemmBf16(out.Data(), x.Data(), w.Data(), bias, M, N, K);
    }
  });
  return info.Env().Undefined();
}

// rmsNorm(out, x, w, rows, cols, group, eps, weightOffset)
Napi::Value rmsNormBinding(const Napi::CallbackInfo& info) {
  const Args a(info, "rmsNorm", 8);
  auto out = a.array<float>(0, "out");
  auto x = a.array<float>(1, "x");
  auto w = a.array<float>(2, "w");
  const size_t rows = a.count(3, "rows"), cols = a.count(4, "cols"), group = a.positive(5, "group");
  const double eps = a.finite(6, "eps"), weightOffset = a.finite(7, "weightOffset");
  if (cols % group != 0) a.rangeError(cat("cols (", cols, ") must be a multiple of group (", group, ")"));
  if (eps < 0) a.rangeError("eps must be >= 0");
  a.length("x [rows, cols]", x.ElementLength(), a.mul(rows, cols));
  a.length("out [rows, cols]", out.ElementLength(), a.mul(rows, cols));
  a.length("w [group]", w.ElementLength(), group);
  // Exactly the same array is fine (each group is read before it is written); a shifted view is not.
  if (out.Data() != x.Data()) {
    a.disjoint("out", out.Data(), out.ElementLength(), "x", x.Data(), x.ElementLength());
  }
  runKernel(a, [&] {
    rmsNorm(out.Data(), x.Data(), w.Data(), rows, cols, group, static_cast<float>(eps),
            static_cast<float>(weightOffset));
  });
  return info.Env().Undefined();
}

// rope(x, positions, invFreq, T, numHeads, headDim, rotaryDim, neox)
Napi::Value ropeBinding(const Napi::CallbackInfo& info) {
  const Args a(info, "rope", 8);
  auto x = a.array<float>(0, "x");
  auto positions = a.array<int32_t>(1, "positions");
  auto invFreq = a.array<float>(2, "invFreq");
  RopeShape s{a.count(3, "T"), a.count(4, "numHeads"), a.positive(5, "headDim"), a.count(6, "rotaryDim"),
              a.boolean(7, "neox")};
  if (s.rotaryDim % 2 != 0 || s.rotaryDim > s.headDim) {
    a.rangeError(cat("rotaryDim (", s.rotaryDim, ") must be even and <= headDim (", s.headDim, ")"));
  }
  const size_t rowWidth = a.mul(s.numHeads, s.headDim);
  a.length("x [T, numHeads * headDim]", x.ElementLength(), a.mul(s.tokens, rowWidth));
  a.length("positions [T]", positions.ElementLength(), s.tokens);
  a.length("invFreq [rotaryDim / 2]", invFreq.ElementLength(), s.rotaryDim / 2);
  runKernel(a, [&] { rope(x.Data(), positions.Data(), invFreq.Data(), s); });
  return info.Env().Undefined();
}

// writeKv(kCache, vCache, k, v, slotMapping, T, numKvHeads, headDim)
Napi::Value writeKvBinding(const Napi::CallbackInfo& info) {
  const Args a(info, "writeKv", 8);
  auto kCache = a.array<float>(0, "kCache");
  auto vCache = a.array<float>(1, "vCache");
  auto k = a.array<float>(2, "k");
  auto v = a.array<float>(3, "v");
  auto slots = a.array<int32_t>(4, "slotMapping");
  const size_t T = a.count(5, "T");
  const size_t rowWidth = a.mul(a.positive(6, "numKvHeads"), a.positive(7, "headDim"));
  a.length("k [T, numKvHeads * headDim]", k.ElementLength(), a.mul(T, rowWidth));
  a.length("v [T, numKvHeads * headDim]", v.ElementLength(), a.mul(T, rowWidth));
  a.length("slotMapping [T]", slots.ElementLength(), T);
  a.length("vCache", vCache.ElementLength(), kCache.ElementLength());
  if (kCache.ElementLength() % rowWidth != 0) {
    a.rangeError("kCache length is not a multiple of numKvHeads * headDim");
  }
  a.disjoint("kCache", kCache.Data(), kCache.ElementLength(), "vCache", vCache.Data(), vCache.ElementLength());
  const size_t numSlots = kCache.ElementLength() / rowWidth;
  // Check every slot before writing any, so a bad mapping leaves the caches untouched.
  for (size_t t = 0; t < T; ++t) {
    const int32_t slot = slots.Data()[t];
    if (slot < 0 || static_cast<size_t>(slot) >= numSlots) {
      a.rangeError(cat("slotMapping[", t, "] = ", slot, " is outside the cache's ", numSlots, " slots"));
    }
  }
  writeKv(kCache.Data(), vCache.Data(), k.Data(), v.Data(), slots.Data(), T, rowWidth);
  return info.Env().Undefined();
}

Napi::Value numThreadsBinding(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), numThreads());
}

// pagedAttention(out, q, kCache, vCache, queryStartLoc, seqLens, blockTables, maxBlocksPerSeq,
//                blockSize, numHeads, numKvHeads, headDim, scale, slidingWindow, softcap)
Napi::Value pagedAttentionBinding(const Napi::CallbackInfo& info) {
  const Args a(info, "pagedAttention", 15);
  auto out = a.array<float>(0, "out");
  auto q = a.array<float>(1, "q");
  auto kCache = a.array<float>(2, "kCache");
  auto vCache = a.array<float>(3, "vCache");
  auto qsl = a.array<int32_t>(4, "queryStartLoc");
  auto seqLens = a.array<int32_t>(5, "seqLens");
  auto tables = a.array<int32_t>(6, "blockTables");
  AttentionShape s{};
  s.maxBlocksPerSeq = a.count(7, "maxBlocksPerSeq");
  s.blockSize = a.positive(8, "blockSize");
  s.numHeads = a.positive(9, "numHeads");
  s.numKvHeads = a.positive(10, "numKvHeads");
  s.headDim = a.positive(11, "headDim");
  s.scale = static_cast<float>(a.finite(12, "scale"));
  s.slidingWindow = a.count(13, "slidingWindow");
  const double softcap = a.finite(14, "softcap");
  if (softcap < 0) a.rangeError("softcap must be >= 0 (0: none)");
  s.softcap = static_cast<float>(softcap);
  if (s.numHeads % s.numKvHeads != 0) a.rangeError("numHeads must be a multiple of numKvHeads");

  s.numSeqs = seqLens.ElementLength();
  a.length("queryStartLoc [S + 1]", qsl.ElementLength(), s.numSeqs + 1);
  a.length("blockTables [S, maxBlocksPerSeq]", tables.ElementLength(),
           a.mul(s.numSeqs, s.maxBlocksPerSeq));
  const int32_t* loc = qsl.Data();
  if (loc[0] != 0) a.rangeError("queryStartLoc[0] must be 0");
  const size_t cacheRow = a.mul(s.numKvHeads, s.headDim);
  a.length("vCache", vCache.ElementLength(), kCache.ElementLength());
  if (kCache.ElementLength() % cacheRow != 0) {
    a.rangeError("kCache length is not a multiple of numKvHeads * headDim");
  }
  const size_t numSlots = kCache.ElementLength() / cacheRow;
  for (size_t seq = 0; seq < s.numSeqs; ++seq) {
    if (loc[seq + 1] < loc[seq]) a.rangeError(cat("queryStartLoc must be non-decreasing (at ", seq + 1, ")"));
    const int32_t len = seqLens.Data()[seq], qLen = loc[seq + 1] - loc[seq];
    if (len < qLen) a.rangeError(cat("seqLens[", seq, "] = ", len, " is less than its ", qLen, " queries"));
    const size_t seqLen = static_cast<size_t>(len);
    if (seqLen > a.mul(s.maxBlocksPerSeq, s.blockSize)) {
      a.rangeError(cat("seqLens[", seq, "] = ", len, " exceeds maxBlocksPerSeq * blockSize"));
    }
    // Every slot the sequence's keys occupy must lie inside the caches.
    for (size_t b = 0; b * s.blockSize < seqLen; ++b) {
      const int32_t block = tables.Data()[seq * s.maxBlocksPerSeq + b];
      const size_t used = std::min(s.blockSize, seqLen - b * s.blockSize);
      if (block < 0 || a.mul(static_cast<size_t>(block), s.blockSize) + used > numSlots) {
        a.rangeError(
            cat("blockTables[", seq, "][", b, "] = ", block, " is outside the cache's ", numSlots, " slots"));
      }
    }
  }
  s.tokens = static_cast<size_t>(loc[s.numSeqs]);
  const size_t rowWidth = a.mul(s.numHeads, s.headDim);
  a.length("q [T, numHeads * headDim]", q.ElementLength(), a.mul(s.tokens, rowWidth));
  a.length("out [T, numHeads * headDim]", out.ElementLength(), a.mul(s.tokens, rowWidth));
  a.disjoint("out", out.Data(), out.ElementLength(), "q", q.Data(), q.ElementLength());
  a.disjoint("out", out.Data(), out.ElementLength(), "kCache", kCache.Data(), kCache.ElementLength());
  a.disjoint("out", out.Data(), out.ElementLength(), "vCache", vCache.Data(), vCache.ElementLength());
  runKernel(a, [&] {
    pagedAttention(out.Data(), q.Data(), kCache.Data(), vCache.Data(), loc, seqLens.Data(), tables.Data(),
                   s);
  });
  return info.Env().Undefined();
}

}  // namespace

Napi::Object initAddon(Napi::Env env, Napi::Object exports) {
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
  add("gemmF32", [](const Napi::CallbackInfo& i) { return gemmBinding<float>(i, "gemmF32"); });
  add("gemmBf16", [](const Napi::CallbackInfo& i) { return gemmBinding<uint16_t>(i, "gemmBf16"); });
  add("rmsNorm", rmsNormBinding);
  add("rope", ropeBinding);
  add("writeKv", writeKvBinding);
  add("pagedAttention", pagedAttentionBinding);
  add("numThreads", numThreadsBinding);
  add("mapFile", mapFileBinding);
  return exports;
}

}  // namespace kiln

// NODE_API_MODULE pastes the init function's name into an identifier, so it must be unqualified.
using kiln::initAddon;
NODE_API_MODULE(kiln_cpu, initAddon)
