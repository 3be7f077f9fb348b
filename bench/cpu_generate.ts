/**
 * CPU generation speed of a model folder (default: the embedded fortune model): prefill
 * tokens/s over prompts of several lengths and batch-1 decode tokens/s, with the weights kept
 * as the checkpoint stores them (bf16) and as f32. Prints figures; never passes or fails.
 *
 *   npx tsx bench/cpu_generate.ts [model-dir]
 */
import { argmax } from "../runtime/engine/sampler.ts";
import { loadModel } from "../runtime/io/model_loader.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import { ModelRunner } from "../runtime/backends/model_runner.ts";
import { Rng } from "../runtime/engine/rng.ts";

const dir = process.argv[2] ?? DEFAULT_MODEL_DIR;
const blockSize = 16;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function bench(storage: "f32" | "bf16"): Promise<void> {
  const loaded = await loadModel(dir, { weightStorage: storage });
  const V = loaded.model.vocabSize;
  const maxLen = Math.min(loaded.model.maxPositions, 1024);
  const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, V, { numBlocks: Math.ceil(maxLen / blockSize), blockSize });
  const table = Array.from({ length: runner.numBlocks }, (_, i) => i);
  const rng = new Rng(0);
  const randomTokens = (n: number): number[] => Array.from({ length: n }, () => 5 + (rng.nextU32() % (V - 5)));

  // warm up the JIT and the kernels
  runner.execute([{ tokens: randomTokens(64), numCached: 0, blockTable: table }]);

  for (const L of [128, 512, 1000]) {
    const prompt = randomTokens(Math.min(L, maxLen - 1));
    const times: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      runner.execute([{ tokens: prompt, numCached: 0, blockTable: table }]);
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    console.log(`${storage.padEnd(4)} prefill ${String(prompt.length).padStart(5)} tokens: ${ms.toFixed(1).padStart(7)} ms  ${((prompt.length / ms) * 1000).toFixed(0).padStart(7)} tokens/s`);
  }

  for (const ctx of [16, 256]) {
    const prompt = randomTokens(ctx);
    const logits = runner.execute([{ tokens: prompt, numCached: 0, blockTable: table }]);
    let next = argmax(logits);
    const steps = 128;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      const row = runner.execute([{ tokens: [next], numCached: ctx + i, blockTable: table }]);
      next = argmax(row);
    }
    const ms = (performance.now() - t0) / steps;
    console.log(`${storage.padEnd(4)} decode batch 1, context ${String(ctx).padStart(4)}: ${ms.toFixed(3).padStart(7)} ms/step  ${(1000 / ms).toFixed(0).padStart(7)} tokens/s`);
  }
}

console.log(`model: ${dir}`);
await bench("bf16");
await bench("f32");
