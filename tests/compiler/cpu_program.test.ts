/**
 * The CPU backend's compiled program (fused generated C + native GEMM/attention) against the
 * unfused reference executor, on a small model that uses every fusible op: bf16 embedding,
 * scale, layer norm with bias, grouped RMS norm with (1 + w), interleaved and half-split partial
 * rotary embedding, every unary op, gather, logit soft-capping; over a packed prefill of two
 * sequences and then a decode step. (The reference executor cannot add a weight to an activation,
 * so the broadcast add has its own check.)
 */
import { describe, expect, it } from "vitest";
import type { Graph, StorageDType } from "../../compiler/ir.ts";
import { checkProgram } from "../../compiler/invariants.ts";
import { compile } from "../../compiler/pipeline.ts";
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import { f32ToBf16, type WeightData } from "../../models/dsl/parameter.ts";
import { CpuExecutor } from "../reference/cpu_executor.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { ProgramExecutor } from "../../runtime/backends/cpu/program_executor.ts";
import { packStep, type SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { BACKEND_REGISTRY } from "../../runtime/backends/model_runner.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";

const H = 32, V = 40, NH = 4, NKV = 2, D = 8, I = 24;

function buildModel(): Graph {
  const g = new GraphBuilder();
  const ids = g.input("input_ids");
  const pos = g.input("positions");
  const rows = g.input("logits_indices");
  const param = (name: string, shape: number[], storage: StorageDType = "f32"): Tensor => g.param(name, shape, storage);
  const linear = (x: Tensor, name: string, n: number, bias = false): Tensor =>
    g.add({ kind: "linear", x: x.id, weight: param(`${name}.w`, [n, x.cols], "bf16").id, bias: bias ? param(`${name}.b`, [n]).id : undefined, shape: [x.shape[0]!, n], dtype: "f32" });
  const rms = (x: Tensor, name: string, group: number, weightOffset = 0): Tensor =>
    g.add({ kind: "rms_norm", x: x.id, weight: param(name, [group]).id, eps: 1e-5, group, weightOffset, shape: x.shape, dtype: "f32" });
  const layerNorm = (x: Tensor, name: string): Tensor =>
    g.add({ kind: "layer_norm", x: x.id, weight: param(`${name}.w`, [x.cols]).id, bias: param(`${name}.b`, [x.cols]).id, eps: 1e-5, shape: x.shape, dtype: "f32" });
  const rope = (x: Tensor, heads: number, rotaryDim: number, neox: boolean): Tensor =>
    g.add({
      kind: "rope", x: x.id, positions: pos.id, numHeads: heads, headDim: D, rotaryDim, neox,
      invFreq: Array.from({ length: rotaryDim / 2 }, (_, i) => 10000 ** (-(2 * i) / rotaryDim)), shape: x.shape, dtype: "f32",
    });

  let h = g.add({ kind: "embedding", table: param("embed", [V, H], "bf16").id, ids: ids.id, shape: ["T", H], dtype: "f32" }).scale(Math.sqrt(H));
  for (let l = 0; l < 2; l++) {
    const x = l === 0 ? layerNorm(h, `l${l}.ln`) : rms(h, `l${l}.norm`, H);
    const [q0, k0, v] = linear(x, `l${l}.qkv`, (NH + 2 * NKV) * D, true).split([NH * D, NKV * D, NKV * D]);
    let q = q0!;
    let k = k0!;
    if (l === 0) {
      q = rms(q, `l${l}.qn`, D, 1);
      k = rms(k, `l${l}.kn`, D);
    }
    q = rope(q, NH, l === 0 ? 4 : 6, l === 0 ? false : true);
    k = rope(k, NKV, l === 0 ? 4 : 6, l === 0 ? false : true);
    const cacheKey = `l${l}.attn`;
    g.registerKvLayer({ cacheKey, numKvHeads: NKV, headDim: D, slidingWindow: l === 0 ? 5 : undefined });
    const att = g.add({
      kind: "attention", q: q.id, k: k.id, v: v!.id, cacheKey, numHeads: NH, numKvHeads: NKV, headDim: D, scale: D ** -0.5,
      slidingWindow: l === 0 ? 5 : undefined, softcap: l === 0 ? 20 : undefined, shape: q.shape, dtype: "f32",
    });
    h = h.add(linear(att, `l${l}.o`, H));
    const [gate, up] = linear(rms(h, `l${l}.post`, H), `l${l}.gate_up`, 2 * I).split([I, I]);
    const act = l === 0
      ? gate!.unary("gelu_tanh").mul(up!).add(gate!.unary("relu"))
      : gate!.unary("gelu").mul(up!.unary("tanh").unary("neg")).add(gate!.silu());
    h = h.add(linear(act, `l${l}.down`, H));
  }
  return g.finish(linear(layerNorm(h.gatherRows(rows), "final"), "head", V).softcap(15));
}

function weightsFor(graph: Graph): Map<string, WeightData> {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed / 2 ** 32) * 2 - 1;
  };
  const weights = new Map<string, WeightData>();
  for (const n of graph.nodes) {
    if (n.kind !== "param") continue;
    const size = n.shape.reduce<number>((a, d) => a * (d as number), 1);
    const scale = n.shape.length === 1 ? 0.3 : 1 / Math.sqrt(n.shape[1] as number);
    const values = Float32Array.from({ length: size }, () => (n.shape.length === 1 && !n.name.endsWith(".b") ? 1 : 0) + rand() * scale);
    weights.set(n.name, n.storage === "bf16" ? { dtype: "bf16", data: Uint16Array.from(values, f32ToBf16) } : { dtype: "f32", data: values });
  }
  return weights;
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

