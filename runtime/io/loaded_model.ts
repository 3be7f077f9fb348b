/**
 * What loading a model gives: from a model folder the traced graph and its weights, from an
 * engine artifact the stored program too (runtime/io/model_loader.ts, artifact_loader.ts).
 */
import type { FloatDtype } from "../../compiler/dtype.ts";
import type { Graph } from "../../compiler/ir.ts";
import type { CausalLM } from "../../models/dsl/causal_lm.ts";
import type { LoadReport } from "../../models/dsl/load_weights.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import type { ConfigReader, JsonObject } from "../../models/hf_config.ts";
import type { ModelRegistry } from "../../models/registry.ts";
import type { BackendName, CompiledModel } from "../backends/step_executor.ts";

export interface ArtifactInfo {
  readonly dir: string;
  /** `cpu` or `cuda:sm_XX` */
  readonly target: string;
  readonly dtype: FloatDtype;
  readonly maxModelLen: number;
  readonly maxNumSeqs: number;
  /** the whole manifest, as read */
  readonly manifest: JsonObject;
}

export interface LoadedModel {
  readonly dir: string;
  readonly arch: string;
  readonly config: ConfigReader;
  readonly model: CausalLM;
  readonly graph: Graph;
  readonly weights: ReadonlyMap<string, WeightData>;
  readonly report: LoadReport;
  /** set when `dir` is an engine artifact */
  readonly artifact?: ArtifactInfo;
  /** an engine artifact's stored program: what runs, with nothing traced or compiled */
  readonly compiled?: CompiledModel;
}

export interface LoadOptions {
  readonly registry?: ModelRegistry;
  /** keep matrix weights in bf16 (default: when the checkpoint is bf16) or f32 */
  readonly weightStorage?: "f32" | "bf16";
  /** reproduce HF's bf16-rounded rotary frequencies (see compiler/passes/rope_freq_bf16.ts) */
  readonly ropeFreqBf16?: boolean;
  /** the backend the caller runs (default cpu): an artifact compiled for another is refused */
  readonly backend?: BackendName;
  /** hash every file of an engine artifact, its weights too (by default only sizes and the small files' digests are checked) */
  readonly verify?: boolean;
  /** `--quantization`: the method the checkpoint's quantization_config must name (fp8, compressed-tensors, awq, gptq) */
  readonly quantization?: string | undefined;
}
