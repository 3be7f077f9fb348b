/**
 * The model runner: a compiled model and its weights on one backend. The engine hands it the
 * chunks of one step; it packs them and returns the wanted logits.
 */
import type { Graph } from "../../compiler/ir.ts";
import { compile } from "../../compiler/pipeline.ts";
import type { WeightData } from "../../models/dsl/parameter.ts";
import { loadNative } from "./cpu/native.ts";
import { ProgramExecutor } from "./cpu/program_executor.ts";
import { KilnError } from "../engine/errors.ts";
import type { DeviceSamplingRow } from "../engine/device_sampling.ts";
import { packStep, type SeqChunk } from "./kv_cache.ts";
import type { StatePool } from "../engine/state_slots.ts";
import type { Backend, BackendName, CompiledModel, KernelOrigin, KvPlanner, StepExecutor } from "./step_executor.ts";

export interface RunnerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  /** sequences with mamba-like state that can run at once (default DEFAULT_STATE_SLOTS) */
  readonly numStateSlots?: number;
  readonly backend?: BackendName;
}

// The CPU runs the compiled program: fused generated-C kernels plus native GEMM and attention.
// (tests/reference/, which interprets the unfused graph, is the reference in tests.)
const cpuBackend: Backend = {
  programOptions: () => ({ target: { kind: "cpu" }, dtype: "f32" }),
  create: (compiled, weights, opts) => new ProgramExecutor(compiled, weights, loadNative(), opts),
};

/** Backends register here; the CUDA backend adds itself when it is loaded. */
export const BACKEND_REGISTRY = new Map<BackendName, Backend>([["cpu", cpuBackend]]);

/** The registered backend called `name`. */
export function backendNamed(name: BackendName): Backend {
  const backend = BACKEND_REGISTRY.get(name);
  if (!backend) throw new KilnError("INVALID_ARGUMENT", `backend '${name}' is not available`);
  return backend;
}

/** Compiles a traced graph for the backend called `name`, with the options its settings give. */
export function compileFor(name: BackendName, graph: Graph, weights: ReadonlyMap<string, WeightData>): CompiledModel {
  return compile(graph, backendNamed(name).programOptions(weights));
}

/** Backends that size the KV pool from device memory register a planner here (the CPU has none). */
export const KV_PLANNERS = new Map<BackendName, KvPlanner>();

export class ModelRunner {
  private readonly executor: StepExecutor;
  /** Queues a step sampled on the device; the collector waits for its token ids. Absent when the backend cannot. */
  readonly launchSample: ((chunks: readonly SeqChunk[], rows: readonly DeviceSamplingRow[]) => () => Int32Array) | undefined;

  constructor(
    readonly compiled: CompiledModel,
    weights: ReadonlyMap<string, WeightData>,
    readonly vocabSize: number,
    opts: RunnerOptions,
  ) {
    const executor = (this.executor = backendNamed(opts.backend ?? "cpu").create(compiled, weights, opts));
    const launch = executor.launchSample;
    this.launchSample = launch === undefined ? undefined : (chunks, rows) => launch.call(executor, packStep(chunks, executor.blockSize), rows);
  }

  /** Compiles `graph` for the runner's backend (tests and benchmarks; the engine compiles once, in createEngine). */
  static forGraph(graph: Graph, weights: ReadonlyMap<string, WeightData>, vocabSize: number, opts: RunnerOptions): ModelRunner {
    return new ModelRunner(compileFor(opts.backend ?? "cpu", graph, weights), weights, vocabSize, opts);
  }

  /** the optimized graph the compiled program computes */
  get graph(): Graph {
    return this.compiled.graph;
  }

  /** where the program's kernels came from (an artifact's binary, or built in this process) */
  get kernelOrigin(): KernelOrigin | undefined {
    return this.executor.kernelOrigin;
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
