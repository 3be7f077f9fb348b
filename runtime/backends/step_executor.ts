/**
 * The contract between the model runner and a backend: run one packed step over the backend's
 * own KV cache and hand back the wanted logits on the host. The CPU backend implements it in
 * runtime/backends/cpu/; the CUDA backend keeps weights, KV pool and activations in device memory.
 */
import type { Graph } from "../../compiler/ir.ts";
import type { Program, ProgramOptions } from "../../compiler/program.ts";
import type { DeviceSamplingRow } from "../engine/device_sampling.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import type { StatePool } from "../engine/state_slots.ts";
import type { StepInputs } from "./kv_cache.ts";

/**
 * What an executor runs: the compiled program, the optimized graph it computes, and, when it
 * comes from an engine artifact, the binary built from it ahead of time.
 */
export interface CompiledModel {
  readonly graph: Graph;
  readonly program: Program;
  /** an artifact's kernel module: its source, and the binary built from it when a compiler was at hand */
  readonly module?: StoredModule;
}

/** An artifact's kernels/module.{c,cu} and, when it was built, kernels/module.{so,cubin}. */
export interface StoredModule {
  /** kernels/module.{c,cu}: built from when there is no binary or it was built for another machine */
  readonly sourcePath: string;
  readonly binary?: {
    readonly path: string;
    /** the host (architecture and CPU model) or the CUDA sm_XX the binary was built for */
    readonly builtFor: string;
    readonly sha256: string;
  };
}

/** Where the program's kernels that an executor launches came from. */
export interface KernelOrigin {
  /** artifact: the stored binary as is; rebuilt: its stored source, compiled for this machine; compiled: built in this process */
  readonly origin: "artifact" | "rebuilt" | "compiled";
  /** SHA-256 of the binary loaded */
  readonly sha256: string;
  /** why the stored binary was not used, for the startup log */
  readonly note?: string;
}

export interface StepExecutor {
  /** the program's generated kernels this executor loaded (absent when it runs none) */
  readonly kernelOrigin?: KernelOrigin | undefined;
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

export type ExecutorFactory = (compiled: CompiledModel, weights: ReadonlyMap<string, WeightData>, opts: ExecutorOptions) => StepExecutor;

/**
 * A backend: what it compiles for (the target, and for CUDA the storage of weights and KV cache
 * and the capture sizes its settings ask for) and how it makes an executor for a compiled model.
 */
export interface Backend {
  programOptions(weights: ReadonlyMap<string, WeightData>): ProgramOptions;
  readonly create: ExecutorFactory;
}

/** What the engine asks a device backend to size the KV pool from its memory. */
export interface KvPlanRequest {
  readonly compiled: CompiledModel;
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
