/**
 * Weight loading driven by declarative data: renames of older checkpoint spellings, a
 * stacked-parameter map (checkpoint q/k/v → qkv shards, gate/up → gate_up shards), tensors stored
 * transposed (GPT-2's Conv1D) and a list of checkpoint names to skip. It consumes every
 * checkpoint tensor or fails listing each one it could not place and each parameter left empty.
 */
import { KilnError } from "../../runtime/engine/errors.ts";
import type { Module } from "./module.ts";
import type { SourceTensor } from "./parameter.ts";
import { PackedParameter } from "./quantization/packed_parameter.ts";

/** `param` replaces `checkpoint` in a checkpoint name; the tensor fills shard `shard`. */
export interface StackedParam {
  readonly param: string;
  readonly checkpoint: string;
  readonly shard: string;
}

/** Checkpoint names matching `from` are read as `name.replace(from, to)` (older layouts). */
export interface CheckpointRename {
  readonly from: RegExp;
  readonly to: string;
}

export interface WeightRules {
  readonly stacked: readonly StackedParam[];
  /** checkpoint tensors that are not parameters here (rotary caches, a tied head's copy) */
  readonly skip?: readonly RegExp[];
  /** applied first; `skip`, `stacked` and `transposed` see the renamed names */
  readonly rename?: readonly CheckpointRename[];
  /** 2-D tensors stored [in, out] (GPT-2's Conv1D) that load as the [out, in] of a Linear */
  readonly transposed?: readonly RegExp[];
}

export interface WeightSource {
  /** where the tensors come from (a model folder), for error messages */
  readonly origin: string;
  names(): readonly string[];
  tensor(name: string): SourceTensor;
}

export interface LoadReport {
  /**
   * checkpoint tensor → parameter (and shard) it filled; a quantized layer's packed tensor names
   * the graph weight it is dequantized into, with its shard and kind: `…qkv_proj.weight[k:qzeros]`
   */
  readonly loaded: ReadonlyMap<string, string>;
  readonly skipped: readonly string[];
}

export const LLAMA_STACKED: readonly StackedParam[] = [
  { param: ".qkv_proj", checkpoint: ".q_proj", shard: "q" },
  { param: ".qkv_proj", checkpoint: ".k_proj", shard: "k" },
  { param: ".qkv_proj", checkpoint: ".v_proj", shard: "v" },
  { param: ".gate_up_proj", checkpoint: ".gate_proj", shard: "0" },
  { param: ".gate_up_proj", checkpoint: ".up_proj", shard: "1" },
];

export function loadWeights(model: Module, source: WeightSource, rules: WeightRules): LoadReport {
  // quantized layers' packed tensors are targets too (q/k/v's qweight stacks into qkv_proj.qweight)
  const params = model.loadTargets();
  const loaded = new Map<string, string>();
  const skipped: string[] = [];
  const unused: string[] = [];
  for (const stored of source.names()) {
    const name = (rules.rename ?? []).reduce((n, r) => n.replace(r.from, r.to), stored);
    if (rules.skip?.some((r) => r.test(name))) {
      skipped.push(stored);
      continue;
    }
    const stacked = rules.stacked.find((m) => name.includes(m.checkpoint) && params.has(name.replace(m.checkpoint, m.param)));
    const paramName = stacked ? name.replace(stacked.checkpoint, stacked.param) : name;
    const p = params.get(paramName);
    if (!p) {
      unused.push(stored);
      continue;
    }
    const src = source.tensor(stored);
    const flip = rules.transposed?.some((r) => r.test(name)) ?? false;
    if (p instanceof PackedParameter) {
      if (flip) throw new KilnError("QUANT_UNSUPPORTED", `tensor '${stored}' in ${src.origin}: a transposed (Conv1D) layer cannot be loaded quantized`);
      p.fill(src, stacked?.shard);
    } else {
      p.loader(p, flip ? transposed(src) : src, stacked?.shard);
    }
    if (p instanceof PackedParameter) {
      loaded.set(stored, `${p.feeds.param}[${stacked ? `${stacked.shard}:` : ""}${p.feeds.label}]`);
    } else {
      loaded.set(stored, stacked ? `${paramName}[${stacked.shard}]` : paramName);
    }
  }
  const missing: string[] = [];
  let missingPacked = false;
  for (const p of params.values()) {
    const shards = p.missingShards;
    // a tensor a format may leave out (GPTQ's g_idx without desc_act) is missing only in part
    if (p instanceof PackedParameter && p.spec.optional === true && shards.length === p.shards.length) continue;
    if (shards.length > 0) missingPacked ||= p instanceof PackedParameter;
    if (shards.length === p.shards.length) missing.push(p.name);
    else if (shards.length > 0) missing.push(`${p.name} (shards ${shards.join(", ")})`);
  }
  if (unused.length > 0 || missing.length > 0) {
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`parameters not filled by any checkpoint tensor: ${missing.join(", ")}`);
    if (unused.length > 0) parts.push(`checkpoint tensors not consumed by any parameter: ${unused.join(", ")}`);
    // a quantized layer without its scales or zeros is a malformed quantized checkpoint
    const code = missingPacked ? "QUANT_INVALID" : missing.length > 0 ? "TENSOR_MISSING" : "TENSOR_UNUSED";
    throw new KilnError(code, `weight loading from ${source.origin} failed; ${parts.join("; ")}`);
  }
  for (const m of model.modules()) m.processWeightsAfterLoading();
  return { loaded, skipped };
}

/**
 * A 2-D tensor [R, C] read as its transpose [C, R]. The data is transposed when read; shape
 * errors then name the transposed shape, which is the one the parameter compares against.
 */
function transposed(src: SourceTensor): SourceTensor {
  const [rows, cols] = src.shape;
  if (src.shape.length !== 2 || rows === undefined || cols === undefined) {
    throw new KilnError("TENSOR_SHAPE", `tensor '${src.name}' in ${src.origin} has shape [${src.shape.join(", ")}]; a transposed (Conv1D) weight must be 2-D`);
  }
  const flip = <A extends Float32Array | Uint16Array>(a: A, out: A): A => {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
    return out;
  };
  return {
    name: src.name,
    origin: src.origin,
    shape: [cols, rows],
    dtype: src.dtype,
    f32: () => flip(src.f32(), new Float32Array(rows * cols)),
    bf16: () => flip(src.bf16(), new Uint16Array(rows * cols)),
    bytes: () => {
      throw new KilnError("QUANT_UNSUPPORTED", `tensor '${src.name}' in ${src.origin}: a transposed (Conv1D) weight is read as floats, not raw bytes`);
    },
  };
}
