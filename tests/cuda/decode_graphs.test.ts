// CUDA graphs for decode steps: the host-side padding rules, then, through the CPU emulator of
// libcuda (which records captured launches and replays them), an executor that replays graphs
// against one that runs every step eagerly, over decode batches of changing sizes with KV caches
// and mamba-like state.
import { describe, expect, it } from "vitest";
import { captureSizeFor, DEFAULT_CAPTURE_SIZES, graphTableWidth, isDecodeStep, padDecodeStep, padMixedStep, pieceSegments } from "../../runtime/backends/cuda/decode_graphs.ts";
import { packDecodeStep, packStepInputs } from "../../runtime/backends/cuda/step_inputs.ts";
import { planSteps, type ExecStep } from "../../runtime/backends/cuda/fused_plan.ts";
import { isCustomOp } from "../../compiler/ir.ts";
import { compile } from "../../compiler/pipeline.ts";
import { CudaExecutor, cudaProgramOptions } from "../../runtime/backends/cuda/executor.ts";
import { CpuExecutor } from "../reference/cpu_executor.ts";
import { loadNative } from "../../runtime/backends/cpu/native.ts";
import { packStep, type SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";
import { FIXTURES, fixturesWhere } from "../fixtures/index.ts";
import { emulatedSuite } from "./emulated_suite.ts";
import { compare } from "./parity_support.ts";

describe("decode-graph padding", () => {
  const decode = packStep(
    [
      { tokens: [7], numCached: 20, blockTable: [3, 1], stateSlot: 2 },
      { tokens: [9], numCached: 4, blockTable: [0], stateSlot: 0 },
    ],
    16,
  );

  it("knows decode steps from prefill and mixed steps", () => {
    expect(isDecodeStep(decode)).toBe(true);
    expect(isDecodeStep(packStep([{ tokens: [1, 2], numCached: 0, blockTable: [0] }], 16))).toBe(false);
    expect(isDecodeStep(packStep([{ tokens: [1], numCached: 3, blockTable: [0] }, { tokens: [1, 2], numCached: 0, blockTable: [1] }], 16))).toBe(false);
    expect(isDecodeStep(packStep([{ tokens: [1], numCached: 0, blockTable: [0], noLogits: true }], 16))).toBe(false);
  });

  it("picks the smallest capture size that holds the batch, and power-of-two table widths", () => {
    expect(captureSizeFor(1, DEFAULT_CAPTURE_SIZES)).toBe(1);
    expect(captureSizeFor(3, DEFAULT_CAPTURE_SIZES)).toBe(4);
    expect(captureSizeFor(17, DEFAULT_CAPTURE_SIZES)).toBe(24);
    expect(captureSizeFor(257, DEFAULT_CAPTURE_SIZES)).toBeUndefined();
    expect([1, 8, 9, 100].map(graphTableWidth)).toEqual([8, 8, 16, 128]);
  });

  it("pads rows with one-token sequences on the padding block and slot, and re-lays the tables", () => {
    const p = padDecodeStep(decode, { rows: 4, tableWidth: 8, blockSize: 16, block: 99, stateSlot: 5 });
    expect(Array.from(p.inputIds)).toEqual([7, 9, 0, 0]);
    expect(Array.from(p.positions)).toEqual([20, 4, 0, 0]);
    expect(Array.from(p.logitsIndices)).toEqual([0, 1, 2, 3]);
    expect(Array.from(p.stateSlots!)).toEqual([2, 0, 5, 5]);
    expect(p.attn.numSeqs).toBe(4);
    expect(Array.from(p.attn.queryStartLoc)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(p.attn.seqLens)).toEqual([21, 5, 1, 1]);
    expect(Array.from(p.attn.slotMapping)).toEqual([decode.attn.slotMapping[0], decode.attn.slotMapping[1], 99 * 16, 99 * 16]);
    expect(p.attn.maxBlocksPerSeq).toBe(8);
    expect(Array.from(p.attn.blockTables.subarray(0, 2))).toEqual([3, 1]);
    expect(p.attn.blockTables[8]).toBe(0);
    expect(p.attn.blockTables[16]).toBe(99);
    expect(() => padDecodeStep(decode, { rows: 1, tableWidth: 8, blockSize: 16, block: 99, stateSlot: 5 })).toThrow(/does not fit/);
    expect(() => padDecodeStep(decode, { rows: 2, tableWidth: 8, blockSize: 16, block: 99, stateSlot: undefined })).toThrow(/padding slot/);
  });

  it("packs a decode step for a graph in one pass exactly as padding then packing does, with the same checks", () => {
    const limits = { vocab: 512, positions: undefined, numBlocks: 100, blockSize: 16, numStateSlots: 6 };
    for (const [rows, tableWidth] of [[2, 2], [4, 8], [8, 16]] as const) {
      const pad = { rows, tableWidth, blockSize: 16, block: 99, stateSlot: 5 };
      const once = packDecodeStep(decode, limits, pad);
      const twice = packStepInputs(padDecodeStep(decode, pad), limits);
      expect(Array.from(once.data)).toEqual(Array.from(twice.data));
      expect(once.layout).toEqual(twice.layout);
      expect([once.T, once.S, once.numSeqs, once.maxBlocksPerSeq]).toEqual([twice.T, twice.S, twice.numSeqs, twice.maxBlocksPerSeq]);
      expect([undefined, 3, 30].map(once.maxKeys)).toEqual([undefined, 3, 30].map(twice.maxKeys));
    }
    const pad = { rows: 4, tableWidth: 8, blockSize: 16, block: 99, stateSlot: 5 };
    expect(() => packDecodeStep(decode, { ...limits, vocab: 8 }, pad)).toThrow(/token id 9 is outside the vocabulary \(8\)/);
    expect(() => packDecodeStep(decode, { ...limits, positions: 20 }, pad)).toThrow(/position 20 is outside the learned position table/);
    expect(() => packDecodeStep(decode, { ...limits, numBlocks: 3 }, pad)).toThrow(/outside the/);
    expect(() => packDecodeStep(decode, { ...limits, numStateSlots: 2 }, pad)).toThrow(/state slot 2 is outside the pool of 2/);
    expect(() => packDecodeStep(decode, limits, { ...pad, rows: 1 })).toThrow(/does not fit/);
    expect(() => packDecodeStep(decode, limits, { ...pad, stateSlot: undefined })).toThrow(/padding slot/);
  });

  it("cuts the compiled plan into pieces at every custom op and before the logits rows", async () => {
    for (const { name, dir } of FIXTURES) {
      const loaded = await loadModel(dir);
      const { graph, program } = compile(loaded.graph, cudaProgramOptions("sm_90", {}));
      // the plan as the executor holds it, without a device: its fused kernels unloaded
      const units = planSteps(program).map(
        (s): ExecStep => (s.kind === "node" ? s : { kind: "fused", kernel: { fn: { name: s.kernel, handle: 0n }, block: 0, sharedBytes: 0, rows: s.rows, buffers: s.buffers } }),
      );
      const segments = pieceSegments(graph, units);
      // contiguous, covering every unit once
      expect(segments[0]!.from).toBe(0);
      expect(segments.at(-1)!.to).toBe(units.length);
      segments.forEach((g, i) => i > 0 && expect(g.from).toBe(segments[i - 1]!.to));
      const kinds = (g: (typeof segments)[number]) => units.slice(g.from, g.to).flatMap((u) => (u.kind === "node" ? [graph.nodes[u.node]!] : []));
      for (const g of segments.filter((x) => x.piece)) {
        for (const u of units.slice(g.from, g.to)) {
          if (u.kind === "fused") expect(u.kernel.rows !== "S" && u.kernel.buffers.every((b) => !b.shape.includes("S")), `${name}: an S-sized kernel inside a piece`).toBe(true);
        }
        for (const n of kinds(g)) {
          expect(isCustomOp(n), `${name}: ${n.kind} inside a piece`).toBe(false);
          expect(n.shape.includes("S"), `${name}: an S-sized value inside a piece`).toBe(false);
        }
      }
      const attention = graph.nodes.filter((n) => n.kind === "attention").length;
      const mixers = graph.nodes.filter((n) => isCustomOp(n) && n.kind !== "attention").length;
      expect(segments.filter((g) => !g.piece && kinds(g).some(isCustomOp)).length).toBe(attention + mixers);
      expect(segments.filter((g) => g.piece).length).toBeGreaterThanOrEqual(attention + mixers);
      expect(segments.at(-1)!.piece).toBe(false); // the logits tail
    }
  });

  it("pads a mixed step's tokens with one-token sequences that ask for no logits, leaving its own sequences as they were", () => {
    const mixed = packStep(
      [
        { tokens: [7], numCached: 20, blockTable: [3, 1], stateSlot: 2 },
        { tokens: [4, 5, 6], numCached: 0, blockTable: [0], stateSlot: 0 },
      ],
      16,
    );
    const p = padMixedStep(mixed, { rows: 6, blockSize: 16, block: 99, stateSlot: 5 });
    expect(Array.from(p.inputIds)).toEqual([7, 4, 5, 6, 0, 0]);
    expect(Array.from(p.positions)).toEqual([20, 0, 1, 2, 0, 0]);
    expect(Array.from(p.logitsIndices)).toEqual([0, 3]);
    expect(Array.from(p.stateSlots!)).toEqual([2, 0, 5, 5]);
    expect(p.attn.numSeqs).toBe(4);
    expect(Array.from(p.attn.queryStartLoc)).toEqual([0, 1, 4, 5, 6]);
    expect(Array.from(p.attn.seqLens)).toEqual([21, 3, 1, 1]);
    expect(Array.from(p.attn.slotMapping.subarray(4))).toEqual([99 * 16, 99 * 16]);
    expect(p.attn.maxBlocksPerSeq).toBe(2);
    expect(Array.from(p.attn.blockTables)).toEqual([3, 1, 0, 0, 99, 0, 99, 0]);
    expect(() => padMixedStep(mixed, { rows: 3, blockSize: 16, block: 99, stateSlot: 5 })).toThrow(/does not fit/);
  });
});


emulatedSuite("decode graphs on the emulated device", (backend) => {
  // lfm2: attention with a KV cache and short convs with state; mamba: state only
  for (const name of ["lfm2", "mamba", "llama"] as const) {
    it(`${name}: replayed graphs give the eager executor's logits over changing batch sizes`, async () => {
      const { graph, weights } = await loadModel(fixture(name));
      const opts = { numBlocks: 32, blockSize: 4, numStateSlots: 6 };
      const eager = CudaExecutor.fromGraph(graph, weights, backend(), { ...opts, cudaGraphs: false });
      const graphed = CudaExecutor.fromGraph(graph, weights, backend(), { ...opts, captureSizes: [1, 2, 4, 8] });
      try {
        const numSeqs = 6;
        const slots = Array.from({ length: numSeqs }, () => [eager.statePool?.allocate(), graphed.statePool?.allocate()] as const);
        const tokens = Array.from({ length: numSeqs }, (_, s) => Array.from({ length: 3 + 2 * s }, (_, i) => 5 + ((s * 31 + i * 7) % 400)));
        const tables = Array.from({ length: numSeqs }, (_, s) => Array.from({ length: 5 }, (_, i) => s * 5 + i));
        const cached = new Array<number>(numSeqs).fill(0);
        const chunk = (s: number, n: number, which: 0 | 1): SeqChunk => {
          const slot = slots[s]![which];
          return { tokens: tokens[s]!.slice(cached[s], cached[s]! + n), numCached: cached[s]!, blockTable: tables[s]!, ...(slot === undefined ? {} : { stateSlot: slot }) };
        };
        const step = (seqs: readonly number[], n: (s: number) => number): void => {
          const want = eager.run(packStep(seqs.map((s) => chunk(s, n(s), 0)), opts.blockSize));
          const got = graphed.run(packStep(seqs.map((s) => chunk(s, n(s), 1)), opts.blockSize));
          expect(got.length).toBe(want.length);
          expect(compare(`${name} step over ${seqs.join(",")}`, got, want, 1e-5).maxErr).toBeLessThan(1e-5);
          for (const s of seqs) {
            cached[s]! += n(s);
            // the next decode token: the greedy pick of this step's row (the same on both sides)
            const row = want.subarray(seqs.indexOf(s) * (want.length / seqs.length), (seqs.indexOf(s) + 1) * (want.length / seqs.length));
            tokens[s]!.push(row.indexOf(Math.max(...row)));
          }
        };
        step([0, 1, 2, 3, 4, 5], (s) => tokens[s]!.length); // prefill: eager on both
        // decode batches of 6 (size 8), 3 (size 4), 1, 2, 6 again (replay), 5 (replay of 8), 1 (replay)
        for (const seqs of [[0, 1, 2, 3, 4, 5], [1, 3, 5], [2], [0, 4], [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [2], [0, 1, 2, 3, 4, 5]]) step(seqs, () => 1);
        const stats = graphed.graphStats;
        expect(stats.captures).toBeGreaterThanOrEqual(4);
        expect(stats.replays).toBeGreaterThanOrEqual(3);
        expect(eager.graphStats.captures).toBe(0);
        // greedy picks on the device agree too, from a replayed graph
        const last = packStep([0, 1, 2, 3, 4, 5].map((s) => chunk(s, 1, 1)), opts.blockSize);
        const lastEager = packStep([0, 1, 2, 3, 4, 5].map((s) => chunk(s, 1, 0)), opts.blockSize);
        expect(Array.from(graphed.runGreedy(last))).toEqual(Array.from(eager.runGreedy(lastEager)));
      } finally {
        eager.dispose();
        graphed.dispose();
      }
    });
  }

  // chunked prefill mixed with decode: pieces between the custom ops replay, attention, the
  // mixers and the logits tail run eagerly on the padded step
  for (const name of ["lfm2", "mamba", "llama", "qwen3-moe"] as const) {
    it(`${name}: prefill and mixed steps replay graph pieces and give the eager executor's logits`, async () => {
      const { graph, weights } = await loadModel(fixture(name));
      const opts = { numBlocks: 32, blockSize: 4, numStateSlots: 4 };
      const eager = CudaExecutor.fromGraph(graph, weights, backend(), { ...opts, cudaGraphs: false });
      const graphed = CudaExecutor.fromGraph(graph, weights, backend(), { ...opts, captureSizes: [1, 2, 4, 8] });
      try {
        const numSeqs = 4;
        const slots = Array.from({ length: numSeqs }, () => [eager.statePool?.allocate(), graphed.statePool?.allocate()] as const);
        const tokens = Array.from({ length: numSeqs }, (_, s) => Array.from({ length: 11 + 3 * s }, (_, i) => 5 + ((s * 17 + i * 13) % 400)));
        const tables = Array.from({ length: numSeqs }, (_, s) => Array.from({ length: 8 }, (_, i) => s * 8 + i));
        const cached = new Array<number>(numSeqs).fill(0);
        const chunk = (s: number, n: number, which: 0 | 1): SeqChunk => {
          const slot = slots[s]![which];
          const prompt = cached[s]! + n < tokens[s]!.length;
          return {
            tokens: tokens[s]!.slice(cached[s], cached[s]! + n),
            numCached: cached[s]!,
            blockTable: tables[s]!,
            ...(prompt ? { noLogits: true } : {}),
            ...(slot === undefined ? {} : { stateSlot: slot }),
          };
        };
        const step = (plan: readonly (readonly [number, number])[]): void => {
          const want = eager.run(packStep(plan.map(([s, n]) => chunk(s, n, 0)), opts.blockSize));
          const got = graphed.run(packStep(plan.map(([s, n]) => chunk(s, n, 1)), opts.blockSize));
          expect(got.length).toBe(want.length);
          expect(compare(`${name} step ${JSON.stringify(plan)}`, got, want, 1e-5).maxErr).toBeLessThan(1e-5);
          const V = want.length / Math.max(1, plan.filter(([s, n]) => cached[s]! + n >= tokens[s]!.length).length);
          let row = 0;
          for (const [s, n] of plan) {
            cached[s]! += n;
            if (cached[s]! < tokens[s]!.length) continue;
            const r = want.subarray(row * V, (row + 1) * V);
            tokens[s]!.push(r.indexOf(Math.max(...r)));
            row++;
          }
        };
        // prompts of 11, 14, 17, 20 tokens in chunks: 3 + 4 = 7 (size 8), 5 (8), 4 + 4 (8), then mixed steps
        step([[0, 3], [1, 4]]);
        step([[2, 5]]);
        step([[0, 4], [3, 4]]);
        step([[0, 4], [1, 3]]); // seq 0 done with its prompt: logits
        step([[0, 1], [1, 7]]); // decode + prefill (8): seq 1 done
        step([[0, 1], [1, 1], [2, 6]]); // mixed, 8
        step([[2, 6], [3, 2]]); // 8: seq 2 done
        step([[0, 1], [2, 1], [3, 3]]); // 5 → 8
        for (let i = 0; i < 3; i++) step([[0, 1], [1, 1], [2, 1], [3, 3]]); // 6 → 8; seq 3 done after the third
        const stats = graphed.graphStats;
        expect(stats.pieceCaptures).toBeGreaterThanOrEqual(1);
        expect(stats.pieceReplays).toBeGreaterThanOrEqual(8);
        expect(stats.pieceGraphs).toBeGreaterThan(0);
        expect(eager.graphStats.pieceCaptures).toBe(0);
      } finally {
        eager.dispose();
        graphed.dispose();
      }
    });
  }

  it("runs decode batches past the largest capture size eagerly, and frees every graph on dispose", async () => {
    const { graph, weights } = await loadModel(fixture("llama"));
    const before = backend().device.allocatedBytes;
    const ex = CudaExecutor.fromGraph(graph, weights, backend(), { numBlocks: 8, blockSize: 16, captureSizes: [1, 2] });
    const decode = (n: number): void => {
      ex.run(packStep(Array.from({ length: n }, (_, s) => ({ tokens: [5 + s], numCached: 3, blockTable: [s] })), 16));
    };
    decode(3);
    expect(ex.graphStats).toMatchObject({ captures: 0, eagerSteps: 1 });
    decode(2);
    decode(2);
    expect(ex.graphStats).toMatchObject({ captures: 1, replays: 1, graphs: 1 });
    ex.dispose();
    expect(backend().device.allocatedBytes).toBe(before);
  });

  describe("the compiler's fused kernels", () => {
    // every fixture (the fortune model is llama's shape)
    for (const { name, dir, stateLayers, moe, positions } of fixturesWhere((f) => !f.trained)) {
      it(`${name}: the fused program runs fewer launches than the traced graph has nodes and gives the CPU reference executor's logits`, async () => {
        const { graph, weights } = await loadModel(dir);
        const opts = { numBlocks: 16, blockSize: 4, numStateSlots: 2 };
        const fused = CudaExecutor.fromGraph(graph, weights, backend(), { ...opts, cudaGraphs: false });
        // the traced graph interpreted node by node on the host, with no compiler pass (tests/reference/cpu_executor.ts)
        const plain = new CpuExecutor(graph, weights, loadNative(), opts);
        try {
          const summary = fused.planSummary;
          expect(summary.fusedKernels).toBeGreaterThan(0);
          // the traced graph node by node: what the model costs without the compiler
          const nodeLaunches = graph.nodes.filter((n) => n.kind !== "input" && n.kind !== "param").length;
          // rotary decoders fuse to at most half the launches; models with more custom ops (state-space
          // mixers, experts) or learned positions keep more of their launches as custom-op steps
          const share = stateLayers || moe || positions !== "rope" ? 0.75 : 0.5;
          expect(summary.fusedKernels + summary.nodes).toBeLessThanOrEqual(nodeLaunches * share);
          const slot = [fused.statePool?.allocate(), plain.statePool?.allocate()] as const;
          const step = (which: 0 | 1, tokens: number[], numCached: number) =>
            packStep([{ tokens, numCached, blockTable: [0, 1, 2, 3, 4], ...(slot[which] === undefined ? {} : { stateSlot: slot[which] }) }], 4);
          const prompt = [5, 17, 301, 44, 9, 8, 7];
          // two float orderings of the same function (each within 1e-5 of the HF reference in the goldens)
          expect(compare(`${name} prefill`, fused.run(step(0, prompt, 0)), plain.run(step(1, prompt, 0)), 5e-5).maxErr).toBeLessThan(5e-5);
          expect(compare(`${name} decode`, fused.run(step(0, [12], 7)), plain.run(step(1, [12], 7)), 5e-5).maxErr).toBeLessThan(5e-5);
        } finally {
          fused.dispose();
          plain.dispose();
        }
      });
    }
  });
});
