/**
 * Parity cases for the fused-experts kernels (and the stateful token mixers): the CUDA kernels
 * on random inputs of awkward sizes against their float64 CPU twins (cpu_twins_mixers.ts).
 */
import * as twin from "./cpu_twins_mixers.ts";
import type { DevicePtr } from "../../runtime/backends/cuda/device.ts";
import { SSD_SCAN_WARPS } from "../../runtime/backends/cuda/node_kernels.ts";
import { compare, fromBf16, fromF16, randomF32, rng, toBf16, toF16, type DeviceScratch, type ParityCase, type ParityResult } from "./parity_support.ts";

const B128: readonly [number, number, number] = [128, 1, 1];

function worst(name: string, results: readonly ParityResult[], tol: number): ParityResult {
  const maxErr = results.reduce((m, r) => (r.maxErr <= m ? m : r.maxErr), 0);
  return { name, maxErr, tol, ok: maxErr <= tol };
}

/**
 * The experts kernels with f32, bf16 or f16 expert weights: the 16-bit kernels against the twin
 * on the widened weights (the same products in the same order), so the tolerance is the f32 one.
 */
function moeCase(T: number, H: number, E: number, I: number, K: number, renorm: boolean, seed: number, wDtype: "f32" | "bf16" | "f16" = "f32"): ParityCase {
  const name = `moe route + act + down [T=${T}, H=${H}, E=${E}, I=${I}, top-${K}${renorm ? ", renormalized" : ""}${wDtype === "f32" ? "" : `, ${wDtype} experts`}]`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const x = randomF32(T * H, r);
      const router = randomF32(E * H, r, 0.5);
      const w13f = randomF32(E * 2 * I * H, r, 0.3);
      const w2f = randomF32(E * H * I, r, 0.3);
      const bits = (w: Float32Array): Uint16Array => (wDtype === "bf16" ? toBf16(w) : toF16(w));
      const widen = (w: Float32Array): Float32Array => (wDtype === "f32" ? w : wDtype === "bf16" ? fromBf16(bits(w)) : fromF16(bits(w)));
      const [w13, w2] = [widen(w13f), widen(w2f)];
      const ref = twin.fusedExperts(x, router, w13, w2, { T, H, E, I, K, renorm });
      const upload = (w: Float32Array): bigint => (wDtype === "f32" ? s.f32(w) : s.u16(bits(w)));
      const [dx, dRouter, dW13, dW2] = [s.f32(x), s.f32(router), upload(w13f), upload(w2f)];
      const experts = s.outI32(T * K);
      const weights = s.out(T * K);
      const h = s.out(T * K * I);
      const out = s.out(T * H);
      const [act, down] = wDtype === "f32" ? (["kiln_moe_act", "kiln_moe_down"] as const) : wDtype === "bf16" ? (["kiln_moe_act_bf16", "kiln_moe_down_bf16"] as const) : (["kiln_moe_act_f16", "kiln_moe_down_f16"] as const);
      b.kernels.launch("kiln_moe_route", [T, 1, 1], B128, [experts, weights, dx, dRouter, T, H, E, K, renorm ? 1 : 0]);
      b.kernels.launch(act, [T * K, 1, 1], B128, [h, dx, dW13, experts, T, H, I, K]);
      b.kernels.launch(down, [T, 1, 1], B128, [out, h, dW2, experts, weights, T, H, I, K]);
      const routed = compare(`${name}: experts`, s.readI32(experts, T * K), ref.experts, 0);
      return worst(name, [routed, compare(`${name}: weights`, s.read(weights, T * K), ref.weights, 1e-6), compare(name, s.read(out, T * H), ref.out, 2e-5)], 2e-5);
    },
  };
}

/** Three sequences of a packed step (a prefill chunk, a decode token, a longer chunk) in slots 2, 0, 3 of 4. */
function stepSeqs(): twin.TwinSeqs & { readonly T: number } {
  return { queryStartLoc: Int32Array.from([0, 5, 6, 15]), slots: Int32Array.from([2, 0, 3]), T: 15 };
}

