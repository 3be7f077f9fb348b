/**
 * Offline throughput, in the manner of `vllm bench throughput` with the random dataset: N
 * random prompts (token ids drawn uniformly above the special tokens) with fixed or ranged input
 * and output lengths, ignore_eos so every request generates exactly its output length, and a
 * seed. Runs them all through the engine at once, then the same prompts one at a time, and
 * prints requests/s, output tokens/s and total tokens/s for both and their ratio. Prints
 * figures; never passes or fails.
 *
 *   npx tsx bench/throughput.ts [--model dir] [--num-prompts 64] [--input-len 32:256]
 *     [--output-len 32:128] [--seed 0] [--max-num-seqs 256] [--max-num-batched-tokens 512]
 *     [--kv-cache-mb 256] [--block-size 16] [--no-prefix-caching] [--skip-sequential]
 */
import { parseArgs } from "node:util";
import { createEngine } from "../runtime/engine/create_engine.ts";
import { Engine } from "../runtime/engine/engine.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import { Rng } from "../runtime/engine/rng.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    "num-prompts": { type: "string", default: "64" },
    "input-len": { type: "string", default: "32:256" },
    "output-len": { type: "string", default: "32:128" },
    seed: { type: "string", default: "0" },
    "max-num-seqs": { type: "string", default: "256" },
    "max-num-batched-tokens": { type: "string", default: "512" },
    "kv-cache-mb": { type: "string", default: "256" },
    "block-size": { type: "string", default: "16" },
    "no-prefix-caching": { type: "boolean", default: false },
    "skip-sequential": { type: "boolean", default: false },
  },
});

function int(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
  return n;
}

/** "64" is fixed, "32:256" draws uniformly from the inclusive range. */
function lengthRange(name: string, v: string): { lo: number; hi: number } {
  const [a, b] = v.split(":");
  const lo = int(name, a!);
  const hi = b === undefined ? lo : int(name, b);
  if (lo < 1 || hi < lo) throw new Error(`--${name} must be N or LO:HI with 1 ≤ LO ≤ HI, got ${v}`);
  return { lo, hi };
}

const numPrompts = int("num-prompts", args["num-prompts"]);
const inputLen = lengthRange("input-len", args["input-len"]);
const outputLen = lengthRange("output-len", args["output-len"]);
const rng = new Rng(int("seed", args.seed));
const draw = (r: { lo: number; hi: number }): number => r.lo + (rng.nextU32() % (r.hi - r.lo + 1));

const { engine, runner, tokenizer, model } = await createEngine({
  modelDir: args.model,
  blockSize: int("block-size", args["block-size"]),
  kvCacheBytes: int("kv-cache-mb", args["kv-cache-mb"]) * 2 ** 20,
  maxNumSeqs: int("max-num-seqs", args["max-num-seqs"]),
  maxNumBatchedTokens: int("max-num-batched-tokens", args["max-num-batched-tokens"]),
  enablePrefixCaching: !args["no-prefix-caching"],
});

if (inputLen.hi + outputLen.hi > engine.core.maxModelLen) {
  throw new Error(`input ${inputLen.hi} + output ${outputLen.hi} tokens exceed the context window (${engine.core.maxModelLen})`);
}
const V = model.model.vocabSize;
const firstId = Math.min(V - 1, Math.max(tokenizer.bosTokenId ?? 0, tokenizer.eosTokenId ?? 0) + 1);
const requests = Array.from({ length: numPrompts }, () => ({
  prompt: Array.from({ length: draw(inputLen) }, () => firstId + (rng.nextU32() % (V - firstId))),
  outputLen: draw(outputLen),
}));
const promptTokens = requests.reduce((n, r) => n + r.prompt.length, 0);
const outputTokens = requests.reduce((n, r) => n + r.outputLen, 0);

interface Figures {
  readonly seconds: number;
  readonly requestsPerS: number;
  readonly outputTokensPerS: number;
  readonly totalTokensPerS: number;
}

async function runAll(e: Engine, oneAtATime: boolean): Promise<Figures> {
  const t0 = performance.now();
  let generated = 0;
  const run = async (r: (typeof requests)[number]): Promise<void> => {
    const [res] = await e.generateBatch([r.prompt], { temperature: 1, seed: 0, maxTokens: r.outputLen, ignoreEos: true });
    generated += res!.usage.completionTokens;
  };
  if (oneAtATime) for (const r of requests) await run(r);
  else await Promise.all(requests.map(run));
  const seconds = (performance.now() - t0) / 1000;
  if (generated !== outputTokens) throw new Error(`generated ${generated} tokens, expected ${outputTokens}`);
  return {
    seconds,
    requestsPerS: numPrompts / seconds,
    outputTokensPerS: outputTokens / seconds,
    totalTokensPerS: (promptTokens + outputTokens) / seconds,
  };
}

const show = (label: string, f: Figures): void =>
  console.log(
    `${label.padEnd(14)} ${f.seconds.toFixed(2).padStart(7)} s  ${f.requestsPerS.toFixed(2).padStart(7)} requests/s  ` +
      `${f.outputTokensPerS.toFixed(1).padStart(8)} output tokens/s  ${f.totalTokensPerS.toFixed(1).padStart(8)} total tokens/s`,
  );

console.log(
  `model ${args.model}\n${numPrompts} prompts, input ${inputLen.lo}..${inputLen.hi} (${promptTokens} tokens), ` +
    `output ${outputLen.lo}..${outputLen.hi} (${outputTokens} tokens), ${runner.numBlocks} KV blocks of ${runner.blockSize}, ` +
    `max ${args["max-num-batched-tokens"]} tokens / ${args["max-num-seqs"]} sequences per step`,
);
// warm up the JIT and the kernels on a throwaway request
await engine.generateBatch([requests[0]!.prompt], { maxTokens: 4, ignoreEos: true });

// fresh engines over the same runner, so neither run finds the other's prompts in the cache
const opts = {
  maxModelLen: engine.core.maxModelLen,
  tokenizer,
  maxNumSeqs: engine.core.scheduler.config.maxNumSeqs,
  maxNumBatchedTokens: engine.core.scheduler.config.maxNumBatchedTokens,
  enablePrefixCaching: engine.core.blocks.enablePrefixCaching,
};
const batched = await runAll(new Engine(runner, opts), false);
show("batched", batched);
if (!args["skip-sequential"]) {
  const sequential = await runAll(new Engine(runner, opts), true);
  show("one at a time", sequential);
  console.log(`ratio: batched ${(batched.outputTokensPerS / sequential.outputTokensPerS).toFixed(2)}× the output tokens/s of one at a time`);
}
runner.dispose();
