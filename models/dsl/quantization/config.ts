/**
 * The quantization config, read once from config.json's `quantization_config` (and checked
 * against `--quantization` when given), as vLLM's QuantizationConfig: which method each linear
 * layer gets and which layers stay unquantized.
 *
 *   fp8                 {quant_method: "fp8", weight_block_size?: [bn, bk], activation_scheme, ignored_layers?}
 *   compressed-tensors  {quant_method: "compressed-tensors", format: "float-quantized"|"naive-quantized",
 *                        config_groups: {g: {weights: {type: "float", num_bits: 8, strategy, block_structure?}}}, ignore}
 *   awq                 {quant_method: "awq", bits: 4, group_size, zero_point: true, version: "gemm", modules_to_not_convert?}
 *   gptq                {quant_method: "gptq", bits: 4|8, group_size, desc_act, sym, checkpoint_format?: "gptq"|"gptq_v2"}
 */
import { KilnError } from "../../../runtime/engine/errors.ts";
import type { ConfigReader } from "../../hf_config.ts";

export const QUANT_METHODS = ["fp8", "compressed-tensors", "awq", "gptq"] as const;
export type QuantMethodName = (typeof QUANT_METHODS)[number];

export type Fp8Strategy = "tensor" | "channel" | "block";

export interface Fp8Quantization {
  readonly method: "fp8";
  /**
   * the config's own quant_method (both store e4m3 weights; they differ in names and strategies),
   * or "online": a float checkpoint quantized at load (`--quantization fp8`, as vLLM), each
   * checkpoint tensor to e4m3 with its own per-tensor scale
   */
  readonly from: "fp8" | "compressed-tensors" | "online";
  readonly strategy: Fp8Strategy;
  /** block [bn (output rows), bk (input columns)] when strategy is block */
  readonly block: readonly [number, number] | undefined;
  /** the scale tensor's name: `weight_scale_inv` (fp8 blocks) or `weight_scale` */
  readonly scaleName: "weight_scale" | "weight_scale_inv";
  /** static activation scales are stored per layer (`input_scale`); kiln reads and does not apply them (activations stay f32) */
  readonly staticInputScale: boolean;
  readonly ignore: readonly string[];
}

export interface AwqQuantization {
  readonly method: "awq";
  readonly bits: 4;
  readonly groupSize: number;
  readonly ignore: readonly string[];
}

export interface GptqQuantization {
  readonly method: "gptq";
  readonly bits: 4 | 8;
  /** input features per group; the whole input when the config says -1 */
  readonly groupSize: number | "whole";
  readonly descAct: boolean;
  readonly sym: boolean;
  /** legacy (AutoGPTQ v1) checkpoints store zero - 1; gptq_v2 stores the zero itself */
  readonly zeroOffset: 0 | 1;
  readonly ignore: readonly string[];
}

export type QuantizationConfig = Fp8Quantization | AwqQuantization | GptqQuantization;

const unsupported = (c: ConfigReader, key: string, problem: string): KilnError =>
  new KilnError("QUANT_UNSUPPORTED", `${c.path}: field "quantization_config.${key}" ${problem}`);

/**
 * The model's quantization config, or undefined for a float checkpoint. `flag` is `--quantization`:
 * it must name the config's method (a float checkpoint cannot be quantized at load yet).
 */