function shortConvCase(D: number, L: number, withBias: boolean, seed: number): ParityCase {
  const name = `short_conv [D=${D}, L=${L}${withBias ? ", bias" : ""}], 3 sequences from non-zero states`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const seqs = stepSeqs();
      const x = randomF32(seqs.T * D, r);
      const w = randomF32(D * L, r);
      const bias = withBias ? randomF32(D, r) : undefined;
      const states = randomF32(4 * (L - 1) * D, r);
      const ref = twin.shortConv(x, w, bias, states, seqs, D, L);
      const dStates = s.f32(states);
      const out = s.out(seqs.T * D);
      const dw = s.f32(w);
      const args = [out, s.f32(x), dw, bias === undefined ? dw : s.f32(bias), bias === undefined ? 0 : 1, dStates, s.i32(seqs.queryStartLoc), s.i32(seqs.slots), 3, D, L] as const;
      b.kernels.launch("kiln_short_conv", [3, Math.ceil(D / 128), 1], B128, args);
      return worst(name, [compare(name, s.read(out, seqs.T * D), ref.out, 2e-6), compare(`${name}: states`, s.read(dStates, states.length), ref.states, 0)], 2e-6);
    },
  };
}

function linearAttentionCase(heads: number, D: number, seed: number): ParityCase {
  const name = `linear_attention [heads=${heads}, D=${D}], 3 sequences from non-zero states`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const seqs = stepSeqs();
      const qkv = randomF32(seqs.T * heads * 3 * D, r, 0.5);
      const slopes = Float32Array.from({ length: heads }, (_, h) => 2 ** (-(h + 1)));
      const states = randomF32(4 * heads * D * D, r, 0.5);
      const ref = twin.linearAttention(qkv, slopes, states, seqs, heads, D);
      const decays = Float32Array.from(slopes, (x) => Math.exp(-x));
      const dStates = s.f32(states);
      const out = s.out(seqs.T * heads * D);
      const block = Math.ceil(D / 32) * 32;
      b.kernels.launch("kiln_linear_attention", [3, heads, 1], [block, 1, 1], [out, s.f32(qkv), dStates, s.f32(decays), s.i32(seqs.queryStartLoc), s.i32(seqs.slots), 3, heads, D]);
      const outErr = compare(name, s.read(out, seqs.T * heads * D), ref.out, 2e-5);
      return worst(name, [outErr, compare(`${name}: states`, s.read(dStates, states.length), ref.states, 2e-5)], 2e-5);
    },
  };
}

/**
 * Three sequences of 7, 2 and 11 rows in slots 2, 0, 3 of 4, run either as one step or, with
 * `split`, as two: a chunk of `split[s]` rows of each, then the rest (here one decode row each).
 */
function scanSeqs(): twin.TwinSeqs & { readonly T: number } {
  return { queryStartLoc: Int32Array.from([0, 7, 9, 20]), slots: Int32Array.from([2, 0, 3]), T: 20 };
}
const SCAN_SPLIT = [6, 1, 10] as const;

/** A part of a step: its sequences and its [rows, width] slice of an input, on the device. */
type StepPart = twin.TwinSeqs & { readonly T: number; rowsOf(x: Float32Array, width: number): DevicePtr };

/**
 * Runs `launch` on the whole step, or on its two parts in order (state carried on the device
 * between them), and returns the [T, width] output in the whole step's row order.
 */
function stepped(s: DeviceScratch, seqs: twin.TwinSeqs & { readonly T: number }, split: readonly number[] | undefined, width: number, launch: (part: StepPart, out: DevicePtr) => void): Float32Array {
  const whole = { ...seqs, rows: Int32Array.from({ length: seqs.T }, (_, t) => t) };
  const parts = split === undefined ? [whole] : twin.splitStep(seqs, split);
  const full = new Float32Array(seqs.T * width);
  for (const part of parts) {
    const T = part.rows.length;
    const out = s.out(T * width);
    launch({ ...part, T, rowsOf: (x, w) => s.f32(twin.gatherRows(x, part.rows, w)) }, out);
    const got = s.read(out, T * width);
    part.rows.forEach((r, i) => full.set(got.subarray(i * width, (i + 1) * width), r * width));
  }
  return full;
}

/** random Δ inputs of either sign, one above softplus's threshold of 20 (Δ = x, the state forgets) */
function deltaInputs(n: number, r: () => number): Float32Array {
  const x = randomF32(n, r, 4);
  x[Math.floor(n / 3)] = 23.5;
  return x;
}

