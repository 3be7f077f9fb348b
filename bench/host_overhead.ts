/**
 * The host's share of serving, measured without a GPU: the batching engine runs the offline
 * throughput workload (N random prompts, input and output lengths uniform in ranges, ignore_eos,
 * greedy) over an executor that does no model math. It still does the host work the CUDA
 * executor does per step (packing the step's inputs, padding decode steps to a captured graph's
 * size, packing the sampling rows) and returns a fixed token per row, so what is timed is what the
 * host spends per step: scheduling, block tables, sampling rows, detokenization-free streaming
 * of the outputs. A GPU step that takes less than this is host-bound. Prints figures; never
 * passes or fails.
 *
 *   npx tsx bench/host_overhead.ts [--num-prompts 256] [--input-len 100:1024] [--output-len 100:1024]
 *     [--max-num-seqs 256] [--max-num-batched-tokens 2048] [--block-size 16] [--seed 0] [--runs 3]
 */
import { parseArgs } from "node:util";
import { traceModel } from "../models/dsl/causal_lm.ts";
import { SINGLE_DEVICE } from "../models/dsl/module.ts";
import { defaultRegistry } from "../models/registry.ts";
import { architectures, ConfigReader, type JsonObject } from "../models/hf_config.ts";
import { captureSizeFor, DEFAULT_CAPTURE_SIZES, graphTableWidth, isDecodeStep } from "../runtime/backends/cuda/decode_graphs.ts";
import { packDecodeStep, packStepInputs } from "../runtime/backends/cuda/step_inputs.ts";
import { packSamplingRows } from "../runtime/engine/device_sampling.ts";
import { Engine } from "../runtime/engine/engine.ts";
import type { StepInputs } from "../runtime/backends/kv_cache.ts";
import { BACKEND_REGISTRY, ModelRunner } from "../runtime/backends/model_runner.ts";
import { Rng } from "../runtime/engine/rng.ts";
import type { Backend, StepExecutor } from "../runtime/backends/step_executor.ts";

const { values: args } = parseArgs({
  options: {
    "num-prompts": { type: "string", default: "256" },
    "input-len": { type: "string", default: "100:1024" },
    "output-len": { type: "string", default: "100:1024" },
    "max-num-seqs": { type: "string", default: "256" },
    "max-num-batched-tokens": { type: "string", default: "2048" },
    "block-size": { type: "string", default: "16" },
    seed: { type: "string", default: "0" },
    runs: { type: "string", default: "3" },
  },
});

