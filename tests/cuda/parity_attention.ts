/**
 * Parity cases for paged attention: packed steps that mix decode, chunked prefill over a cached
 * prefix and fresh prefill, GQA (groups smaller than, equal to and larger than a block's
 * ATTENTION_GROUP) and MQA, awkward block and head sizes, the sliding window, soft-capping,
 * splits along the keys (some of them empty), and f32, bf16, f16 and fp8 (e4m3, with K and V
 * scales) caches. (The step's KV write
 * is part of a fused kernel of the compiled program, checked end to end.)
 */
import { ATTENTION_KERNELS, attentionHeadBlocks } from "../../runtime/backends/cuda/node_kernels.ts";
import * as twin from "./cpu_twins.ts";
import { compare, fromBf16, fromF16, randomF32, rng, toBf16, toF16, type ParityCase } from "./parity_support.ts";
import type { DevicePtr } from "../../runtime/backends/cuda/device.ts";
import type { KvDtype } from "../../compiler/dtype.ts";

const KERNELS = ATTENTION_KERNELS; // the executor's table: each case runs the entry point the executor launches

/** How a test puts a cache of each dtype on the device: rounded bits, and their values widened back. */
const HALF = {
  bf16: { round: toBf16, widen: fromBf16 },
  f16: { round: toF16, widen: fromF16 },
} as const;

interface SeqSpec {
  /** context length after the step */
  readonly seqLen: number;
  /** new query tokens (the last qLen positions) */
  readonly qLen: number;
}

interface AttentionConfig {
  readonly name: string;
  readonly seqs: readonly SeqSpec[];
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly blockSize: number;
  readonly window: number | undefined;
  readonly softcap: number | undefined;
  readonly splits: number;
  readonly seed: number;
  readonly kv?: KvDtype;
  /** an fp8 cache's per-tensor scales (default 1) */
  readonly kScale?: number;
  readonly vScale?: number;
}

/**
 * An e4m3 cache on the device: the scratch has no byte buffers, so the bytes travel as 16-bit
 * words (little-endian, as the host and the device are); `bytes.length` must be even.
 */
