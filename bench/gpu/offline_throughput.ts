/**
 * Offline throughput on the CUDA backend, in the manner of `vllm bench throughput` with the random
 * dataset: N prompts of random token ids with input and output lengths drawn uniformly (seeded),
 * ignore_eos so each request generates exactly its output length, greedy, all submitted at once to
 * the batching engine. The KV pool is sized by the registered CUDA planner from
 * gpuMemoryUtilization. At the deadline every unfinished request is aborted and the figures are
 * those of the tokens generated so far, marked partial.
 */
import { setMaxListeners } from "node:events";
import type { Graph } from "../../compiler/ir.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { Engine } from "../../runtime/engine/engine.ts";
import { blocksForOneSequence } from "../../runtime/engine/engine_config.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import { compileFor, KV_PLANNERS, ModelRunner } from "../../runtime/backends/model_runner.ts";
import { Rng } from "../../runtime/engine/rng.ts";
import type { CudaDevice } from "../../runtime/backends/cuda/device.ts";

export interface LengthRange {
  readonly lo: number;
  readonly hi: number;
}

export interface ThroughputOptions {
  readonly graph: Graph;
  readonly weights: ReadonlyMap<string, WeightData>;
  readonly vocabSize: number;
  readonly numPrompts: number;
  readonly inputLen: LengthRange;
  readonly outputLen: LengthRange;
  readonly seed: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly blockSize: number;
  readonly gpuMemoryUtilization: number;
  /** performance.now() after which unfinished requests are aborted */
  readonly deadline: number;
  readonly log: (msg: string) => void;
  /** the engine's device: its downloads are watched for the host's share of the run */
  readonly device?: CudaDevice;
  /** stream outputs while the device runs the next step (the engine's default, true) */
  readonly overlapOutput?: boolean;
}

export interface ThroughputResult {
  readonly numBlocks: number;
  readonly kvDescription: string;
  readonly requests: number;
  readonly finished: number;
  readonly promptTokens: number;
  /** the output tokens all requests would generate */
  readonly plannedOutputTokens: number;
  /** the output tokens generated before the end (or the deadline) */
  readonly outputTokens: number;
  readonly seconds: number;
  readonly outputTokensPerS: number;
  /** false when the deadline cut the run short */
  readonly complete: boolean;
  /**
   * Share of the run the host was busy rather than blocked in a device→host copy (which waits for
   * the step's kernels): scheduling, inputs, sampling rows, outputs, streaming. Undefined without
   * `device`.
   */
  readonly hostShare: number | undefined;
}

export async function offlineThroughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const planner = KV_PLANNERS.get("cuda");
  if (planner === undefined) throw new KilnError("INVALID_ARGUMENT", "the CUDA backend is not registered");
  const maxModelLen = o.inputLen.hi + o.outputLen.hi;
  const compiled = compileFor("cuda", o.graph, o.weights);
  const plan = planner({
    compiled,
    weights: o.weights,
    blockSize: o.blockSize,
    utilization: o.gpuMemoryUtilization,
    maxNumBatchedTokens: o.maxNumBatchedTokens,
    numStateSlots: o.maxNumSeqs,
    needBlocks: blocksForOneSequence(maxModelLen, o.blockSize, undefined, o.maxNumBatchedTokens),
  });
  o.log(`  KV pool ${plan.numBlocks} blocks of ${o.blockSize} (${(plan.kvBytes / 2 ** 30).toFixed(2)} GiB): ${plan.description}`);
  const rng = new Rng(o.seed);
  const draw = (r: LengthRange): number => r.lo + (rng.nextU32() % (r.hi - r.lo + 1));
  const firstId = Math.min(10, o.vocabSize - 1);
  const requests = Array.from({ length: o.numPrompts }, () => ({
    prompt: Array.from({ length: draw(o.inputLen) }, () => firstId + (rng.nextU32() % (o.vocabSize - firstId))),
    maxTokens: draw(o.outputLen),
  }));
  const promptTokens = requests.reduce((n, r) => n + r.prompt.length, 0);
  const plannedOutputTokens = requests.reduce((n, r) => n + r.maxTokens, 0);

  const runner = new ModelRunner(compiled, o.weights, o.vocabSize, { numBlocks: plan.numBlocks, blockSize: o.blockSize, backend: "cuda" });
  const engine = new Engine(runner, { maxModelLen, maxNumSeqs: o.maxNumSeqs, maxNumBatchedTokens: o.maxNumBatchedTokens, overlapOutput: o.overlapOutput !== false });
  try {
    // warm-up: plans, activation buffers, the JIT
    await engine.generateBatch([requests[0]!.prompt.slice(0, 16)], { temperature: 0, maxTokens: 4, ignoreEos: true });
    const stop = new AbortController();
    setMaxListeners(o.numPrompts + 1, stop.signal); // every request listens to it
    let outputTokens = 0;
    let finished = 0;
    let blocked = 0;
    const dev = o.device;
    const download = dev?.download;
    if (dev !== undefined && download !== undefined) {
      dev.download = (dst, src): void => {
        const b0 = performance.now();
        download.call(dev, dst, src);
        blocked += performance.now() - b0;
      };
    }
    const t0 = performance.now();
    const watch = setInterval(() => {
      if (performance.now() > o.deadline) stop.abort();
    }, 50);
    try {
      await Promise.all(
        requests.map(async (r) => {
          const stream = engine.generate({ prompt: r.prompt, params: { temperature: 0, maxTokens: r.maxTokens, ignoreEos: true }, signal: stop.signal });
          for await (const d of stream) {
            outputTokens += d.tokenIds.length;
            if (d.finishReason === "length") finished++;
          }
        }),
      );
    } finally {
      clearInterval(watch);
      if (dev !== undefined && download !== undefined) dev.download = download;
    }
    const seconds = (performance.now() - t0) / 1000;
    return {
      numBlocks: plan.numBlocks,
      kvDescription: plan.description,
      requests: requests.length,
      finished,
      promptTokens,
      plannedOutputTokens,
      outputTokens,
      seconds,
      outputTokensPerS: outputTokens / seconds,
      complete: finished === requests.length,
      hostShare: dev === undefined ? undefined : Math.max(0, 1 - blocked / 1000 / seconds),
    };
  } finally {
    engine.close();
    runner.dispose();
  }
}