function selectiveScanCase(I: number, N: number, split: readonly number[] | undefined, seed: number): ParityCase {
  const name = `selective_scan [I=${I}, N=${N}], 3 sequences from non-zero states${split === undefined ? "" : ", chunk then decode"}`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const seqs = scanSeqs();
      const T = seqs.T;
      const u = randomF32(T * I, r);
      const delta = deltaInputs(T * I, r);
      const aLog = randomF32(I * N, r, 1.5);
      const bm = randomF32(T * N, r);
      const cm = randomF32(T * N, r);
      const d = randomF32(I, r);
      const z = randomF32(T * I, r, 3);
      const states = randomF32(4 * I * N, r);
      const ref = twin.selectiveScan(u, delta, aLog, bm, cm, d, z, states, seqs, { I, N });
      const dStates = s.f32(states);
      const [dALog, dD] = [s.f32(aLog), s.f32(d)];
      const out = stepped(s, seqs, split, I, (p, o) => {
        const args = [o, p.rowsOf(u, I), p.rowsOf(delta, I), dALog, p.rowsOf(bm, N), p.rowsOf(cm, N), dD, p.rowsOf(z, I), dStates, s.i32(p.queryStartLoc), s.i32(p.slots), 3, I, N] as const;
        b.kernels.launch("kiln_selective_scan", [3, Math.ceil(I / 128), 1], B128, args);
      });
      const outErr = compare(name, out, ref.out, 2e-5);
      return worst(name, [outErr, compare(`${name}: states`, s.read(dStates, states.length), ref.states, 2e-5)], 2e-5);
    },
  };
}

interface SsdCaseShape {
  readonly H: number;
  readonly P: number;
  readonly G: number;
  readonly N: number;
  readonly dtMin: number;
  readonly dtMax: number | undefined;
}

function ssdScanCase(shape: SsdCaseShape, split: readonly number[] | undefined, seed: number): ParityCase {
  const { H, P, G, N, dtMin, dtMax } = shape;
  const limits = dtMax === undefined ? `Δ ≥ ${dtMin}` : `Δ in [${dtMin}, ${dtMax}]`;
  const name = `ssd_scan [H=${H}, P=${P}, G=${G}, N=${N}, ${limits}], 3 sequences from non-zero states${split === undefined ? "" : ", chunk then decode"}`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const seqs = scanSeqs();
      const T = seqs.T;
      const x = randomF32(T * H * P, r);
      const dt = deltaInputs(T * H, r);
      const dtBias = randomF32(H, r);
      const aLog = randomF32(H, r, 1.5);
      const bm = randomF32(T * G * N, r);
      const cm = randomF32(T * G * N, r);
      const d = randomF32(H, r);
      const states = randomF32(4 * H * P * N, r);
      const ref = twin.ssdScan(x, dt, dtBias, aLog, bm, cm, d, states, seqs, shape);
      const dStates = s.f32(states);
      const [dBias, dALog, dD] = [s.f32(dtBias), s.f32(aLog), s.f32(d)];
      const out = stepped(s, seqs, split, H * P, (p, o) => {
        const args = [o, p.rowsOf(x, H * P), p.rowsOf(dt, H), dBias, dALog, p.rowsOf(bm, G * N), p.rowsOf(cm, G * N), dD, dStates, s.i32(p.queryStartLoc), s.i32(p.slots), 3, H, P, G, N, dtMin, dtMax ?? 3.4e38] as const;
        b.kernels.launch("kiln_ssd_scan", [3, H, Math.ceil(P / SSD_SCAN_WARPS)], [32 * SSD_SCAN_WARPS, 1, 1], args);
      });
      const outErr = compare(name, out, ref.out, 2e-5);
      return worst(name, [outErr, compare(`${name}: states`, s.read(dStates, states.length), ref.states, 2e-5)], 2e-5);
    },
  };
}

export function mixerCases(): ParityCase[] {
  return [
    moeCase(7, 70, 6, 19, 2, true, 61),
    moeCase(5, 33, 8, 40, 3, false, 62),
    moeCase(1, 64, 4, 32, 4, true, 63),
    moeCase(7, 70, 6, 19, 2, true, 64, "bf16"),
    moeCase(5, 33, 8, 40, 3, false, 65, "f16"),
    shortConvCase(70, 3, false, 64),
    shortConvCase(300, 4, true, 65),
    linearAttentionCase(3, 16, 66),
    linearAttentionCase(2, 40, 67),
    selectiveScanCase(70, 16, undefined, 68),
    selectiveScanCase(300, 5, SCAN_SPLIT, 69),
    selectiveScanCase(45, 130, SCAN_SPLIT, 70),
    ssdScanCase({ H: 6, P: 24, G: 3, N: 16, dtMin: 0, dtMax: undefined }, undefined, 71),
    ssdScanCase({ H: 4, P: 150, G: 1, N: 40, dtMin: 0.05, dtMax: 0.8 }, SCAN_SPLIT, 72),
    ssdScanCase({ H: 8, P: 16, G: 2, N: 130, dtMin: 0.001, dtMax: undefined }, SCAN_SPLIT, 73),
  ];
}
