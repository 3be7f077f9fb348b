/**
 * Test support: a model folder's logits on the fixture's reference prompts (every prompt
 * position, then a few decode steps along the reference's greedy tokens), through the compiled
 * CPU program, so two folders (a quantized checkpoint and its dequantized reference) compare.
 */
import { join } from "node:path";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { loadModel, type LoadOptions } from "../../runtime/io/model_loader.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import type { BackendName } from "../../runtime/backends/step_executor.ts";

/** `promptsFrom`: the folder whose reference.safetensors holds the prompts (default `dir`; an engine artifact has none). */
export async function referencePromptLogits(dir: string, decodeSteps = 4, backend: BackendName = "cpu", load: LoadOptions = {}, promptsFrom = dir): Promise<Float32Array[]> {
  const loaded = await loadModel(dir, load);
  const ref = SafetensorsFile.open(join(promptsFrom, "reference.safetensors"));
  const V = loaded.model.vocabSize;
  const out: Float32Array[] = [];
  try {
    for (let k = 0; ref.tensors.has(`prompt_${k}`); k++) {
      const prompt = Array.from(ref.readI32(`prompt_${k}`));
      const tokens = Array.from(ref.readI32(`greedy_tokens_${k}`)).slice(0, decodeSteps);
      const blockSize = 16;
      const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, V, { numBlocks: Math.ceil((prompt.length + tokens.length) / blockSize) + 1, blockSize, backend });
      const table = Array.from({ length: runner.numBlocks }, (_, i) => i);
      try {
        out.push(runner.execute([{ tokens: prompt, numCached: 0, blockTable: table, allLogits: true }]));
        tokens.forEach((t, i) => out.push(runner.execute([{ tokens: [t], numCached: prompt.length + i, blockTable: table }])));
      } finally {
        runner.dispose();
      }
    }
  } finally {
    ref.close();
  }
  return out;
}

/** ‖a − b‖ / ‖b‖ over all the blocks (the goldens' relative error). */
export function relErr(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let num = 0;
  let den = 0;
  a.forEach((x, k) => {
    const y = b[k]!;
    for (let i = 0; i < y.length; i++) {
      num += (x[i]! - y[i]!) ** 2;
      den += y[i]! ** 2;
    }
  });
  return Math.sqrt(num / den);
}

/** The largest |a − b| over matching rows of logits. */
export function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  if (a.length !== b.length) throw new Error(`${a.length} logit blocks against ${b.length}`);
  let m = 0;
  a.forEach((x, k) => {
    const y = b[k]!;
    if (x.length !== y.length) throw new Error(`block ${k}: ${x.length} logits against ${y.length}`);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  });
  return m;
}
