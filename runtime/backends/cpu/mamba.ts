/**
 * The state-space scans of Mamba-1 and Mamba-2 on the CPU (IR nodes `selective_scan` and
 * `ssd_scan`): the plain recurrence over each sequence's tokens, continuing from the sequence's
 * SSM state and leaving the state after its last token in place, so a prompt prefilled in chunks
 * and a decode step compute what one pass over the whole sequence computes. These are the
 * reference twins of the CUDA kernels.
 *
 * Mamba-1 (per channel i of I, state index n of N; A = −exp(A_log) [I, N]):
 *   Δ = softplus(delta[t, i])
 *   h[i, n] ← exp(Δ · A[i, n]) · h[i, n] + Δ · B[t, n] · u[t, i]
 *   y[t, i] = (Σ_n h[i, n] · C[t, n] + D[i] · u[t, i]) · silu(z[t, i])
 *
 * Mamba-2 / SSD (H heads of P channels; B and C in G groups, head h reads group h / (H / G);
 * A = −exp(A_log) [H], one decay per head and token):
 *   Δ = clamp(softplus(dt[t, h] + dt_bias[h]), dtMin, dtMax)
 *   h[h, p, n] ← exp(Δ · A[h]) · h[h, p, n] + Δ · x[t, h, p] · B[t, g, n]
 *   y[t, h, p] = Σ_n h[h, p, n] · C[t, g, n] + D[h] · x[t, h, p]
 *
 * Sums run in double precision; values are stored in f32, as the state is.
 */

/** One sequence of a step: its rows [start, end) and its SSM state (a view into the slot pool). */
export interface ScanSeq {
  readonly start: number;
  readonly end: number;
  readonly state: Float32Array;
}

/** PyTorch's softplus (beta 1, threshold 20): x itself above the threshold. */
export function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** A = −exp(A_log), rounded to f32 as the reference computes it. */
export function negExp(aLog: Float32Array): Float32Array {
  return Float32Array.from(aLog, (v) => -Math.exp(v));
}

export interface SelectiveScanDims {
  /** channels I */
  readonly dim: number;
  /** state size N */
  readonly stateSize: number;
}

/**
 * Mamba-1 selective scan. u, delta, z, out [T, I]; b, c [T, N]; a = −exp(A_log) [I, N]; d [I];
 * each sequence's state [I, N].
 */
export function selectiveScan(
  out: Float32Array,
  u: Float32Array,
  delta: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  z: Float32Array,
  seqs: readonly ScanSeq[],
  { dim: I, stateSize: N }: SelectiveScanDims,
): Float32Array {
  for (const { start, end, state } of seqs) {
    for (let t = start; t < end; t++) {
      const row = t * I;
      const bc = t * N;
      for (let i = 0; i < I; i++) {
        const dt = Math.fround(softplus(delta[row + i]!));
        const ui = u[row + i]!;
        const dtu = dt * ui;
        let y = 0;
        const s0 = i * N;
        for (let n = 0; n < N; n++) {
          const h = Math.fround(Math.exp(dt * a[s0 + n]!) * state[s0 + n]! + dtu * b[bc + n]!);
          state[s0 + n] = h;
          y += h * c[bc + n]!;
        }
        out[row + i] = (y + d[i]! * ui) * silu(z[row + i]!);
      }
    }
  }
  return out;
}

export interface SsdScanDims {
  readonly numHeads: number;
  readonly headDim: number;
  readonly numGroups: number;
  readonly stateSize: number;
  readonly dtMin: number;
  /** undefined: no upper limit */
  readonly dtMax: number | undefined;
}

/**
 * Mamba-2 SSD scan. x, out [T, H·P]; dt [T, H]; b, c [T, G·N]; dtBias, a = −exp(A_log), d [H];
 * each sequence's state [H, P, N].
 */
export function ssdScan(
  out: Float32Array,
  x: Float32Array,
  dt: Float32Array,
  dtBias: Float32Array,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  d: Float32Array,
  seqs: readonly ScanSeq[],
  dims: SsdScanDims,
): Float32Array {
  const { numHeads: H, headDim: P, numGroups: G, stateSize: N, dtMin } = dims;
  const dtMax = dims.dtMax ?? Infinity;
  const headsPerGroup = H / G;
  for (const { start, end, state } of seqs) {
    for (let t = start; t < end; t++) {
      for (let h = 0; h < H; h++) {
        const step = Math.fround(Math.min(Math.max(softplus(Math.fround(dt[t * H + h]! + dtBias[h]!)), dtMin), dtMax));
        const decay = Math.exp(step * a[h]!);
        const g = Math.floor(h / headsPerGroup);
        const bc = (t * G + g) * N;
        for (let p = 0; p < P; p++) {
          const xi = x[(t * H + h) * P + p]!;
          const dtx = step * xi;
          const s0 = (h * P + p) * N;
          let y = 0;
          for (let n = 0; n < N; n++) {
            const s = Math.fround(decay * state[s0 + n]! + dtx * b[bc + n]!);
            state[s0 + n] = s;
            y += s * c[bc + n]!;
          }
          out[(t * H + h) * P + p] = y + d[h]! * xi;
        }
      }
    }
  }
  return out;
}
