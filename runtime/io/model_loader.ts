/**
 * From a model folder to a runnable model: config → registry → DSL model → weights → traced
 * graph. Nothing here knows an architecture; the registry's model classes do. An engine artifact
 * (`kiln compile`'s output) loads through runtime/io/artifact_loader.ts instead: its stored program
 * runs, with nothing traced or compiled.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { packagePath } from "./package_root.ts";
import { ropeFreqBf16 } from "../../compiler/passes/rope_freq_bf16.ts";
import { isArtifactDir, loadArtifact } from "./artifact_loader.ts";
import type { LoadedModel, LoadOptions } from "./loaded_model.ts";
import type { CausalLM } from "../../models/dsl/causal_lm.ts";
import { traceModel } from "../../models/dsl/causal_lm.ts";
import type { LoadReport, WeightSource } from "../../models/dsl/load_weights.ts";
import { SINGLE_DEVICE } from "../../models/dsl/module.ts";
import type { SourceTensor, WeightData } from "../../models/dsl/parameter.ts";
import { defaultRegistry } from "../../models/registry.ts";
import { Checkpoint } from "./checkpoint.ts";
import { checkConfigAgainstCheckpoint } from "./checkpoint_agreement.ts";
import { KilnError } from "../engine/errors.ts";
import { architectures, configDtype, loadConfigJson } from "../../models/hf_config.ts";
import { readQuantizationConfig } from "../../models/dsl/quantization/config.ts";
import { isOnnxModelPath } from "../../models/onnx/onnx_path.ts";

export type { LoadedModel, LoadOptions } from "./loaded_model.ts";

export function checkpointSource(ckpt: Checkpoint): WeightSource {
  return {
    origin: ckpt.dir,
    names: () => ckpt.names(),
    tensor: (name: string): SourceTensor => {
      const info = ckpt.info(name);
      return {
        name,
        origin: ckpt.pathOf(name),
        shape: info.shape,
        dtype: info.dtype,
        f32: () => ckpt.readF32(name),
        bf16: () => ckpt.readBf16Bits(name),
        bytes: () => ckpt.readBytes(name),
      };
    },
  };
}

export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  // an ONNX graph is named by its file; its tokenizer lives in the folder beside it
  // (the importer and protobufjs load only for an ONNX model, not at every start)
  if (isOnnxModelPath(dir)) return (await import("../../models/onnx/onnx_loader.ts")).loadOnnxModel(dir, opts);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new KilnError("MODEL_NOT_FOUND", `model folder ${dir} does not exist`);
  }
  if (isArtifactDir(dir)) return loadArtifact(dir, opts);
  const config = loadConfigJson(dir);
  const { arch, cls } = await (opts.registry ?? defaultRegistry).resolve(architectures(config));
  const storage = opts.weightStorage ?? (configDtype(config) === "bfloat16" ? "bf16" : "f32");
  const quantization = readQuantizationConfig(config, opts.quantization);
  // Headers first (small): the config is checked against them before it sizes anything.
  const ckpt = Checkpoint.open(dir);
  let model: CausalLM;
  let report: LoadReport;
  try {
    checkConfigAgainstCheckpoint(config, ckpt);
    model = new cls({ config, ctx: { parallel: SINGLE_DEVICE, weightStorage: storage, quantization } });
    report = model.loadWeights(checkpointSource(ckpt));
  } finally {
    ckpt.close();
  }
  const traced = traceModel(model);
  const graph = opts.ropeFreqBf16 ? ropeFreqBf16(traced) : traced;
  const weights = new Map<string, WeightData>();
  for (const [name, p] of model.parameters()) {
    if (!p.data) throw new KilnError("TENSOR_MISSING", `parameter '${name}' was not loaded from ${join(dir, "model.safetensors")}`);
    weights.set(name, p.data);
  }
  return { dir, arch, config, model, graph, weights, report };
}

/**
 * The embedded default model, shipped in the repository. A package built for machines without a C
 * compiler (tools/nightly.sh) carries it as an engine artifact compiled for the CPU, with its
 * kernels built, under prebuilds/<platform>-<arch>/fortune-llama: that one is the default there.
 */
export const DEFAULT_MODEL_DIR = defaultModelDir();

function defaultModelDir(): string {
  const prebuilt = packagePath("prebuilds", `${process.platform}-${process.arch}`, "fortune-llama");
  return existsSync(join(prebuilt, "manifest.json")) ? prebuilt : packagePath("assets", "fortune-llama");
}
