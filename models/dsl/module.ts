/**
 * The DSL's Module: every module is built with the checkpoint prefix it lives under
 * (e.g. `model.layers.3.self_attn.qkv_proj`), declares its parameters under that prefix and
 * records its ops with the prefix as their scope, so trace errors and weight reports name it.
 */
import type { StorageDType } from "../../compiler/ir.ts";
import type { GraphBuilder, Tensor } from "../../compiler/trace.ts";
import { Parameter, defaultLoader, type WeightLoader } from "./parameter.ts";
import type { QuantizationConfig } from "./quantization/config.ts";
import { PackedParameter } from "./quantization/packed_parameter.ts";

/** Tensor-parallel placement. Only size 1 runs today; the shard math is already in the layers. */
export interface ParallelConfig {
  readonly tpSize: number;
  readonly tpRank: number;
}

export const SINGLE_DEVICE: ParallelConfig = { tpSize: 1, tpRank: 0 };

/** Build-time settings every module of a model shares. */
export interface ModelContext {
  readonly parallel: ParallelConfig;
  /** how matrix weights are kept in memory (norm weights and biases are always f32) */
  readonly weightStorage: StorageDType;
  /**
   * the checkpoint's quantization (config.json's quantization_config): the parallel linear layers
   * ask it for their linear method; absent for a float checkpoint
   */
  readonly quantization?: QuantizationConfig | undefined;
}

/** Where a checkpoint tensor goes: a parameter, or a quantized layer's packed tensor. */
export type LoadTarget = Parameter | PackedParameter;

export function joinPrefix(prefix: string, name: string): string {
  return prefix === "" ? name : `${prefix}.${name}`;
}

export abstract class Module {
  constructor(readonly prefix: string) {}

  protected join(name: string): string {
    return joinPrefix(this.prefix, name);
  }

  protected param(
    name: string,
    shape: readonly number[],
    storage: StorageDType = "f32",
    loader: WeightLoader = defaultLoader,
    shards: readonly string[] = ["*"],
  ): Parameter {
    return new Parameter(this.join(name), shape, storage, shards, loader);
  }

  /** Records the ops built by `fn` under this module's prefix. */
  protected scoped<R>(graph: GraphBuilder, fn: () => R): R {
    return graph.withScope(this.prefix, fn);
  }

  /** The parameter node of `p` in the graph being traced. */
  protected use(graph: GraphBuilder, p: Parameter): Tensor {
    return graph.param(p.name, p.shape, p.storage);
  }

  /**
   * Runs once every checkpoint tensor is loaded (vLLM's process_weights_after_loading): a
   * quantized layer dequantizes its packed tensors into its weight here. Default: nothing.
   */
  processWeightsAfterLoading(): void {}

  /** Every parameter reachable from this module, by full checkpoint name (shared ones once). */
  parameters(): Map<string, Parameter> {
    const out = new Map<string, Parameter>();
    this.walk((v) => {
      if (v instanceof Parameter) out.set(v.name, v);
    });
    return out;
  }

  /**
   * Every destination of a checkpoint tensor, by name: the parameters a checkpoint fills (not the
   * derived ones, made after loading) and quantized layers' packed tensors.
   */
  loadTargets(): Map<string, LoadTarget> {
    const out = new Map<string, LoadTarget>();
    this.walk((v) => {
      if ((v instanceof Parameter && v.origin === "checkpoint") || v instanceof PackedParameter) out.set(v.name, v);
    });
    return out;
  }

  /** This module and every module under it, parents first. */
  modules(): Module[] {
    const out: Module[] = [];
    this.walk((v) => {
      if (v instanceof Module) out.push(v);
    });
    return out;
  }

  private walk(see: (v: Module | Parameter | PackedParameter) => void): void {
    const visit = (v: unknown, seen: Set<unknown>): void => {
      if (v === null || typeof v !== "object" || seen.has(v)) return;
      seen.add(v);
      if (v instanceof Parameter || v instanceof PackedParameter) {
        see(v);
      } else if (v instanceof Module) {
        see(v);
        for (const child of Object.values(v)) visit(child, seen);
      } else if (Array.isArray(v)) {
        for (const child of v) visit(child, seen);
      }
    };
    visit(this, new Set());
  }
}