function int(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

function lengthRange(name: string, v: string): { lo: number; hi: number } {
  const [a, b] = v.split(":");
  const lo = int(name, a!);
  const hi = b === undefined ? lo : int(name, b);
  if (hi < lo) throw new Error(`--${name} must be N or LO:HI with LO ≤ HI, got ${v}`);
  return { lo, hi };
}

const numPrompts = int("num-prompts", args["num-prompts"]);
const inputLen = lengthRange("input-len", args["input-len"]);
const outputLen = lengthRange("output-len", args["output-len"]);
const blockSize = int("block-size", args["block-size"]);
const maxNumSeqs = int("max-num-seqs", args["max-num-seqs"]);
const maxNumBatchedTokens = int("max-num-batched-tokens", args["max-num-batched-tokens"]);
const runs = int("runs", args.runs);
const maxModelLen = inputLen.hi + outputLen.hi;

// a Llama-3.2-1B-like vocabulary on a toy body: the graph only names the inputs and the logits
const CONFIG: JsonObject = {
  architectures: ["LlamaForCausalLM"],
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 128256,
  max_position_embeddings: maxModelLen,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  tie_word_embeddings: true,
};
const reader = new ConfigReader(CONFIG, "(in-process config)");
const { cls } = await defaultRegistry.resolve(architectures(reader));
const model = new cls({ config: reader, ctx: { parallel: SINGLE_DEVICE, weightStorage: "f32" } });
const graph = traceModel(model);
const V = model.vocabSize;

interface HostTimes {
  steps: number;
  decodeSteps: number;
  pack: number;
}
const times: HostTimes = { steps: 0, decodeSteps: 0, pack: 0 };

/** The CUDA executor's host work per step, with no device behind it. */
function nullExecutor(numBlocks: number): StepExecutor {
  const limits = { vocab: V, numBlocks: numBlocks + 1, blockSize, numStateSlots: undefined };
  const pack = (step: StepInputs): void => {
    const t0 = performance.now();
    const rows = isDecodeStep(step) ? captureSizeFor(step.inputIds.length, DEFAULT_CAPTURE_SIZES) : undefined;
    if (rows !== undefined) {
      times.decodeSteps++;
      packDecodeStep(step, limits, { rows, tableWidth: graphTableWidth(step.attn.maxBlocksPerSeq), blockSize, block: numBlocks, stateSlot: undefined });
    } else {
      packStepInputs(step, limits);
    }
    times.steps++;
    times.pack += performance.now() - t0;
  };
  return {
    numBlocks,
    blockSize,
    run(step) {
      pack(step);
      return new Float32Array(step.logitsIndices.length * V);
    },
    launchSample(step, rows) {
      pack(step);
      const t0 = performance.now();
      packSamplingRows(rows, V);
      times.pack += performance.now() - t0;
      const ids = new Int32Array(rows.length).fill(11);
      return () => ids;
    },
    dispose() {},
  };
}

const rng = new Rng(Number(args.seed));
const draw = (r: { lo: number; hi: number }): number => r.lo + (rng.nextU32() % (r.hi - r.lo + 1));
const requests = Array.from({ length: numPrompts }, () => ({
  prompt: Array.from({ length: draw(inputLen) }, () => 10 + (rng.nextU32() % (V - 10))),
  maxTokens: draw(outputLen),
}));
const promptTokens = requests.reduce((n, r) => n + r.prompt.length, 0);
const outputTokens = requests.reduce((n, r) => n + r.maxTokens, 0);
// every sequence fits at once: the pool never preempts, as on a large GPU
const numBlocks = requests.reduce((n, r) => n + Math.ceil((r.prompt.length + r.maxTokens) / blockSize) + 1, 0);

interface RunFigures {
  readonly ms: number;
  readonly steps: number;
  readonly decodeSteps: number;
  readonly pack: number;
  readonly streamed: number;
}

/** The whole workload once, on a fresh engine (a warm one would find the prompts in its prefix cache). */
async function runOnce(): Promise<RunFigures> {
  const runner = ModelRunner.forGraph(graph, new Map(), V, { numBlocks, blockSize, backend: "cuda" });
  const engine = new Engine(runner, { maxModelLen, maxNumSeqs, maxNumBatchedTokens });
  try {
    await engine.generateBatch([requests[0]!.prompt.slice(0, 16)], { temperature: 0, maxTokens: 4, ignoreEos: true });
    times.steps = times.decodeSteps = times.pack = 0;
    let streamed = 0;
    const t0 = performance.now();
    await Promise.all(
      requests.map(async (r) => {
        for await (const d of engine.generate({ prompt: r.prompt, params: { temperature: 0, maxTokens: r.maxTokens, ignoreEos: true } })) {
          streamed += d.tokenIds.length;
        }
      }),
    );
    return { ms: performance.now() - t0, steps: times.steps, decodeSteps: times.decodeSteps, pack: times.pack, streamed };
  } finally {
    engine.close();
    runner.dispose();
  }
}

const previous = BACKEND_REGISTRY.get("cuda");
// compiled as for the CPU (the null executor runs nothing): the host's work is what is measured
const factory: Backend = { programOptions: () => ({ target: { kind: "cpu" }, dtype: "f32" }), create: () => nullExecutor(numBlocks) };
BACKEND_REGISTRY.set("cuda", factory);
try {
  const all: RunFigures[] = [];
  for (let r = 0; r < runs; r++) all.push(await runOnce());
  // the median run by host time per step: this machine's noise moves single runs by ±20%
  const sorted = [...all].sort((a, b) => a.ms / a.steps - b.ms / b.steps);
  const { ms, steps, decodeSteps, pack, streamed } = sorted[Math.floor(sorted.length / 2)]!;
  const perStep = ms / steps;
  console.log(
    `host overhead: ${numPrompts} prompts, input ${inputLen.lo}..${inputLen.hi}, output ${outputLen.lo}..${outputLen.hi} (${promptTokens} prompt + ${outputTokens} output tokens); ` +
      `≤ ${maxNumSeqs} sequences / ${maxNumBatchedTokens} tokens per step; no model math; median of ${runs} runs ` +
      `(${sorted.map((f) => ((f.ms / f.steps) * 1000).toFixed(0)).join(", ")} µs per step)`,
  );
  console.log(`  ${steps} steps (${decodeSteps} decode-only) in ${(ms / 1000).toFixed(2)} s: ${(perStep * 1000).toFixed(0)} µs of host time per step`);
  console.log(`  of which packing step inputs and sampling rows (the executor's host work): ${((pack / steps) * 1000).toFixed(0)} µs`);
  console.log(`  ${streamed} tokens streamed; host-bound ceiling ${(streamed / (ms / 1000)).toFixed(0)} output tokens/s`);
  console.log(
    `  a device step of d ms leaves the host ${(perStep / (perStep + 1)).toLocaleString("en", { style: "percent", maximumFractionDigits: 1 })} of a step at d = 1 ms, ` +
      `${(perStep / (perStep + 5)).toLocaleString("en", { style: "percent", maximumFractionDigits: 1 })} at d = 5 ms (no overlap)`,
  );
} finally {
  if (previous) BACKEND_REGISTRY.set("cuda", previous);
  else BACKEND_REGISTRY.delete("cuda");
}
