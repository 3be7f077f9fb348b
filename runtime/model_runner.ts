/**
 * The model runner: a traced graph and its weights on one backend. The engine hands it the
 * chunks of one step; it packs them and returns the wanted logits.
 */
import type { Graph } from "../compiler/ir.ts";
import type { WeightData } from "../models/dsl/parameter.ts";
import { loadNative } from "./cpu/native.ts";
import { ProgramExecutor } from "./cpu/program_executor.ts";
import { KilnError } from "./errors.ts";
import type { DeviceSamplingRow } from "./device_sampling.ts";
import { packStep, type SeqChunk } from "./kv_cache.ts";
import type { StatePool } from "./engine/state_slots.ts";
import type { BackendName, ExecutorFactory, KvPlanner, StepExecutor } from "./step_executor.ts";

export interface RunnerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  /** sequences with mamba-like state that can run at once (default DEFAULT_STATE_SLOTS) */
  readonly numStateSlots?: number;
  readonly backend?: BackendName;
}

// The CPU runs the compiled program: fused generated-C kernels plus native GEMM and attention.
// (runtime/cpu/executor.ts, which interprets the unfused graph, stays as the reference in tests.)
const cpuFactory: ExecutorFactory = (graph, weights, opts) => ProgramExecutor.fromGraph(graph, weights, loadNative(), opts);

/** Backends register here; the CUDA backend adds itself when it is loaded. */
export const EXECUTOR_FACTORIES = new Map<BackendName, ExecutorFactory>([["cpu", cpuFactory]]);

/** Backends that size the KV pool from device memory register a planner here (the CPU has none). */
export const KV_PLANNERS = new Map<BackendName, KvPlanner>();

export class ModelRunner {
  private readonly executor: StepExecutor;
  /** Queues a step sampled on the device; the collector waits for its token ids. Absent when the backend cannot. */
  readonly launchSample: ((chunks: readonly SeqChunk[], rows: readonly DeviceSamplingRow[]) => () => Int32Array) | undefined;

  constructor(
    readonly graph: Graph,
    weights: ReadonlyMap<string, WeightData>,
    readonly vocabSize: number,
    opts: RunnerOptions,
  ) {
    const backend = opts.backend ?? "cpu";
    const factory = EXECUTOR_FACTORIES.get(backend);
    if (!factory) throw new KilnError("INVALID_ARGUMENT", `backend '${backend}' is not available`);
    const executor = (this.executor = factory(graph, weights, opts));
    const launch = executor.launchSample;
    this.launchSample = launch === undefined ? undefined : (chunks, rows) => launch.call(executor, packStep(chunks, executor.blockSize), rows);
  }

  get numBlocks(): number {
    return this.executor.numBlocks;
  }

  get blockSize(): number {
    return this.executor.blockSize;
  }

  /** the backend's state slots when the model has mamba-like layers (hybrid or attention-free) */
  get statePool(): StatePool | undefined {
    return this.executor.statePool;
  }

  /** Runs one step over the given chunks; logits [S, vocab] for the rows the chunks asked for. */
  execute(chunks: readonly SeqChunk[]): Float32Array {
    return this.executor.run(packStep(chunks, this.executor.blockSize));
  }

  dispose(): void {
    this.executor.dispose();
  }
}
