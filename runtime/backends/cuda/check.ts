/**
 * The one place CUDA results are checked. Every driver, NVRTC and cuBLASLt call's status goes
 * through `check`, which throws a CudaError (KilnError CUDA_ERROR) carrying the call, the status
 * code, the library's own name and text for it, and, for a failed compile, the NVRTC log.
 */
import { KilnError } from "../../engine/errors.ts";

export type CudaLibraryName = "libcuda" | "libnvrtc" | "libcublasLt";

/** How a library names its status codes (each binding supplies one). */
export interface StatusText {
  readonly library: CudaLibraryName;
  /** e.g. { name: "CUDA_ERROR_OUT_OF_MEMORY", text: "out of memory" } */
  describe(status: number): { readonly name: string; readonly text: string };
}

export class CudaError extends KilnError {
  constructor(
    readonly library: CudaLibraryName,
    readonly call: string,
    readonly status: number,
    readonly statusName: string,
    readonly statusText: string,
    readonly log: string | undefined,
  ) {
    const head = `${call} failed: ${statusName} (${status}): ${statusText}`;
    super("CUDA_ERROR", log === undefined || log.trim() === "" ? head : `${head}\n${log.trimEnd()}`);
    this.name = "CudaError";
  }
}

/**
 * Throws a CudaError unless `status` is 0 (success in all three libraries). `call` names the call
 * and, where it helps, its subject ("nvrtcCompileProgram(paged_attention.cu)"); `log` is read only
 * on failure.
 */
export function check(status: number, call: string, text: StatusText, log?: () => string): void {
  if (status === 0) return;
  let name = `status ${status}`;
  let detail = "(no description)";
  try {
    const d = text.describe(status);
    name = d.name;
    detail = d.text;
  } catch {
    // describing must never hide the failure being reported
  }
  let logText: string | undefined;
  if (log) {
    try {
      logText = log();
    } catch (e) {
      logText = `(the log could not be read: ${e instanceof Error ? e.message : String(e)})`;
    }
  }
  throw new CudaError(text.library, call, status, name, detail, logText);
}
