/**
 * Makes "cuda" a backend of the model runner. Registering touches no GPU: the first executor the
 * runner asks for opens the device (driver, NVRTC, kernels, cuBLASLt) and later executors share it.
 * The returned handle owns that shared backend; dispose it when done. Opening fails with
 * KilnError CUDA_UNAVAILABLE, naming every library path tried, where there is no usable driver.
 */
import { EXECUTOR_FACTORIES } from "../model_runner.ts";
import type { ExecutorFactory } from "../step_executor.ts";
import { CudaBackend, type BackendOpenOptions } from "./backend.ts";
import { CudaExecutor, type WeightDtype } from "./executor.ts";
import type { AttentionTuning } from "./node_kernels.ts";

export interface CudaRegistration {
  /** the shared backend, opened on first use */
  backend(): CudaBackend;
  /** unregisters (restoring an earlier registration) and disposes the shared backend; executors made from it must be disposed first */
  dispose(): void;
}

export interface CudaBackendSettings extends BackendOpenOptions {
  readonly attention?: AttentionTuning;
  /** weight precision of the executors (default f32) */
  readonly weightDtype?: WeightDtype;
}

export function registerCudaBackend(opts: CudaBackendSettings = {}): CudaRegistration {
  let backend: CudaBackend | undefined;
  const get = (): CudaBackend => (backend ??= CudaBackend.open(opts));
  const previous = EXECUTOR_FACTORIES.get("cuda");
  const factory: ExecutorFactory = (graph, weights, o) =>
    new CudaExecutor(graph, weights, get(), {
      ...o,
      ...(opts.attention !== undefined ? { attention: opts.attention } : {}),
      ...(opts.weightDtype !== undefined ? { weightDtype: opts.weightDtype } : {}),
    });
  EXECUTOR_FACTORIES.set("cuda", factory);
  return {
    backend: get,
    dispose: () => {
      // registrations nest: the one made before this one is back in place
      if (EXECUTOR_FACTORIES.get("cuda") === factory) {
        if (previous) EXECUTOR_FACTORIES.set("cuda", previous);
        else EXECUTOR_FACTORIES.delete("cuda");
      }
      const b = backend;
      backend = undefined;
      b?.dispose();
    },
  };
}
