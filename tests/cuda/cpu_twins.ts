/**
 * CPU twins of the CUDA kernels: straightforward float64 implementations written from the
 * definitions (PyTorch / HF semantics), the references the CUDA kernels are compared against.
 * They run anywhere (no native addon), so the GPU check script carries them in its bundle;
 * twins.test.ts checks them against kiln's native CPU kernels on this machine.
 */

export type Unary = "silu" | "gelu_tanh" | "gelu" | "relu" | "tanh" | "neg" | "sigmoid";

const f32 = Math.fround;

export function widenBf16(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return new Float32Array(u.buffer);
}

export function embedding(table: Float32Array, ids: Int32Array, H: number): Float32Array {
  const out = new Float32Array(ids.length * H);
  ids.forEach((id, t) => out.set(table.subarray(id * H, (id + 1) * H), t * H));
  return out;
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

export function rmsNorm(x: Float32Array, w: Float32Array, group: number, eps: number, weightOffset: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let g = 0; g < x.length / group; g++) {
    let ss = 0;
    for (let j = 0; j < group; j++) ss += x[g * group + j]! ** 2;
    const inv = 1 / Math.sqrt(ss / group + eps);
    for (let j = 0; j < group; j++) out[g * group + j] = x[g * group + j]! * inv * (w[j]! + weightOffset);
  }
  return out;
}

export function layerNorm(x: Float32Array, w: Float32Array, b: Float32Array | undefined, cols: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let mean = 0;
    for (let j = 0; j < cols; j++) mean += x[r * cols + j]!;
    mean /= cols;
    let v = 0;
    for (let j = 0; j < cols; j++) v += (x[r * cols + j]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / cols + eps);
    for (let j = 0; j < cols; j++) out[r * cols + j] = (x[r * cols + j]! - mean) * inv * w[j]! + (b ? b[j]! : 0);
  }
  return out;
}

export function binary(op: "add" | "mul", a: Float32Array, b: Float32Array): Float64Array {
  return Float64Array.from(a, (v, i) => (op === "add" ? v + b[i % b.length]! : v * b[i % b.length]!));
}

function erf(x: number): number {
  // Taylor series near 0, continued fraction for erfc beyond: ~1e-15
  const t = Math.abs(x);
  if (t < 2.5) {
    let sum = t;
    let term = t;
    for (let n = 1; n < 80; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
      if (Math.abs(term) < 1e-18) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  let f = 0;
  for (let n = 80; n >= 1; n--) f = n / 2 / (t + f);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
  return x < 0 ? erfc - 1 : 1 - erfc;
}

export function unary(op: Unary, x: Float32Array): Float64Array {
  const k = Math.sqrt(2 / Math.PI);
  const f = {
    silu: (v: number) => v / (1 + Math.exp(-v)),
    gelu_tanh: (v: number) => 0.5 * v * (1 + Math.tanh(k * (v + 0.044715 * v ** 3))),
    gelu: (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
    relu: (v: number) => (v > 0 ? v : 0),
    tanh: (v: number) => Math.tanh(v),
    neg: (v: number) => -v,
    sigmoid: (v: number) => 1 / (1 + Math.exp(-v)),
  }[op];
  return Float64Array.from(x, f);
}

export function sliceCols(x: Float32Array, rows: number, cols: number, start: number, size: number): Float32Array {
  const out = new Float32Array(rows * size);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * cols + start, r * cols + start + size), r * size);
  return out;
}

export function gatherRows(x: Float32Array, idx: Int32Array, cols: number): Float32Array {
  const out = new Float32Array(idx.length * cols);
  idx.forEach((r, s) => out.set(x.subarray(r * cols, (r + 1) * cols), s * cols));
  return out;
}

export interface RopeShape {
  readonly T: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly rotaryDim: number;
  readonly neox: boolean;
}

/** angle = f32(f32(pos) · invFreq[i]) as HF computes it in float32; the rotation in double */
export function rope(x: Float32Array, positions: Int32Array, invFreq: Float32Array, s: RopeShape): Float64Array {
  const out = Float64Array.from(x);
  const half = s.rotaryDim / 2;
  for (let t = 0; t < s.T; t++) {
    for (let h = 0; h < s.numHeads; h++) {
      const base = (t * s.numHeads + h) * s.headDim;
      for (let i = 0; i < half; i++) {
        const angle = f32(f32(positions[t]!) * invFreq[i]!);
        const c = f32(Math.cos(angle));
        const sn = f32(Math.sin(angle));
        const ia = base + (s.neox ? i : 2 * i);
        const ib = ia + (s.neox ? half : 1);
        const a = x[ia]!;
        const b = x[ib]!;
        out[ia] = a * c - b * sn;
        out[ib] = b * c + a * sn;
      }
    }
  }
  return out;
}

export function writeKv(kCache: Float32Array, vCache: Float32Array, k: Float32Array, v: Float32Array, slots: Int32Array, rowWidth: number): void {
  slots.forEach((slot, t) => {
    kCache.set(k.subarray(t * rowWidth, (t + 1) * rowWidth), slot * rowWidth);
    vCache.set(v.subarray(t * rowWidth, (t + 1) * rowWidth), slot * rowWidth);
  });
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
