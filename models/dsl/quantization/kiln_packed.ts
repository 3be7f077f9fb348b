/**
 * kiln's own layout of a quantized linear weight: what the compiled program stores, the artifact
 * keeps as-is and the packed kernels read (kernels/cuda/quant_gemv.cu). Every checkpoint format
 * (AWQ, GPTQ, fp8) is repacked into it once, at load; nothing is dequantized on the way.
 *
 * For a linear with N outputs and K inputs (this rank's part, shards stacked along N):
 *
 *   qweight  Int32 [N, K·bits/32]  row n holds the K codes of output n in input order, packed
 *                                  little-end first: code k is bits (k % P)·bits .. +bits of word
 *                                  n·(K/P) + ⌊k/P⌋, P = 32/bits codes a word (int4: 8, int8 and
 *                                  fp8: 4). Codes are unsigned (0..15, 0..255); fp8 codes are
 *                                  e4m3fn bit patterns.
 *   scales   f32 [N, groups]       groups = ⌈K/G⌉; input k of output n uses scales[n, ⌊k/G⌋]
 *   zeros    f32 [N, groups]       int schemes only: the zero point (an integer value, the
 *                                  checkpoint's offset already applied)
 *   perm     Int32 [K]             optional (GPTQ desc_act): input k of the packed row reads
 *                                  x[perm[k]], so that the groups are contiguous runs of G
 *
 *   int:  W[n, k] = (code(n, k) − zeros[n, ⌊k/G⌋]) · scales[n, ⌊k/G⌋]
 *   fp8:  W[n, k] = e4m3(code(n, k)) · scales[n, ⌊k/G⌋]
 *   out[m, n] = Σ_k x[m, perm ? perm[k] : k] · W[n, k]  (+ bias[n])
 *
 * Per-tensor and per-channel fp8 scales are G = K (one group a row; a per-tensor scale repeated
 * over the rows of its shard); 128×128 block scales are G = 128 with each block row's scales
 * repeated over its rows. The f32 products above are exact for the int schemes (|q − z| < 2^8,
 * scale from f16/bf16), so a packed kernel computes the reference's weights bit for bit.
 */
import { E4M3_TO_F32 } from "./fp8.ts";

export type PackedScheme = "int4" | "int8" | "fp8";

export const SCHEME_BITS: Readonly<Record<PackedScheme, 4 | 8>> = { int4: 4, int8: 8, fp8: 8 };

export interface PackedLinear {
  readonly scheme: PackedScheme;
  /** outputs (rows) and inputs (columns) */
  readonly N: number;
  readonly K: number;
  /** inputs per scale group */
  readonly group: number;
  readonly qweight: Int32Array;
  readonly scales: Float32Array;
  readonly zeros?: Float32Array;
  readonly perm?: Int32Array;
}

/** Codes per 32-bit word. */
export const codesPerWord = (scheme: PackedScheme): number => 32 / SCHEME_BITS[scheme];

/** Words in one packed row: K must be a multiple of the codes a word holds. */
export const wordsPerRow = (scheme: PackedScheme, K: number): number => K / codesPerWord(scheme);

export const groupCount = (K: number, group: number): number => Math.ceil(K / group);

/** Code k of row n. */
export function codeAt(p: PackedLinear, n: number, k: number): number {
  const bits = SCHEME_BITS[p.scheme];
  const P = 32 / bits;
  const word = p.qweight[n * (p.K / P) + Math.floor(k / P)]!;
  return (word >>> ((k % P) * bits)) & ((1 << bits) - 1);
}

/** The layout's invariants; a message naming what is wrong, or undefined. */
export function packedLinearProblem(p: PackedLinear): string | undefined {
  const P = codesPerWord(p.scheme);
  const groups = groupCount(p.K, p.group);
  if (!(Number.isInteger(p.N) && p.N > 0 && Number.isInteger(p.K) && p.K > 0)) return `bad shape [${p.N}, ${p.K}]`;
  if (p.K % P !== 0) return `K ${p.K} is not a multiple of the ${P} codes a word holds`;
  if (!(Number.isInteger(p.group) && p.group > 0)) return `bad group size ${p.group}`;
  if (p.qweight.length !== p.N * (p.K / P)) return `qweight has ${p.qweight.length} words, expected ${p.N * (p.K / P)}`;
  if (p.scales.length !== p.N * groups) return `scales has ${p.scales.length} values, expected ${p.N * groups}`;
  if ((p.scheme === "fp8") !== (p.zeros === undefined)) return p.scheme === "fp8" ? "fp8 has no zero points" : "int schemes need zero points";
  if (p.zeros !== undefined && p.zeros.length !== p.N * groups) return `zeros has ${p.zeros.length} values, expected ${p.N * groups}`;
  if (p.perm !== undefined) {
    if (p.perm.length !== p.K) return `perm has ${p.perm.length} entries, expected ${p.K}`;
    const seen = new Uint8Array(p.K);
    for (const j of p.perm) {
      if (!(j >= 0 && j < p.K) || seen[j]) return `perm is not a permutation of 0..${p.K - 1}`;
      seen[j] = 1;
    }
  }
  return undefined;
}

/**
 * The reference dequantization: W [N, K] f32 in the packed row's input order (apply `perm` to x,
 * or use `dequantizeToInputOrder`).
 */
export function dequantizePacked(p: PackedLinear): Float32Array {
  const groups = groupCount(p.K, p.group);
  const out = new Float32Array(p.N * p.K);
  for (let n = 0; n < p.N; n++) {
    for (let k = 0; k < p.K; k++) {
      const g = n * groups + Math.floor(k / p.group);
      const c = codeAt(p, n, k);
      out[n * p.K + k] = p.scheme === "fp8" ? E4M3_TO_F32[c]! * p.scales[g]! : (c - p.zeros![g]!) * p.scales[g]!;
    }
  }
  return out;
}

/** W [N, K] f32 in the model's input order: column perm[k] holds packed input k. */
export function dequantizeToInputOrder(p: PackedLinear): Float32Array {
  const w = dequantizePacked(p);
  if (p.perm === undefined) return w;
  const out = new Float32Array(w.length);
  for (let n = 0; n < p.N; n++) for (let k = 0; k < p.K; k++) out[n * p.K + p.perm[k]!] = w[n * p.K + k]!;
  return out;
}

/**
 * Packs codes [N, K] (one unsigned code per element, in packed input order) into qweight words.
 * For fixture generators and tests; the format converters write words directly.
 */
export function packCodes(scheme: PackedScheme, N: number, K: number, codes: ArrayLike<number>): Int32Array {
  const bits = SCHEME_BITS[scheme];
  const P = 32 / bits;
  if (K % P !== 0) throw new RangeError(`K ${K} is not a multiple of ${P}`);
  const out = new Int32Array((N * K) / P);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const c = codes[n * K + k]!;
      if (!(Number.isInteger(c) && c >= 0 && c < 1 << bits)) throw new RangeError(`code ${c} at [${n}, ${k}] does not fit ${bits} bits`);
      out[n * (K / P) + Math.floor(k / P)]! |= c << ((k % P) * bits);
    }
  }
  return out;
}
