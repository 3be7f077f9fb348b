/**
 * Parity cases for the fused-experts kernels (and the stateful token mixers): the CUDA kernels
 * on random inputs of awkward sizes against their float64 CPU twins (cpu_twins_mixers.ts).
 */
import * as twin from "./cpu_twins_mixers.ts";
import { compare, randomF32, rng, type ParityCase, type ParityResult } from "./parity_support.ts";

const B128: readonly [number, number, number] = [128, 1, 1];

function worst(name: string, results: readonly ParityResult[], tol: number): ParityResult {
  const maxErr = results.reduce((m, r) => (r.maxErr <= m ? m : r.maxErr), 0);
  return { name, maxErr, tol, ok: maxErr <= tol };
}

function moeCase(T: number, H: number, E: number, I: number, K: number, renorm: boolean, seed: number): ParityCase {
  const name = `moe route + act + down [T=${T}, H=${H}, E=${E}, I=${I}, top-${K}${renorm ? ", renormalized" : ""}]`;
  return {
    name,
    run: (b, s) => {
      const r = rng(seed);
      const x = randomF32(T * H, r);
      const router = randomF32(E * H, r, 0.5);
      const w13 = randomF32(E * 2 * I * H, r, 0.3);
      const w2 = randomF32(E * H * I, r, 0.3);
      const ref = twin.fusedExperts(x, router, w13, w2, { T, H, E, I, K, renorm });
      const [dx, dRouter, dW13, dW2] = [s.f32(x), s.f32(router), s.f32(w13), s.f32(w2)];
      const experts = s.outI32(T * K);
      const weights = s.out(T * K);
      const h = s.out(T * K * I);
      const out = s.out(T * H);
      b.kernels.launch("kiln_moe_route", [T, 1, 1], B128, [experts, weights, dx, dRouter, T, H, E, K, renorm ? 1 : 0]);
      b.kernels.launch("kiln_moe_act", [T * K, 1, 1], B128, [h, dx, dW13, experts, T, H, I, K]);
      b.kernels.launch("kiln_moe_down", [T, 1, 1], B128, [out, h, dW2, experts, weights, T, H, I, K]);
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

export function mixerCases(): ParityCase[] {
  return [
    moeCase(7, 70, 6, 19, 2, true, 61),
    moeCase(5, 33, 8, 40, 3, false, 62),
    moeCase(1, 64, 4, 32, 4, true, 63),
    shortConvCase(70, 3, false, 64),
    shortConvCase(300, 4, true, 65),
    linearAttentionCase(3, 16, 66),
    linearAttentionCase(2, 40, 67),
  ];
}
