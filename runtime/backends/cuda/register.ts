/**
 * Makes "cuda" a backend of the model runner. Registering touches no GPU: the first executor the
 * runner asks for opens the device (driver, NVRTC, kernels, cuBLASLt) and later executors share it.
 * The returned handle owns that shared backend; dispose it when done. Opening fails with
 * KilnError CUDA_UNAVAILABLE, naming every library path tried, where there is no usable driver.
 * It also registers the KV planner that sizes an engine's pool from the device's free memory.
 */
import { BACKEND_REGISTRY, KV_PLANNERS } from "../model_runner.ts";
import type { Backend, KvPlanner } from "../step_executor.ts";
import { CudaBackend, type BackendOpenOptions } from "./backend.ts";
import { CudaExecutor, cudaProgramOptions } from "./executor.ts";
import { activationBytes, describeKvBudget, deviceWeightBytes, kvBudget, kvBytesPerBlock, requireBlocks, stateBytes } from "./memory_budget.ts";
import type { AttentionTuning } from "./node_kernels.ts";
import type { WeightData } from "../../../models/dsl/parameter.ts";
import type { FloatDtype, KvDtype } from "../../../compiler/dtype.ts";

export interface CudaRegistration {
  /** the shared backend, opened on first use */
  backend(): CudaBackend;
  /** unregisters (restoring an earlier registration) and disposes the shared backend; executors made from it must be disposed first */
  dispose(): void;
}

export interface CudaBackendSettings extends BackendOpenOptions {
  readonly attention?: AttentionTuning;
  /**
   * weight precision of the executors (default f32); "auto" follows the checkpoint: bf16 when it
   * stores any weight in bf16, else f32 (the loader widens f16 tensors to f32, so an f16
   * checkpoint asks for "f16" by name: `kiln serve --dtype auto` does so from its config.json)
   */
  readonly weightDtype?: FloatDtype | "auto";
  /** replay CUDA graphs for decode steps (default true); false is vLLM's enforce_eager */
  readonly cudaGraphs?: boolean;
  /** decode batch sizes graphs are captured for (default DEFAULT_CAPTURE_SIZES) */
  readonly captureSizes?: readonly number[];
  /** GEMMs of at most this many rows use the hand-written GEMV (0: always cuBLASLt) */
  readonly gemvMaxRows?: number;
  /** sample on the device when no logprobs are asked for (default true) */
  readonly deviceSampling?: boolean;
  /** how the KV cache is held (default and "auto": as the weights; fp8: e4m3) */
  readonly kvCacheDtype?: KvDtype | "auto";
}

export function registerCudaBackend(opts: CudaBackendSettings = {}): CudaRegistration {
  let backend: CudaBackend | undefined;
  const get = (): CudaBackend => (backend ??= CudaBackend.open(opts));
  const previous = BACKEND_REGISTRY.get("cuda");
  const weightDtypeFor = (weights: ReadonlyMap<string, WeightData>): FloatDtype =>
    opts.weightDtype === "auto" ? ([...weights.values()].some((w) => w.dtype === "bf16") ? "bf16" : "f32") : (opts.weightDtype ?? "f32");
  const kvDtypeFor = (weights: ReadonlyMap<string, WeightData>): KvDtype =>
    opts.kvCacheDtype === undefined || opts.kvCacheDtype === "auto" ? weightDtypeFor(weights) : opts.kvCacheDtype;
  const factory: Backend = {
    // the device's sm_XX: opening the backend here is what the executor would do next anyway
    programOptions: (weights) =>
      cudaProgramOptions(get().device.info.arch, {
        weightDtype: weightDtypeFor(weights),
        kvCacheDtype: kvDtypeFor(weights),
        ...(opts.cudaGraphs === false ? { captureSizes: [] } : opts.captureSizes !== undefined ? { captureSizes: opts.captureSizes } : {}),
      }),
    create: (compiled, weights, o) =>
      new CudaExecutor(compiled, weights, get(), {
        ...o,
        ...(opts.attention !== undefined ? { attention: opts.attention } : {}),
        ...(opts.cudaGraphs !== undefined ? { cudaGraphs: opts.cudaGraphs } : {}),
        ...(opts.gemvMaxRows !== undefined ? { gemvMaxRows: opts.gemvMaxRows } : {}),
        ...(opts.deviceSampling !== undefined ? { deviceSampling: opts.deviceSampling } : {}),
      }),
  };
  const planner: KvPlanner = (req) => {
    const b = get();
    const { graph, program } = req.compiled;
    const kvDtype = program.options.kvDtype ?? program.options.dtype;
    const capture = opts.cudaGraphs === false ? [] : (program.options.captureSizes ?? []);
    const budget = kvBudget({
      // measured before this engine's weights are uploaded: what is held now belongs to others
      memory: b.device.memInfo(),
      utilization: req.utilization,
      weightBytes: deviceWeightBytes(program, req.weights),
      stateBytes: stateBytes(graph.stateLayers, req.numStateSlots),
      activationBytes: activationBytes(req.compiled, {
        maxTokens: req.maxNumBatchedTokens,
        maxRows: req.maxNumBatchedTokens,
        multiprocessors: b.device.info.multiprocessors,
        graphRows: Math.max(0, ...capture),
      }),
      bytesPerBlock: kvBytesPerBlock(graph.kvLayers, req.blockSize, kvDtype),
    });
    requireBlocks(budget, req.needBlocks, `one sequence of maxModelLen tokens (blocks of ${req.blockSize})`);
    return { numBlocks: budget.numBlocks, kvBytes: (budget.numBlocks + 1) * budget.bytesPerBlock, description: describeKvBudget(budget) };
  };
  const previousPlanner = KV_PLANNERS.get("cuda");
  BACKEND_REGISTRY.set("cuda", factory);
  KV_PLANNERS.set("cuda", planner);
  return {
    backend: get,
    dispose: () => {
      // registrations nest: the one made before this one is back in place
      if (BACKEND_REGISTRY.get("cuda") === factory) {
        if (previous) BACKEND_REGISTRY.set("cuda", previous);
        else BACKEND_REGISTRY.delete("cuda");
      }
      if (KV_PLANNERS.get("cuda") === planner) {
        if (previousPlanner) KV_PLANNERS.set("cuda", previousPlanner);
        else KV_PLANNERS.delete("cuda");
      }
      const b = backend;
      backend = undefined;
      b?.dispose();
    },
  };
}
