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

/** PyTorch's F.softplus (beta 1, threshold 20) */
function softplus(x: number): number {
  return x > 20 ? x : Math.log(1 + Math.exp(x));
}

export interface SelectiveScanTwinShape {
  /** channels I */
  readonly I: number;
  /** state size N */
  readonly N: number;
}

/**
 * HF MambaMixer.slow_forward's scan, one token at a time from each slot's state [I, N]:
 * Δ = softplus(delta), A = −exp(A_log), h ← exp(Δ·A) · h + Δ · B · u, y = (h · C + D · u) · silu(z).
 * u, delta, z [T, I]; aLog [I, N]; b, c [T, N]; d [I]; states [slots, I, N].
 */
export function selectiveScan(
  u: Float32Array,
  delta: Float32Array,
  aLog: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  z: Float32Array,
  states: Float32Array,
  seqs: TwinSeqs,
  { I, N }: SelectiveScanTwinShape,
): { out: Float64Array; states: Float64Array } {
  const out = new Float64Array(u.length);
  const next = Float64Array.from(states);
  const A = Float64Array.from(aLog, (v) => -Math.exp(v));
  for (let s = 0; s < seqs.slots.length; s++) {
    const [start, end, slot] = [seqs.queryStartLoc[s]!, seqs.queryStartLoc[s + 1]!, seqs.slots[s]!];
    const h = next.subarray(slot * I * N, (slot + 1) * I * N);
    for (let t = start; t < end; t++) {
      for (let i = 0; i < I; i++) {
        const dt = softplus(delta[t * I + i]!);
        const x = u[t * I + i]!;
        let y = 0;
        for (let n = 0; n < N; n++) {
          h[i * N + n] = Math.exp(A[i * N + n]! * dt) * h[i * N + n]! + dt * b[t * N + n]! * x;
          y += h[i * N + n]! * c[t * N + n]!;
        }
        const gate = z[t * I + i]!;
        out[t * I + i] = (y + x * d[i]!) * (gate / (1 + Math.exp(-gate)));
      }
    }
  }
  return { out, states: next };
}

export interface SsdScanTwinShape {
  readonly H: number;
  readonly P: number;
  readonly G: number;
  readonly N: number;
  readonly dtMin: number;
  /** undefined: no upper limit */
  readonly dtMax: number | undefined;
}

/**
 * HF Mamba2Mixer.torch_forward's single-step (cached) path, one token at a time from each slot's
 * state [H, P, N]: Δ = clamp(softplus(dt + dt_bias), limits), A = −exp(A_log) per head,
 * h ← h · exp(Δ·A) + Δ · B_g ⊗ x, y = h · C_g + D · x, with B and C repeated over the H / G heads
 * of each group. x [T, H·P]; dt [T, H]; dtBias, aLog, d [H]; b, c [T, G·N]; states [slots, H, P, N].
 */
export function ssdScan(
  x: Float32Array,
  dt: Float32Array,
  dtBias: Float32Array,
  aLog: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  states: Float32Array,
  seqs: TwinSeqs,
  { H, P, G, N, dtMin, dtMax }: SsdScanTwinShape,
): { out: Float64Array; states: Float64Array } {
  const out = new Float64Array(x.length);
  const next = Float64Array.from(states);
  const size = H * P * N;
  for (let s = 0; s < seqs.slots.length; s++) {
    const [start, end, slot] = [seqs.queryStartLoc[s]!, seqs.queryStartLoc[s + 1]!, seqs.slots[s]!];
    const state = next.subarray(slot * size, (slot + 1) * size);
    for (let t = start; t < end; t++) {
      for (let h = 0; h < H; h++) {
        const step = Math.min(Math.max(softplus(dt[t * H + h]! + dtBias[h]!), dtMin), dtMax ?? Infinity);
        const dA = Math.exp(step * -Math.exp(aLog[h]!));
        const g = Math.floor((h * G) / H); // repeat_interleave of the groups over the heads
        for (let p = 0; p < P; p++) {
          const xi = x[(t * H + h) * P + p]!;
          let y = 0;
          for (let n = 0; n < N; n++) {
            const k = (h * P + p) * N + n;
            state[k] = state[k]! * dA + step * b[(t * G + g) * N + n]! * xi;
            y += state[k] * c[(t * G + g) * N + n]!;
          }
          out[(t * H + h) * P + p] = y + xi * d[h]!;
        }
      }
    }
  }
  return { out, states: next };
}

/**
 * One packed step split in two, so a test can check that state carried between steps matches one
 * pass: the first `firstLens[s]` rows of each sequence, then the rest. Each part has its own
 * queryStartLoc (same slots) and `rows`, the whole step's row of each of its rows.
 */
export function splitStep(seqs: TwinSeqs, firstLens: readonly number[]): [TwinSeqs & { readonly rows: Int32Array }, TwinSeqs & { readonly rows: Int32Array }] {
  const parts = [0, 1].map((part) => {
    const qsl = [0];
    const rows: number[] = [];
    for (let s = 0; s < seqs.slots.length; s++) {
      const [start, end] = [seqs.queryStartLoc[s]!, seqs.queryStartLoc[s + 1]!];
      const cut = Math.min(end, start + firstLens[s]!);
      for (let t = part === 0 ? start : cut; t < (part === 0 ? cut : end); t++) rows.push(t);
      qsl.push(rows.length);
    }
    return { queryStartLoc: Int32Array.from(qsl), slots: seqs.slots, rows: Int32Array.from(rows) };
  });
  return [parts[0]!, parts[1]!];
}

/** The given rows of a [T, width] matrix. */
export function gatherRows(x: Float32Array, rows: Int32Array, width: number): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(x.subarray(r * width, (r + 1) * width), i * width));
  return out;
}
