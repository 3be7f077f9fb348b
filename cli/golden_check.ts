/**
 * Golden parity against a fixture folder's `reference.safetensors` (computed by HF transformers):
 * prefill logits for each prompt, then the greedy steps teacher-forced along the reference's own
 * tokens so every step's logits are compared on the same context.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { argmax } from "../runtime/engine/sampler.ts";
import { KilnError } from "../runtime/engine/errors.ts";
import { loadModel, type LoadOptions } from "../runtime/io/model_loader.ts";
import { ModelRunner } from "../runtime/backends/model_runner.ts";
import { SafetensorsFile } from "../runtime/io/safetensors.ts";
import type { BackendName } from "../runtime/backends/step_executor.ts";
import { isOnnxModelPath } from "../models/onnx/onnx_path.ts";
import { runOnnxGolden } from "./golden_onnx.ts";

export interface GoldenPromptResult {
  readonly prompt: number;
  readonly prompt_len: number;
  readonly prefill_max_abs_err: number | undefined;
  readonly prefill_rel_err: number | undefined;
  readonly greedy_logits_rel_err: number;
  readonly greedy_token_match: string;
  /** steps whose token differs although the reference margin is above our numerical error */
  readonly unexplained_mismatches: number;
  readonly ok: boolean;
}

export interface GoldenSummary {
  readonly fixture: string;
  readonly arch: string;
  readonly backend: string;
  readonly tolerance: number;
  readonly prompts: number;
  readonly worst_prefill_rel_err: number | undefined;
  readonly worst_greedy_logits_rel_err: number;
  readonly greedy_token_match: string;
  readonly ok: boolean;
}

export interface GoldenOptions extends LoadOptions {
  readonly tolerance: number;
  /** where the model runs (default cpu); "cuda" needs the CUDA backend registered first */
  readonly backend?: BackendName;
}

function relErr(out: Float32Array, ref: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (out[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

function maxAbsErr(out: Float32Array, ref: Float32Array): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(out[i]! - ref[i]!));
  return m;
}

/** best minus second-best logit */
function margin(row: Float32Array): number {
  let a = -Infinity;
  let b = -Infinity;
  for (const x of row) {
    if (x > a) {
      b = a;
      a = x;
    } else if (x > b) b = x;
  }
  return a - b;
}

export async function runGolden(dir: string, opts: GoldenOptions): Promise<{ results: GoldenPromptResult[]; summary: GoldenSummary }> {
  // an ONNX model's reference outputs lie beside it (x.reference.safetensors), in their own layout
  if (isOnnxModelPath(dir)) return runOnnxGolden(dir, opts);
  const refPath = join(dir, "reference.safetensors");
  if (!existsSync(refPath)) throw new KilnError("MODEL_NOT_FOUND", `${dir} has no reference.safetensors`);
  const loaded = await loadModel(dir, opts);
  const ref = SafetensorsFile.open(refPath);
  const V = loaded.model.vocabSize;
  const results: GoldenPromptResult[] = [];
  try {
    for (let k = 0; ref.tensors.has(`prompt_${k}`); k++) {
      const prompt = Array.from(ref.readI32(`prompt_${k}`));
      const refTokens = Array.from(ref.readI32(`greedy_tokens_${k}`));
      const refGreedy = ref.readF32(`greedy_logits_${k}`);
      const steps = refTokens.length;
      const total = prompt.length + steps;
      const blockSize = 16;
      const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, V, {
        numBlocks: Math.ceil(total / blockSize) + 1,
        blockSize,
        ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
      });
      const table = Array.from({ length: runner.numBlocks }, (_, i) => i);
      // models with mamba-like layers run the prompt in a zeroed state slot
      const states = runner.statePool;
      const slot = states?.allocate();
      if (slot !== undefined) states!.reset(slot);
      const inSlot = slot === undefined ? {} : { stateSlot: slot };

      let prefill: Float32Array;
      const ours = new Float32Array(steps * V);
      try {
        prefill = runner.execute([{ tokens: prompt, numCached: 0, blockTable: table, allLogits: true, ...inSlot }]);
        ours.set(prefill.subarray((prompt.length - 1) * V, prompt.length * V), 0);
        for (let i = 1; i < steps; i++) {
          const row = runner.execute([{ tokens: [refTokens[i - 1]!], numCached: prompt.length + i - 1, blockTable: table, ...inSlot }]);
          ours.set(row, i * V);
        }
      } finally {
        runner.dispose(); // device memory on GPU backends
      }
      let prefillMax: number | undefined;
      let prefillRel: number | undefined;
      if (ref.tensors.has(`prefill_logits_${k}`)) {
        const refPrefill = ref.readF32(`prefill_logits_${k}`);
        prefillMax = maxAbsErr(prefill, refPrefill);
        prefillRel = relErr(prefill, refPrefill);
      }
      let match = 0;
      let unexplained = 0;
      for (let i = 0; i < steps; i++) {
        const row = ours.subarray(i * V, (i + 1) * V);
        const refRow = refGreedy.subarray(i * V, (i + 1) * V);
        if (argmax(row) === refTokens[i]) match++;
        // a different token is explained only when the reference's own margin is within our error
        else if (margin(refRow) > 4 * maxAbsErr(row, refRow)) unexplained++;
      }
      const greedyRel = relErr(ours, refGreedy);
      const ok = greedyRel <= opts.tolerance && (prefillRel === undefined || prefillRel <= opts.tolerance) && unexplained === 0;
      results.push({
        prompt: k,
        prompt_len: prompt.length,
        prefill_max_abs_err: prefillMax,
        prefill_rel_err: prefillRel,
        greedy_logits_rel_err: greedyRel,
        greedy_token_match: `${match}/${steps}`,
        unexplained_mismatches: unexplained,
        ok,
      });
    }
  } finally {
    ref.close();
  }
  const prefills = results.map((r) => r.prefill_rel_err).filter((x): x is number => x !== undefined);
  const matched = results.reduce((n, r) => n + Number(r.greedy_token_match.split("/")[0]), 0);
  const steps = results.reduce((n, r) => n + Number(r.greedy_token_match.split("/")[1]), 0);
  const summary: GoldenSummary = {
    fixture: dir,
    arch: loaded.arch,
    backend: opts.backend ?? "cpu",
    tolerance: opts.tolerance,
    prompts: results.length,
    worst_prefill_rel_err: prefills.length > 0 ? Math.max(...prefills) : undefined,
    worst_greedy_logits_rel_err: Math.max(...results.map((r) => r.greedy_logits_rel_err)),
    greedy_token_match: `${matched}/${steps}`,
    ok: results.length > 0 && results.every((r) => r.ok),
  };
  return { results, summary };
}
