/**
 * Weight loading driven by declarative data: a stacked-parameter map (checkpoint q/k/v → qkv
 * shards, gate/up → gate_up shards) and a list of checkpoint names to skip. It consumes every
 * checkpoint tensor or fails listing each one it could not place and each parameter left empty.
 */
import { KilnError } from "../../runtime/errors.ts";
import type { Module } from "./module.ts";
import type { SourceTensor } from "./parameter.ts";

/** `param` replaces `checkpoint` in a checkpoint name; the tensor fills shard `shard`. */
export interface StackedParam {
  readonly param: string;
  readonly checkpoint: string;
  readonly shard: string;
}

export interface WeightRules {
  readonly stacked: readonly StackedParam[];
  /** checkpoint tensors that are not parameters here (rotary caches, a tied head's copy) */
  readonly skip?: readonly RegExp[];
}

export interface WeightSource {
  /** where the tensors come from (a model folder), for error messages */
  readonly origin: string;
  names(): readonly string[];
  tensor(name: string): SourceTensor;
}

export interface LoadReport {
  /** checkpoint tensor → parameter (and shard) it filled */
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
  const params = model.parameters();
  const loaded = new Map<string, string>();
  const skipped: string[] = [];
  const unused: string[] = [];
  for (const name of source.names()) {
    if (rules.skip?.some((r) => r.test(name))) {
      skipped.push(name);
      continue;
    }
    const stacked = rules.stacked.find((m) => name.includes(m.checkpoint) && params.has(name.replace(m.checkpoint, m.param)));
    const paramName = stacked ? name.replace(stacked.checkpoint, stacked.param) : name;
    const p = params.get(paramName);
    if (!p) {
      unused.push(name);
      continue;
    }
    const src = source.tensor(name);
    p.loader(p, src, stacked?.shard);
    loaded.set(name, stacked ? `${paramName}[${stacked.shard}]` : paramName);
  }
  const missing: string[] = [];
  for (const p of params.values()) {
    const shards = p.missingShards;
    if (shards.length === p.shards.length) missing.push(p.name);
    else if (shards.length > 0) missing.push(`${p.name} (shards ${shards.join(", ")})`);
  }
  if (unused.length > 0 || missing.length > 0) {
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`parameters not filled by any checkpoint tensor: ${missing.join(", ")}`);
    if (unused.length > 0) parts.push(`checkpoint tensors not consumed by any parameter: ${unused.join(", ")}`);
    throw new KilnError(missing.length > 0 ? "TENSOR_MISSING" : "TENSOR_UNUSED", `weight loading from ${source.origin} failed; ${parts.join("; ")}`);
  }
  return { loaded, skipped };
}
