/**
 * Loading an ONNX file as a runnable model: import, trace, and the weights the importer derived.
 * The result is the same LoadedModel a model folder gives, so compile(), the engine, `kiln run`,
 * `serve` and `golden` take it unchanged. A config.json beside the file (if any) may give
 * `max_position_embeddings`; the architecture is reported as `OnnxModel`.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { ropeFreqBf16 } from "../../compiler/passes/rope_freq_bf16.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { LoadedModel, LoadOptions } from "../../runtime/io/loaded_model.ts";
import { traceModel } from "../dsl/causal_lm.ts";
import type { WeightData } from "../dsl/parameter.ts";
import { ConfigReader, loadConfigJson } from "../hf_config.ts";
import { OnnxCausalLM, ONNX_ARCH, ONNX_DEFAULT_MAX_POSITIONS } from "./onnx_model.ts";
import { modelFolderOf } from "./onnx_path.ts";

export function loadOnnxModel(path: string, opts: LoadOptions = {}): LoadedModel {
  if (!existsSync(path) || !statSync(path).isFile()) throw new KilnError("MODEL_NOT_FOUND", `ONNX model ${path} does not exist`);
  if (opts.backend !== undefined && opts.backend !== "cpu" && opts.backend !== "cuda") throw new KilnError("INVALID_ARGUMENT", `unknown backend ${String(opts.backend)}`);
  const folder = modelFolderOf(path);
  const beside = existsSync(join(folder, "config.json")) ? loadConfigJson(folder) : undefined;
  const maxPositions = beside?.optInt("max_position_embeddings", { min: 1, max: 2 ** 24 }) ?? ONNX_DEFAULT_MAX_POSITIONS;
  const model = OnnxCausalLM.open(path, {}, maxPositions);
  const traced = traceModel(model);
  const graph = opts.ropeFreqBf16 === true ? ropeFreqBf16(traced) : traced;
  const weights = new Map<string, WeightData>();
  for (const [name, p] of model.parameters()) if (p.data) weights.set(name, p.data);
  const config = new ConfigReader(
    { architectures: [ONNX_ARCH], vocab_size: model.vocabSize, max_position_embeddings: maxPositions, onnx: { opset: model.file.opset, producer: model.file.producer } },
    path,
  );
  return { dir: path, arch: ONNX_ARCH, config, model, graph, weights, report: model.loadWeights() };
}
