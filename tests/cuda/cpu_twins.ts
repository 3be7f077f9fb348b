/**
 * CPU twins of the CUDA kernels: straightforward float64 implementations written from the
 * definitions (PyTorch / HF semantics), the references the CUDA kernels are compared against.
 * They run anywhere (no native addon), so the GPU check script carries them in its bundle;
 * twins.test.ts checks them against kiln's native CPU kernels on this machine.
 */

export function widenBf16(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return new Float32Array(u.buffer);
}

/** out[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]); also the error scale Σ_k |x · w| (+ |bias[n]|) */
export function linear(x: Float32Array, w: Float32Array, M: number, N: number, K: number, bias?: Float32Array): { out: Float64Array; scale: Float64Array } {
  const out = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      const b = bias === undefined ? 0 : bias[n]!;
      out[m * N + n] = s + b;
      scale[m * N + n] = a + Math.abs(b);
    }
  }
  return { out, scale };
}

/** a + b, b broadcast over a's rows ([N] against [R, N]) or of a's shape */
export function add(a: Float32Array, b: Float32Array): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i % b.length]!);
}

/**
 * The e4m3 value of each bit pattern 0x00 … 0x7f from the format's definition (bias 7, 3 mantissa
 * bits): exponent 0 is subnormal, m · 2^-9; else 2^(e − 7) · (1 + m / 8); 0x7f is NaN.
 */
const E4M3_MAGNITUDES: readonly number[] = Array.from({ length: 128 }, (_, b) => {
  const e = b >> 3;
  const m = b & 7;
  if (b === 0x7f) return NaN;
  return e === 0 ? m * 2 ** -9 : 2 ** (e - 7) * (1 + m / 8);
});

/** e4m3 bits → value (exact); NaN for 0x7f / 0xff */
export function e4m3Value(bits: number): number {
  const v = E4M3_MAGNITUDES[bits & 0x7f]!;
  return bits & 0x80 ? -v : v;
}

/**
 * x → e4m3 bits by search, not bit tricks (so it checks them): the nearest finite magnitude,
 * a tie to the even pattern; |x| ≥ 448 (infinities too) saturates to ±448 (0x7e), as vLLM's
 * saturating conversion does; NaN → 0x7f with x's sign.
 */
export function encodeE4m3(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  if (Number.isNaN(x)) return 0x7f;
  const a = Math.abs(x);
  if (a >= 448) return sign | 0x7e;
  let best = 0;
  for (let b = 1; b < 0x7f; b++) {
    const d = Math.abs(E4M3_MAGNITUDES[b]! - a);
    const dBest = Math.abs(E4M3_MAGNITUDES[best]! - a);
    if (d < dBest || (d === dBest && (b & 1) === 0 && (best & 1) === 1)) best = b;
  }
  return sign | best;
}

export function toE4m3(x: Float32Array): Uint8Array {
  return Uint8Array.from(x, encodeE4m3);
}

export function fromE4m3(bits: Uint8Array): Float32Array {
  return Float32Array.from(bits, e4m3Value);
}

export interface AttentionShape {
  readonly blockSize: number;
  readonly maxBlocksPerSeq: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly window: number | undefined;
  readonly softcap: number | undefined;
  /** an fp8 cache's per-tensor scales: the caches hold value / scale (default 1) */
  readonly kScale?: number;
  readonly vScale?: number;
}

/** Causal paged attention of each query row t (sequence tokenSeq[t], position tokenPos[t]). */
export function pagedAttention(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  tokenSeq: Int32Array,
  tokenPos: Int32Array,
  blockTables: Int32Array,
  s: AttentionShape,
): Float64Array {
  const D = s.headDim;
  const T = tokenSeq.length;
  const out = new Float64Array(T * s.numHeads * D);
  const group = s.numHeads / s.numKvHeads;
  for (let t = 0; t < T; t++) {
    const pos = tokenPos[t]!;
    const lo = s.window !== undefined ? Math.max(0, pos + 1 - s.window) : 0;
    for (let h = 0; h < s.numHeads; h++) {
      const kvh = Math.floor(h / group);
      const qRow = (t * s.numHeads + h) * D;
      const rows: number[] = [];
      const scores: number[] = [];
      for (let j = lo; j <= pos; j++) {
        const slot = blockTables[tokenSeq[t]! * s.maxBlocksPerSeq + Math.floor(j / s.blockSize)]! * s.blockSize + (j % s.blockSize);
        const at = (slot * s.numKvHeads + kvh) * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qRow + d]! * kCache[at + d]!;
        let score = dot * s.scale * (s.kScale ?? 1);
        if (s.softcap !== undefined) score = s.softcap * Math.tanh(score / s.softcap);
        rows.push(at);
        scores.push(score);
      }
      const m = Math.max(...scores);
      const p = scores.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      for (let d = 0; d < D; d++) {
        let acc = 0;
        rows.forEach((at, i) => (acc += p[i]! * vCache[at + d]!));
        out[qRow + d] = (acc * (s.vScale ?? 1)) / l;
      }
    }
  }
  return out;
}

/** First index of each row's maximum, NaN never chosen; 0 for a row of -inf/NaN. */
export function argmaxRows(logits: Float32Array, S: number, V: number): Int32Array {
  const out = new Int32Array(S);
  for (let s = 0; s < S; s++) {
    let best = -Infinity;
    let at = 0;
    for (let j = 0; j < V; j++) {
      if (logits[s * V + j]! > best) {
        best = logits[s * V + j]!;
        at = j;
      }
    }
    out[s] = at;
  }
  return out;
}
