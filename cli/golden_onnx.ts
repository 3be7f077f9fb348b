/**
 * Golden parity of an ONNX model against the outputs recorded beside it
 * (`x.reference.safetensors`: `input_ids` [B, L] and the exported graph's `logits` [B, L, V],
 * e.g. from onnxruntime or the exporting framework). Per row: the prefill logits at every
 * position, then the same tokens again with the first half as a prompt and the rest decoded one
 * at a time through the KV cache (teacher-forced), each step's logits and greedy token compared
 * with the reference's row for that position.
 */
import { existsSync } from "node:fs";
import { argmax } from "../runtime/engine/sampler.ts";
import { KilnError } from "../runtime/engine/errors.ts";
import { loadModel } from "../runtime/io/model_loader.ts";
import { ModelRunner } from "../runtime/backends/model_runner.ts";
import { SafetensorsFile } from "../runtime/io/safetensors.ts";
import { onnxReferencePath } from "../models/onnx/onnx_path.ts";
import type { GoldenOptions, GoldenPromptResult, GoldenSummary } from "./golden_check.ts";

function errors(out: Float32Array, ref: Float32Array): { maxAbs: number; rel: number } {
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = out[i]! - ref[i]!;
    num += d * d;
    den += ref[i]! ** 2;
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  return { maxAbs, rel: Math.sqrt(num) / Math.sqrt(den) };
}

/** An I64 or I32 tensor of the reference as numbers. */
function readIds(ref: SafetensorsFile, name: string): { rows: number; cols: number; ids: number[] } {
  const info = ref.tensors.get(name);
  if (!info || info.shape.length < 1 || info.shape.length > 2) throw new KilnError("SAFETENSORS_INVALID", `the reference has no ${name} [B, L]`);
  const ids = info.dtype === "I32" ? Array.from(ref.readI32(name)) : (() => {
    if (info.dtype !== "I64") throw new KilnError("SAFETENSORS_DTYPE", `reference ${name} is ${info.dtype}, not I64 or I32`);
    const b = ref.readBytes(name);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    return Array.from({ length: b.byteLength / 8 }, (_, i) => Number(dv.getBigInt64(8 * i, true)));
  })();
  const cols = info.shape[info.shape.length - 1]!;
  return { rows: ids.length / cols, cols, ids };
}

export async function runOnnxGolden(path: string, opts: GoldenOptions): Promise<{ results: GoldenPromptResult[]; summary: GoldenSummary }> {
  const loaded = await loadModel(path, opts);
  const refPath = onnxReferencePath(path);
  if (!existsSync(refPath)) throw new KilnError("MODEL_NOT_FOUND", `${path} has no reference outputs beside it (${refPath})`);
  const V = loaded.model.vocabSize;
  const ref = SafetensorsFile.open(refPath);
  const results: GoldenPromptResult[] = [];
  try {
    const { rows, cols: L, ids } = readIds(ref, "input_ids");
    const logits = ref.readF32("logits");
    if (logits.length !== rows * L * V) throw new KilnError("TENSOR_SHAPE", `reference logits hold ${logits.length} values; [${rows}, ${L}, ${V}] expected`);
    const blockSize = 16;
    for (let b = 0; b < rows; b++) {
      const tokens = ids.slice(b * L, (b + 1) * L);
      const refRows = logits.subarray(b * L * V, (b + 1) * L * V);
      const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, V, {
        numBlocks: Math.ceil(L / blockSize) + 1,
        blockSize,
        ...(opts.backend !== undefined ? { backend: opts.backend } : {}),
      });
      const table = Array.from({ length: runner.numBlocks }, (_, i) => i);
      const split = Math.max(1, Math.floor(L / 2));
      const decoded = new Float32Array((L - split) * V);
      let prefill: Float32Array;
      try {
        prefill = runner.execute([{ tokens, numCached: 0, blockTable: table, allLogits: true }]);
        // a fresh cache: the first half as a prompt, then one token per step
        runner.execute([{ tokens: tokens.slice(0, split), numCached: 0, blockTable: table }]);
        for (let p = split; p < L; p++) decoded.set(runner.execute([{ tokens: [tokens[p]!], numCached: p, blockTable: table }]), (p - split) * V);
      } finally {
        runner.dispose();
      }
      const pre = errors(prefill, refRows);
      const refDecoded = refRows.subarray(split * V);
      const dec = errors(decoded, refDecoded);
      let match = 0;
      for (let i = 0; i < L - split; i++) {
        if (argmax(decoded.subarray(i * V, (i + 1) * V)) === argmax(refDecoded.subarray(i * V, (i + 1) * V))) match++;
      }
      results.push({
        prompt: b,
        prompt_len: L,
        prefill_max_abs_err: pre.maxAbs,
        prefill_rel_err: pre.rel,
        greedy_logits_rel_err: dec.rel,
        greedy_token_match: `${match}/${L - split}`,
        unexplained_mismatches: L - split - match,
        ok: pre.rel <= opts.tolerance && dec.rel <= opts.tolerance && match === L - split,
      });
    }
  } finally {
    ref.close();
  }
  const matched = results.reduce((n, r) => n + Number(r.greedy_token_match.split("/")[0]), 0);
  const steps = results.reduce((n, r) => n + Number(r.greedy_token_match.split("/")[1]), 0);
  return {
    results,
    summary: {
      fixture: path,
      arch: loaded.arch,
      backend: opts.backend ?? "cpu",
      tolerance: opts.tolerance,
      prompts: results.length,
      worst_prefill_rel_err: Math.max(...results.map((r) => r.prefill_rel_err ?? 0)),
      worst_greedy_logits_rel_err: Math.max(...results.map((r) => r.greedy_logits_rel_err)),
      greedy_token_match: `${matched}/${steps}`,
      ok: results.length > 0 && results.every((r) => r.ok),
    },
  };
}