export function readQuantizationConfig(config: ConfigReader, flag?: string): QuantizationConfig | undefined {
  const q = config.optObject("quantization_config");
  if (flag !== undefined && !(QUANT_METHODS as readonly string[]).includes(flag)) {
    throw new KilnError("QUANT_UNSUPPORTED", `--quantization ${flag} is not a method kiln loads (${QUANT_METHODS.join(", ")})`);
  }
  if (q === undefined) {
    if (flag === "fp8") {
      return { method: "fp8", from: "online", strategy: "tensor", block: undefined, scaleName: "weight_scale", staticInputScale: false, ignore: [] };
    }
    if (flag !== undefined) {
      throw new KilnError("QUANT_UNSUPPORTED", `--quantization ${flag}: ${config.path} has no quantization_config, and only fp8 quantizes a float checkpoint at load`);
    }
    return undefined;
  }
  const method = q.string("quant_method");
  if (flag !== undefined && flag !== method) {
    throw new KilnError("QUANT_INVALID", `--quantization ${flag} does not match the checkpoint's quantization_config.quant_method "${method}" in ${config.path}`);
  }
  switch (method) {
    case "fp8":
      return readFp8(q);
    case "compressed-tensors":
      return readCompressedTensors(q);
    case "awq":
      return readAwq(q);
    case "gptq":
      return readGptq(q);
    default:
      throw unsupported(q, "quant_method", `is "${method}"; kiln loads ${QUANT_METHODS.join(", ")}`);
  }
}

function readFp8(q: ConfigReader): Fp8Quantization {
  const fmt = q.optString("fmt") ?? "e4m3";
  if (fmt !== "e4m3") throw unsupported(q, "fmt", `is "${fmt}"; only e4m3 weights are supported`);
  const scheme = q.optString("activation_scheme") ?? "dynamic";
  if (scheme !== "dynamic" && scheme !== "static") throw unsupported(q, "activation_scheme", `is "${scheme}" (expected dynamic or static)`);
  const blockList = q.optIntList("weight_block_size", { min: 1, max: 1 << 16 });
  if (blockList !== undefined && blockList.length !== 2) throw unsupported(q, "weight_block_size", `must be [block_n, block_k], got [${blockList.join(", ")}]`);
  const block = blockList === undefined ? undefined : ([blockList[0]!, blockList[1]!] as const);
  return {
    method: "fp8",
    from: "fp8",
    strategy: block === undefined ? "tensor" : "block",
    block,
    scaleName: block === undefined ? "weight_scale" : "weight_scale_inv",
    staticInputScale: scheme === "static",
    ignore: [...(q.optStringList("ignored_layers") ?? []), ...(q.optStringList("modules_to_not_convert") ?? [])],
  };
}

function readCompressedTensors(q: ConfigReader): Fp8Quantization {
  const format = q.optString("format") ?? "float-quantized";
  if (format !== "float-quantized" && format !== "naive-quantized") {
    throw unsupported(q, "format", `is "${format}"; kiln loads the float-quantized (fp8) compressed-tensors format`);
  }
  const groups = q.object("config_groups");
  const names = groups.keys();
  if (names.length !== 1) throw unsupported(q, "config_groups", `has ${names.length} groups; kiln loads exactly one`);
  const group = groups.object(names[0]!);
  const targets = group.optStringList("targets") ?? ["Linear"];
  if (!targets.includes("Linear")) throw unsupported(group, "targets", `is [${targets.join(", ")}]; only ["Linear"] is supported`);
  const w = group.object("weights");
  const type = w.string("type");
  const bits = w.int("num_bits");
  if (type !== "float" || bits !== 8) throw unsupported(w, "type", `is ${type} with ${bits} bits; kiln loads 8-bit float (fp8 e4m3) weights`);
  if (w.optBool("dynamic") === true) throw unsupported(w, "dynamic", "is true; dynamic weight quantization is not a stored format");
  const strategy = w.string("strategy");
  const input = group.optObject("input_activations");
  const staticInputScale = input !== undefined && input.optBool("dynamic") === false;
  const base = { method: "fp8", from: "compressed-tensors", scaleName: "weight_scale", staticInputScale, ignore: q.optStringList("ignore") ?? [] } as const;
  switch (strategy) {
    case "tensor":
    case "channel":
      return { ...base, strategy, block: undefined };
    case "block": {
      const b = w.intList("block_structure", { min: 1, max: 1 << 16 });
      if (b.length !== 2) throw unsupported(w, "block_structure", `must be [block_n, block_k], got [${b.join(", ")}]`);
      return { ...base, strategy, block: [b[0]!, b[1]!] };
    }
    default:
      throw unsupported(w, "strategy", `is "${strategy}"; kiln loads tensor, channel and block fp8 scales`);
  }
}

