/**
 * The fortune model's greedy text on a backend against assets/fortune-llama/reference.json (HF
 * transformers' greedy continuations, 24 tokens each, EOS not special).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { generate } from "../../runtime/generate.ts";
import { loadModel } from "../../runtime/model_loader.ts";
import { ModelRunner } from "../../runtime/model_runner.ts";
import { GREEDY } from "../../runtime/sampler.ts";
import type { BackendName } from "../../runtime/step_executor.ts";
import { KilnTokenizer } from "../../runtime/tokenizer.ts";

export interface TextCheck {
  readonly matched: number;
  readonly total: number;
  /** "prompt → ours ≠ reference" for each mismatch */
  readonly mismatches: readonly string[];
}

interface Reference {
  readonly prompt: string;
  readonly greedy: string;
}

function isReference(x: unknown): x is Reference {
  return typeof x === "object" && x !== null && typeof Reflect.get(x, "prompt") === "string" && typeof Reflect.get(x, "greedy") === "string";
}

export async function fortuneGreedyText(dir: string, backend: BackendName): Promise<TextCheck> {
  const parsed: unknown = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
  const list: readonly unknown[] = Array.isArray(parsed) ? parsed : [];
  const refs = list.filter(isReference);
  if (refs.length === 0 || refs.length !== list.length) throw new Error(`${dir}/reference.json is not a list of { prompt, greedy }`);
  const loaded = await loadModel(dir);
  const tokenizer = KilnTokenizer.load(dir);
  const maxModelLen = loaded.model.maxPositions;
  const runner = new ModelRunner(loaded.graph, loaded.weights, loaded.model.vocabSize, { numBlocks: Math.ceil(maxModelLen / 16), blockSize: 16, backend });
  const mismatches: string[] = [];
  let matched = 0;
  try {
    for (const { prompt, greedy: want } of refs) {
      const ids = tokenizer.encode(prompt, { addSpecialTokens: true });
      const out = generate(runner, ids, { maxTokens: 24, sampling: GREEDY, seed: 0, stopTokenIds: [], maxModelLen });
      const text = tokenizer.decode(out.tokens, { skipSpecialTokens: false });
      if (text === want) matched++;
      else mismatches.push(`${JSON.stringify(prompt)} → ${JSON.stringify(text)} ≠ ${JSON.stringify(want)}`);
    }
  } finally {
    runner.dispose();
  }
  return { matched, total: refs.length, mismatches };
}
