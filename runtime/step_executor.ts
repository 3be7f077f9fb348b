/**
 * The contract between the model runner and a backend: run one packed step over the backend's
 * own KV cache and hand back the wanted logits on the host. The CPU backend implements it in
 * runtime/cpu/; the CUDA backend keeps weights, KV pool and activations in device memory.
 */
import type { Graph } from "../compiler/ir.ts";
import type { DeviceSamplingRow } from "./device_sampling.ts";
import type { WeightData } from "../models/dsl/parameter.ts";
import type { StatePool } from "./engine/state_slots.ts";
import type { StepInputs } from "./kv_cache.ts";

export interface StepExecutor {
  readonly numBlocks: number;
  readonly blockSize: number;
  /** the slots holding mamba-like layers' per-sequence state; absent for attention-only graphs */
  readonly statePool?: StatePool | undefined;
  /** logits [S, vocab], row-major, for the rows in step.logitsIndices */
  run(step: StepInputs): Float32Array;
  /**
   * Queues the step on the device with row s of its logits sampled there with rows[s], as the
   * host sampler would with the same uniform, and returns at once; the collector it returns
   * waits for the device and gives the S token ids. The host may do other work in between, but
   * must not run another step before collecting. Backends without it (the CPU) leave sampling
   * to the host.
   */
  readonly launchSample?: ((step: StepInputs, rows: readonly DeviceSamplingRow[]) => () => Int32Array) | undefined;
  /** releases backend resources (device memory, modules); the CPU backend has none */
  dispose(): void;
}

export const BACKENDS = ["cpu", "cuda"] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface ExecutorOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  /** state slots for graphs with mamba-like layers: sequences that can run at once (default 32) */
  readonly numStateSlots?: number;
}

export const DEFAULT_STATE_SLOTS = 32;

export type ExecutorFactory = (
  graph: Graph,
  weights: ReadonlyMap<string, WeightData>,
  opts: ExecutorOptions,
) => StepExecutor;

/** What the engine asks a device backend to size the KV pool from its memory. */
export interface KvPlanRequest {
  readonly graph: Graph;
  readonly weights: ReadonlyMap<string, WeightData>;
  readonly blockSize: number;
  /** share of the device's total memory the engine may hold, in (0, 1] */
  readonly utilization: number;
  /** the scheduler's tokens per step: they bound the activations (and the logits rows, prompt logprobs included) */
  readonly maxNumBatchedTokens: number;
  readonly numStateSlots: number;
  /** blocks one maxModelLen sequence needs; fewer is an error */
  readonly needBlocks: number;
}

export interface KvPlan {
  readonly numBlocks: number;
  /** bytes the pool takes */
  readonly kvBytes: number;
  /** where the device memory goes, for the startup log */
  readonly description: string;
}

/** A backend with device memory of its own (CUDA) sizes the KV pool from what the device has. */
export type KvPlanner = (req: KvPlanRequest) => KvPlan;