const CPU = { target: { kind: "cpu" }, dtype: "f32" } as const;

describe("the CPU program", () => {
  it("computes what the unfused graph computes, for every fusible op", () => {
    const graph = buildModel();
    const weights = weightsFor(graph);
    const native = loadNative();
    const opts = { numBlocks: 8, blockSize: 4 };
    const compiled = compile(graph, { target: { kind: "cpu" }, dtype: "f32" });
    expect(checkProgram(compiled.program)).toEqual([]);
    const fused = new ProgramExecutor(compiled, weights, native, opts);
    const reference = new CpuExecutor(graph, weights, native, opts);
    const prompts = [[3, 9, 27, 1, 38, 5, 12], [7, 7, 30, 2, 19]];
    const tables = [[0, 1], [2, 3]];
    const prefill: SeqChunk[] = prompts.map((tokens, s) => ({ tokens, numCached: 0, blockTable: tables[s]!, allLogits: s === 0 }));
    const decode: SeqChunk[] = prompts.map((p, s) => ({ tokens: [s + 4], numCached: p.length, blockTable: tables[s]! }));
    for (const chunks of [prefill, decode]) {
      const step = packStep(chunks, opts.blockSize);
      const want = reference.run(step);
      const got = fused.run(step);
      expect(got.length).toBe(want.length);
      expect(maxRelErr(got, want)).toBeLessThan(2e-6);
    }
    expect(compiled.program.steps.filter((s) => s.kind === "kernel").length).toBeLessThan(12);
  });

  it("adds a [N] weight to every row", () => {
    const g = new GraphBuilder();
    const x = g.add({ kind: "embedding", table: g.param("t", [3, 4], "f32").id, ids: g.input("input_ids").id, shape: ["T", 4], dtype: "f32" });
    const graph = g.finish(x.add(g.param("b", [4], "f32")).gatherRows(g.input("logits_indices")));
    const weights = new Map<string, WeightData>([
      ["t", { dtype: "f32", data: Float32Array.from({ length: 12 }, (_, i) => i) }],
      ["b", { dtype: "f32", data: new Float32Array([0.5, -1, 2, 10]) }],
    ]);
    const ex = new ProgramExecutor(compile(graph, CPU), weights, loadNative(), { numBlocks: 1, blockSize: 4 });
    const out = ex.run(packStep([{ tokens: [2, 0], numCached: 0, blockTable: [0], allLogits: true }], 4));
    expect(Array.from(out)).toEqual([8.5, 8, 12, 21, 0.5, 0, 4, 13]);
  });

  it("matches the unfused executor on the llama fixture to f32 rounding", async () => {
    const { graph, weights } = await loadModel(fixture("llama"));
    const opts = { numBlocks: 4, blockSize: 16 };
    const step = packStep([{ tokens: [5, 17, 301, 44, 2, 90, 411, 8], numCached: 0, blockTable: [0, 1], allLogits: true }], 16);
    const want = new CpuExecutor(graph, weights, loadNative(), opts).run(step);
    const got = new ProgramExecutor(compile(graph, CPU), weights, loadNative(), opts).run(step);
    expect(maxRelErr(got, want)).toBeLessThan(1e-6);
  });

  it("is what the model runner runs on the CPU", async () => {
    const { graph, weights } = await loadModel(fixture("llama"));
    const cpu = BACKEND_REGISTRY.get("cpu")!;
    const executor = cpu.create(compile(graph, cpu.programOptions(weights)), weights, { numBlocks: 2, blockSize: 16 });
    expect(executor).toBeInstanceOf(ProgramExecutor);
  });

  it("refuses token ids outside the vocabulary and cache slots outside the cache before running", async () => {
    const { graph, weights } = await loadModel(fixture("llama"));
    const ex = new ProgramExecutor(compile(graph, CPU), weights, loadNative(), { numBlocks: 2, blockSize: 16 });
    expect(() => ex.run(packStep([{ tokens: [512], numCached: 0, blockTable: [0] }], 16))).toThrow(/input_ids entry 512 is outside the vocabulary \(512\)/);
    expect(() => ex.run(packStep([{ tokens: [1], numCached: 40, blockTable: [0, 1, 5] }], 16))).toThrow(/slot_mapping\[0\] = 88 is outside the cache's 32 slots/);
  });
});
