/**
 * CPU twins of the CUDA kernels of the non-attention token mixers and the fused experts, in
 * float64 and written from the HF definitions (not from kiln's CPU implementations, which
 * twins_mixers.test.ts checks against them).
 */

/** Top-k routing: softmax over E logits, the k largest (ties to the lower index), optionally renormalized. */
export function moeRoute(logits: Float64Array, T: number, E: number, K: number, renorm: boolean): { experts: Int32Array; weights: Float64Array } {
  const experts = new Int32Array(T * K);
  const weights = new Float64Array(T * K);
  for (let t = 0; t < T; t++) {
    const row = Array.from(logits.subarray(t * E, (t + 1) * E));
    const max = Math.max(...row);
    const exps = row.map((l) => Math.exp(l - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    const order = exps.map((p, e) => ({ p: p / sum, e })).sort((a, b) => b.p - a.p || a.e - b.e);
    const top = order.slice(0, K);
    const total = top.reduce((a, b) => a + b.p, 0);
    top.forEach(({ p, e }, k) => {
      experts[t * K + k] = e;
      weights[t * K + k] = renorm ? p / total : p;
    });
  }
  return { experts, weights };
}

export interface MoeTwinShape {
  readonly T: number;
  readonly H: number;
  readonly E: number;
  readonly I: number;
  readonly K: number;
  readonly renorm: boolean;
}

/**
 * out [T, H] = Σ_k weight_k · down_e(silu(gate_e · x) · (up_e · x)); router [E, H],
 * w13 [E, 2I, H] (gate rows then up rows), w2 [E, H, I]. Also the routes.
 */
export function fusedExperts(
  x: Float32Array,
  router: Float32Array,
  w13: Float32Array,
  w2: Float32Array,
  s: MoeTwinShape,
): { out: Float64Array; experts: Int32Array; weights: Float64Array } {
  const { T, H, E, I, K } = s;
  const dot = (a: Float32Array, ao: number, b: Float32Array | Float64Array, bo: number, n: number): number => {
    let acc = 0;
    for (let i = 0; i < n; i++) acc += a[ao + i]! * b[bo + i]!;
    return acc;
  };
  const logits = new Float64Array(T * E);
  for (let t = 0; t < T; t++) for (let e = 0; e < E; e++) logits[t * E + e] = dot(x, t * H, router, e * H, H);
  const { experts, weights } = moeRoute(logits, T, E, K, s.renorm);
  const out = new Float64Array(T * H);
  const h = new Float64Array(I);
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < K; k++) {
      const e = experts[t * K + k]!;
      for (let r = 0; r < I; r++) {
        const gate = dot(w13, (e * 2 * I + r) * H, x, t * H, H);
        const up = dot(w13, (e * 2 * I + I + r) * H, x, t * H, H);
        h[r] = (gate / (1 + Math.exp(-gate))) * up;
      }
      for (let j = 0; j < H; j++) out[t * H + j] = out[t * H + j]! + weights[t * K + k]! * dot(w2, (e * H + j) * I, h, 0, I);
    }
  }
  return { out, experts, weights };
}

/** A packed step's sequences: rows [queryStartLoc[s], queryStartLoc[s+1]) use state slot slots[s]. */
export interface TwinSeqs {
  readonly queryStartLoc: Int32Array;
  readonly slots: Int32Array;
}

/**
 * HF Lfm2ShortConv's conv: per channel, a causal conv of kernel L over [state; x] (state: the last
 * L − 1 inputs, [L − 1, D] per slot). Returns out [T, D] and the updated state pool.
 */
export function shortConv(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  states: Float32Array,
  seqs: TwinSeqs,
  D: number,
  L: number,
): { out: Float64Array; states: Float64Array } {
  const keep = L - 1;
  const out = new Float64Array(x.length);
  const next = Float64Array.from(states);
  for (let s = 0; s < seqs.slots.length; s++) {
    const [start, end, slot] = [seqs.queryStartLoc[s]!, seqs.queryStartLoc[s + 1]!, seqs.slots[s]!];
    for (let c = 0; c < D; c++) {
      const seq: number[] = [];
      for (let i = 0; i < keep; i++) seq.push(states[(slot * keep + i) * D + c]!);
      for (let t = start; t < end; t++) seq.push(x[t * D + c]!);
      for (let t = start; t < end; t++) {
        let acc = bias?.[c] ?? 0;
        for (let j = 0; j < L; j++) acc += w[c * L + j]! * seq[t - start + j]!;
        out[t * D + c] = acc;
      }
      for (let i = 0; i < keep; i++) next[(slot * keep + i) * D + c] = seq[seq.length - keep + i]!;
    }
  }
  return { out, states: next };
}

/**
 * HF MiniMaxLightningAttention, as its decode recurrence: per head, KV ← exp(−slope) · KV + kᵀv,
 * o = q · KV. qkv [T, heads · 3D] (per head [q | k | v]); states [slots, heads, D, D].
 */
export function linearAttention(
  qkv: Float32Array,
  slopes: Float32Array,
  states: Float32Array,
  seqs: TwinSeqs,
  heads: number,
  D: number,
): { out: Float64Array; states: Float64Array } {
  const out = new Float64Array((qkv.length / 3) | 0);
  const next = Float64Array.from(states);
  for (let s = 0; s < seqs.slots.length; s++) {
    const [start, end, slot] = [seqs.queryStartLoc[s]!, seqs.queryStartLoc[s + 1]!, seqs.slots[s]!];
    for (let h = 0; h < heads; h++) {
      const decay = Math.exp(-slopes[h]!);
      const kv = next.subarray((slot * heads + h) * D * D, (slot * heads + h + 1) * D * D);
      for (let t = start; t < end; t++) {
        const base = t * heads * 3 * D + h * 3 * D;
        for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) kv[i * D + j] = decay * kv[i * D + j]! + qkv[base + D + i]! * qkv[base + 2 * D + j]!;
        for (let j = 0; j < D; j++) {
          let o = 0;
          for (let i = 0; i < D; i++) o += qkv[base + i]! * kv[i * D + j]!;
          out[t * heads * D + h * D + j] = o;
        }
      }
    }
  }
  return { out, states: next };
}