function bytesOnDevice(s: { u16(x: Uint16Array): DevicePtr }, bytes: Uint8Array): DevicePtr {
  if (bytes.length % 2 !== 0) throw new RangeError(`an e4m3 test cache needs an even byte count, got ${bytes.length}`);
  return s.u16(new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
}

function shuffled(n: number, r: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

export function attentionCase(c: AttentionConfig): ParityCase {
  return {
    name: c.name,
    run: (b, s) => {
      const r = rng(c.seed);
      const D = c.headDim;
      const blocksOf = c.seqs.map((q) => Math.ceil(q.seqLen / c.blockSize));
      const maxBlocksPerSeq = Math.max(...blocksOf);
      const numBlocks = blocksOf.reduce((x, y) => x + y, 0) + 3;
      const order = shuffled(numBlocks, r);
      const blockTables = new Int32Array(c.seqs.length * maxBlocksPerSeq);
      let next = 0;
      blocksOf.forEach((n, si) => {
        for (let i = 0; i < n; i++) blockTables[si * maxBlocksPerSeq + i] = order[next++]!;
      });
      const tokenSeq: number[] = [];
      const tokenPos: number[] = [];
      c.seqs.forEach((q, si) => {
        for (let i = 0; i < q.qLen; i++) {
          tokenSeq.push(si);
          tokenPos.push(q.seqLen - q.qLen + i);
        }
      });
      const T = tokenSeq.length;
      const cacheLen = numBlocks * c.blockSize * c.numKvHeads * D;
      const kv = c.kv ?? "f32";
      const half = kv === "bf16" || kv === "f16" ? HALF[kv] : undefined;
      // a 16-bit or e4m3 cache holds rounded values: the twin reads them widened back (e4m3
      // values drawn from [-4, 4] reach its subnormals too)
      const stored = (): Float32Array => {
        if (kv === "fp8") return twin.fromE4m3(twin.toE4m3(randomF32(cacheLen, r, 4)));
        return half ? half.widen(half.round(randomF32(cacheLen, r))) : randomF32(cacheLen, r);
      };
      const kCache = stored();
      const vCache = stored();
      const cache = (x: Float32Array): DevicePtr => (kv === "fp8" ? bytesOnDevice(s, twin.toE4m3(x)) : half ? s.u16(half.round(x)) : s.f32(x));
      const q = randomF32(T * c.numHeads * D, r);
      const scale = 1 / Math.sqrt(D);
      const seqs = Int32Array.from(tokenSeq);
      const poss = Int32Array.from(tokenPos);
      const out = s.out(T * c.numHeads * D);
      const partial = s.out(Math.max(1, T * c.numHeads * c.splits * (D + 2)));
      const variant = c.softcap === undefined ? "plain" : "softcap";
      const grid = [T, attentionHeadBlocks(c.numHeads, c.numKvHeads), c.splits] as const;
      const args = [
        out,
        partial,
        s.f32(q),
        cache(kCache),
        cache(vCache),
        s.i32(seqs),
        s.i32(poss),
        s.i32(blockTables),
        maxBlocksPerSeq,
        c.blockSize,
        c.numHeads,
        c.numKvHeads,
        D,
        scale,
        c.window ?? 2 ** 30,
        c.softcap ?? 0,
        c.splits,
      ] as const;
      if (kv === "fp8") b.kernels.launch(KERNELS.fp8[variant], grid, [128, 1, 1], [...args, c.kScale ?? 1, c.vScale ?? 1]);
      else b.kernels.launch(KERNELS[kv][variant], grid, [128, 1, 1], args);
      if (c.splits > 1) b.kernels.launch("kiln_attention_combine", [T, c.numHeads, 1], [128, 1, 1], [out, partial, T, c.numHeads, D, c.splits]);
      const ref = twin.pagedAttention(q, kCache, vCache, seqs, poss, blockTables, {
        blockSize: c.blockSize,
        maxBlocksPerSeq,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: D,
        scale: Math.fround(scale),
        window: c.window,
        softcap: c.softcap,
        ...(c.kScale === undefined ? {} : { kScale: c.kScale }),
        ...(c.vScale === undefined ? {} : { vScale: c.vScale }),
      });
      return compare(c.name, s.read(out, T * c.numHeads * D), ref, 5e-6);
    },
  };
}

const MIXED: readonly SeqSpec[] = [
  { seqLen: 37, qLen: 1 }, // decode
  { seqLen: 17, qLen: 6 }, // chunked prefill over 11 cached tokens
  { seqLen: 9, qLen: 9 }, // fresh prefill
];

export function attentionCases(): ParityCase[] {
  const base = { numHeads: 6, numKvHeads: 2, headDim: 40, blockSize: 5, window: undefined, softcap: undefined, splits: 1 };
  return [
    attentionCase({ ...base, name: "attention mixed, bf16 cache, GQA 6/2", seqs: MIXED, kv: "bf16", seed: 86 }),
    attentionCase({ ...base, name: "attention mixed, bf16 cache, D=18 (no vector loads), softcap", seqs: MIXED, headDim: 18, softcap: 30, kv: "bf16", seed: 87 }),
    attentionCase({ ...base, name: "attention GQA 12/2: two head groups per KV head, the second partial", seqs: MIXED, numHeads: 12, headDim: 24, seed: 88 }),
    attentionCase({ ...base, name: "attention GQA 16/2 bf16 D=64, 5 splits", seqs: [{ seqLen: 300, qLen: 1 }, ...MIXED], numHeads: 16, headDim: 64, blockSize: 16, splits: 5, kv: "bf16", seed: 89 }),
    attentionCase({ ...base, name: "attention MHA 3/3 D=8", seqs: MIXED, numHeads: 3, numKvHeads: 3, headDim: 8, seed: 90 }),
    // value rows in 16-byte chunks: 1 (bf16 D=8), 16 (bf16 D=128, f32 D=64) and 32 (bf16 D=256) per key
    attentionCase({ ...base, name: "attention bf16 D=8 MQA 5/1: 16 keys per value load", seqs: MIXED, numHeads: 5, numKvHeads: 1, headDim: 8, kv: "bf16", seed: 91 }),
    attentionCase({ ...base, name: "attention bf16 D=128 GQA 8/2 window 20", seqs: MIXED, numHeads: 8, headDim: 128, window: 20, kv: "bf16", seed: 92 }),
    attentionCase({ ...base, name: "attention f32 D=64 softcap, 3 splits", seqs: MIXED, headDim: 64, softcap: 25, splits: 3, seed: 93 }),
    attentionCase({ ...base, name: "attention bf16 D=256 GQA 4/2, 2 splits", seqs: [{ seqLen: 90, qLen: 1 }, ...MIXED], numHeads: 4, headDim: 256, splits: 2, kv: "bf16", seed: 94 }),
    attentionCase({ ...base, name: "attention mixed, f16 cache, GQA 6/2", seqs: MIXED, kv: "f16", seed: 95 }),
    attentionCase({ ...base, name: "attention f16 D=18 (no vector loads), window 7, softcap", seqs: MIXED, headDim: 18, window: 7, softcap: 30, kv: "f16", seed: 96 }),
    attentionCase({ ...base, name: "attention f16 D=128 GQA 16/2, 4 splits", seqs: [{ seqLen: 300, qLen: 1 }, ...MIXED], numHeads: 16, headDim: 128, blockSize: 16, splits: 4, kv: "f16", seed: 97 }),
    attentionCase({ ...base, name: "attention mixed, fp8 cache, GQA 6/2", seqs: MIXED, kv: "fp8", seed: 101 }),
    attentionCase({ ...base, name: "attention fp8 D=18 (no vector loads), window 7, softcap, scales 0.5/2", seqs: MIXED, headDim: 18, window: 7, softcap: 30, kv: "fp8", kScale: 0.5, vScale: 2, seed: 102 }),
    // value rows in 8-byte chunks: 1 (D=8), 16 (D=128) and 32 (D=256) per key
    attentionCase({ ...base, name: "attention fp8 D=8 MQA 5/1: 32 keys per value load", seqs: MIXED, numHeads: 5, numKvHeads: 1, headDim: 8, kv: "fp8", seed: 103 }),
    attentionCase({ ...base, name: "attention fp8 D=128 GQA 16/2, 4 splits, scales 0.25/4", seqs: [{ seqLen: 300, qLen: 1 }, ...MIXED], numHeads: 16, headDim: 128, blockSize: 16, splits: 4, kv: "fp8", kScale: 0.25, vScale: 4, seed: 104 }),
    attentionCase({ ...base, name: "attention fp8 D=256 GQA 4/2, 2 splits", seqs: [{ seqLen: 90, qLen: 1 }, ...MIXED], numHeads: 4, headDim: 256, splits: 2, kv: "fp8", seed: 105 }),
    attentionCase({ ...base, name: "attention mixed step GQA 6/2 D=40 block 5", seqs: MIXED, seed: 81 }),
    attentionCase({ ...base, name: "attention mixed, window 7, softcap 20, D=18", seqs: MIXED, headDim: 18, window: 7, softcap: 20, seed: 82 }),
    attentionCase({ ...base, name: "attention mixed, 4 splits (empty ones)", seqs: MIXED, splits: 4, seed: 83 }),
    attentionCase({
      ...base,
      name: "attention decode 1000 keys MQA 4/1 D=128, 8 splits",
      seqs: [{ seqLen: 1000, qLen: 1 }, { seqLen: 3, qLen: 1 }],
      numHeads: 4,
      numKvHeads: 1,
      headDim: 128,
      blockSize: 16,
      splits: 8,
      seed: 84,
    }),
    attentionCase({
      ...base,
      name: "attention D=256, window 300, 3 splits, 2 kv heads",
      seqs: [{ seqLen: 700, qLen: 2 }],
      numHeads: 4,
      headDim: 256,
      blockSize: 16,
      window: 300,
      splits: 3,
      seed: 85,
    }),
  ];
}
