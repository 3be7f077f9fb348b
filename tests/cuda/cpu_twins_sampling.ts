/**
 * CPU twin of kiln_sample_rows (kernels/cuda/sampling.cu): the same algorithm on the same packed
 * params (runtime/engine/device_sampling.ts), with sequential sums where the kernel reduces over its
 * block. The adjustments are applied to a copy; the logits are left as they are.
 */
import { SAMPLING_ENTRY_WORDS, SAMPLING_HEADER_WORDS } from "../../runtime/engine/device_sampling.ts";
import { F32_MAX } from "../../runtime/engine/logits_processors.ts";

const bits = new DataView(new ArrayBuffer(8));

function f64At(params: Int32Array, word: number): number {
  bits.setInt32(0, params[word]!, true);
  bits.setInt32(4, params[word + 1]!, true);
  return bits.getFloat64(0, true);
}

function fromBits(b: bigint): number {
  bits.setBigUint64(0, b, true);
  return bits.getFloat64(0, true);
}

/** The largest pattern b of a double in [0, 1] with pred(b), pred true at 0 and monotone. */
function largestBits(pred: (v: number) => boolean): bigint {
  let b = 0n;
  for (let bit = 61n; bit >= 0n; bit--) {
    const c = b | (1n << bit);
    if (pred(fromBits(c))) b = c;
  }
  return b;
}

interface Cut {
  minP: number;
  topK: number;
  nucleus: boolean;
  tau: number;
  idCut: number;
}

function kept(i: number, e: number, c: Cut): boolean {
  if (!(e > 0) || e < c.minP || e < c.topK) return false;
  return !c.nucleus || e > c.tau || (e === c.tau && i <= c.idCut);
}

/** Token ids [S] sampled from logits [S, V] with the packed params. */
export function sampleRows(logits: Float32Array, params: Int32Array, S: number, V: number): Int32Array {
  const out = new Int32Array(S);
  for (let s = 0; s < S; s++) {
    const h = s * SAMPLING_HEADER_WORDS;
    const row = Float32Array.from(logits.subarray(s * V, (s + 1) * V));
    if (params[h + 2]! & 8) {
      const m = params[h + 18]!;
      for (let i = 0; i < V; i++) if (!((params[m + (i >> 5)]! >>> (i & 31)) & 1)) row[i] = -Infinity;
    }
    const flags = params[h + 2]!;
    for (let j = 0; j < params[h + 1]!; j++) {
      const en = params[h]! + j * SAMPLING_ENTRY_WORDS;
      const t = params[en]!;
      if (t < 0 || t >= V) continue;
      const count = params[en + 1]!;
      const ef = params[en + 2]!;
      if (ef & 1) row[t] = -Infinity;
      if (ef & 4) row[t] = row[t]! + f64At(params, en + 3);
      if (flags & 2 && (ef & 2 || count > 0)) {
        const r = f64At(params, h + 10);
        const x = row[t]!;
        const y = x > 0 ? x / r : x * r;
        // a finite logit stays finite (the kernel's kiln_hold_finite)
        row[t] = Number.isFinite(x) && Math.abs(y) > F32_MAX ? Math.sign(y) * F32_MAX : y;
      }
      if (flags & 4 && count > 0) {
        row[t] = row[t]! - f64At(params, h + 12) * count;
        row[t] = row[t] - f64At(params, h + 14);
      }
    }
    out[s] = flags & 1 ? argmax(row) : draw(row, params, h);
  }
  return out;
}

function argmax(row: Float32Array): number {
  let best = -Infinity;
  let at = 0;
  for (let i = 0; i < row.length; i++) {
    if (row[i]! > best) {
      best = row[i]!;
      at = i;
    }
  }
  return at;
}

function draw(row: Float32Array, params: Int32Array, h: number): number {
  const V = row.length;
  let mx = -Infinity;
  for (let i = 0; i < V; i++) if (row[i]! > mx) mx = row[i]!;
  if (mx === -Infinity) return 0;
  const T = f64At(params, h + 4);
  const e = Float64Array.from(row, (l) => Math.exp((l - mx) / T));
  const c: Cut = { minP: f64At(params, h + 6), topK: 0, nucleus: false, tau: 0, idCut: V };
  const sum = (f: (i: number, e: number) => number): number => {
    let acc = 0;
    for (let i = 0; i < V; i++) acc += f(i, e[i]!);
    return acc;
  };
  const nthId = (member: (i: number, e: number) => boolean, n: number): number => {
    let lo = 0;
    let hi = V - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sum((i, x) => (i <= mid && member(i, x) ? 1 : 0)) >= n) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  const topK = params[h + 3]!;
  if (topK >= 1 && topK < sum((i, x) => (kept(i, x, c) ? 1 : 0))) {
    c.topK = fromBits(largestBits((v) => sum((i, x) => (x >= v && kept(i, x, c) ? 1 : 0)) >= topK));
  }
  const topP = f64At(params, h + 8);
  if (topP < 1) {
    const mass = sum((i, x) => (kept(i, x, c) ? x : 0));
    const need = topP * mass;
    if (mass >= need) {
      const tau = fromBits(largestBits((v) => sum((i, x) => (x > v && kept(i, x, c) ? x : 0)) >= need) + 1n);
      const before = sum((i, x) => (x > tau && kept(i, x, c) ? x : 0));
      const ties = sum((i, x) => (x === tau && kept(i, x, c) ? 1 : 0));
      let keep = 0;
      let acc = before;
      while (keep < ties && acc < need) {
        acc += tau;
        keep++;
      }
      keep = Math.max(1, keep);
      if (keep < ties) c.idCut = nthId((i, x) => x === tau && kept(i, x, c), keep);
      c.nucleus = true;
      c.tau = tau;
    }
  }
  const total = sum((i, x) => (kept(i, x, c) ? x : 0));
  const target = f64At(params, h + 16) * total;
  const keptIds = (): number[] => Array.from({ length: V }, (_, i) => i).filter((i) => kept(i, e[i]!, c));
  if (!c.nucleus) {
    if (!(total > target)) return keptIds().at(-1) ?? 0;
    let lo = 0;
    let hi = V - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sum((i, x) => (i <= mid && kept(i, x, c) ? x : 0)) > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
  if (total > target) {
    const w = fromBits(largestBits((v) => sum((i, x) => (x >= v && kept(i, x, c) ? x : 0)) > target));
    const before = sum((i, x) => (x > w && kept(i, x, c) ? x : 0));
    const ties = sum((i, x) => (x === w && kept(i, x, c) ? 1 : 0));
    let m = 0;
    let acc = before;
    for (; m + 1 < ties; m++) {
      acc += w;
      if (target < acc) break;
    }
    return nthId((i, x) => x === w && kept(i, x, c), m + 1);
  }
  const ids = keptIds();
  const least = Math.min(...ids.map((i) => e[i]!));
  return ids.filter((i) => e[i] === least).at(-1) ?? 0;
}
