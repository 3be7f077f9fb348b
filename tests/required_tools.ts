/**
 * Test support: the tools the slow tier needs (nvcc for the CUDA kernels, g++ to build the CUDA
 * emulator). Where one is missing, the tests that need it fail and say what to do; they never skip
 * silently, so a CI machine without the toolkit cannot pass the slow tier by running nothing.
 */
import { execFileSync } from "node:child_process";

export type SlowTierTool = "nvcc" | "g++";

const WHAT: Record<SlowTierTool, string> = {
  nvcc: "the CUDA toolkit",
  "g++": "g++ to build the CUDA emulator",
};

const found = new Map<SlowTierTool, boolean>();
function onPath(tool: SlowTierTool): boolean {
  let ok = found.get(tool);
  if (ok === undefined) {
    try {
      execFileSync(tool, ["--version"], { stdio: "ignore" });
      ok = true;
    } catch {
      ok = false;
    }
    found.set(tool, ok);
  }
  return ok;
}

/** Throws, naming the first of `tools` not on the PATH and what to install, unless all are there. */
export function requireTools(...tools: readonly SlowTierTool[]): void {
  const missing = tools.find((t) => !onPath(t));
  if (missing !== undefined) {
    throw new Error(`${missing} not found on PATH: the slow tier needs ${WHAT[missing]}; install it or run npm run test:fast`);
  }
}

/** The CUDA emulator needs g++ to build and nvcc behind its NVRTC. */
export const requireEmulatorTools = (): void => requireTools("g++", "nvcc");