function readAwq(q: ConfigReader): AwqQuantization {
  const bits = q.optInt("bits") ?? q.int("w_bit");
  if (bits !== 4) throw unsupported(q, "bits", `is ${bits}; AWQ loads 4-bit weights`);
  const groupSize = q.optInt("group_size") ?? q.int("q_group_size");
  if (groupSize < 1) throw unsupported(q, "group_size", `is ${groupSize}; AWQ needs a positive group size`);
  if ((q.optBool("zero_point") ?? true) !== true) throw unsupported(q, "zero_point", "is false; only AWQ with zero points is supported");
  const version = (q.optString("version") ?? "gemm").toLowerCase();
  if (version !== "gemm") throw unsupported(q, "version", `is "${version}"; only the GEMM packing is supported`);
  return { method: "awq", bits: 4, groupSize, ignore: q.optStringList("modules_to_not_convert") ?? [] };
}

function readGptq(q: ConfigReader): GptqQuantization {
  const bits = q.int("bits");
  if (bits !== 4 && bits !== 8) throw unsupported(q, "bits", `is ${bits}; GPTQ loads 4- and 8-bit weights`);
  const g = q.int("group_size");
  if (g !== -1 && g < 1) throw unsupported(q, "group_size", `is ${g}; expected -1 or a positive size`);
  if (q.optBool("lm_head") === true) throw unsupported(q, "lm_head", "is true; a quantized lm_head is not supported");
  const format = q.optString("checkpoint_format") ?? "gptq";
  if (format !== "gptq" && format !== "gptq_v2") throw unsupported(q, "checkpoint_format", `is "${format}" (expected gptq or gptq_v2)`);
  return {
    method: "gptq",
    bits,
    groupSize: g === -1 ? "whole" : g,
    descAct: q.optBool("desc_act") ?? false,
    sym: q.optBool("sym") ?? true,
    zeroOffset: format === "gptq" ? 1 : 0,
    ignore: q.optStringList("modules_to_not_convert") ?? [],
  };
}

/** Fused layers (by their last name) and the checkpoint layers stacked in them. */
const PACKED_MODULES: Readonly<Record<string, readonly string[]>> = {
  qkv_proj: ["q_proj", "k_proj", "v_proj"],
  gate_up_proj: ["gate_proj", "up_proj"],
};

/**
 * An exclusion entry matches a checkpoint layer name: "re:<regex>" (compressed-tensors) matches the
 * whole name, else the entry must be a run of whole dotted components ("mlp.gate", "lm_head"), so
 * "layers.1" does not exclude layers.10.
 */
function matches(entry: string, name: string): boolean {
  if (entry.startsWith("re:")) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${entry.slice(3)})$`);
    } catch (e) {
      throw new KilnError("QUANT_INVALID", `quantization_config excludes "${entry}", which is not a valid regular expression`, { cause: e });
    }
    return re.test(name);
  }
  return `.${name}.`.includes(`.${entry}.`);
}

/**
 * Whether the layer at `prefix` stays unquantized. A fused layer (qkv_proj) is looked up by its
 * checkpoint pieces (q_proj, k_proj, v_proj): all or none of them must be excluded.
 */
export function isLayerSkipped(quant: QuantizationConfig, prefix: string): boolean {
  const dot = prefix.lastIndexOf(".");
  const last = prefix.slice(dot + 1);
  const pieces = PACKED_MODULES[last]?.map((p) => `${prefix.slice(0, dot + 1)}${p}`) ?? [prefix];
  const skipped = pieces.map((p) => quant.ignore.some((e) => matches(e, p)));
  if (skipped.every((s) => s)) return true;
  if (skipped.every((s) => !s)) return false;
  const which = pieces.filter((_, i) => skipped[i]).join(", ");
  throw new KilnError("QUANT_UNSUPPORTED", `layer '${prefix}' is stacked from ${pieces.join(", ")}, but the quantization config excludes only ${which}`);
}
