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

export interface AttentionShape {
  readonly blockSize: number;
  readonly maxBlocksPerSeq: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly window: number | undefined;
  readonly softcap: number | undefined;
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
        let score = dot * s.scale;
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
        out[qRow + d] = acc / l;
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
