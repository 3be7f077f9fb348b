// Every CUDA source compiles with nvcc to a sm_90 CUBIN, so a kernel that does not compile fails
// CI even where there is no GPU (NVRTC itself is exercised on the GPU machine and, through a
// stand-in that calls nvcc with NVRTC's include rules, by emulated_backend.test.ts).
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { KERNEL_FILES } from "../../runtime/backends/cuda/kernel_catalog.ts";
import { requireTools } from "../required_tools.ts";
import { cudaSources, KERNELS_DIR } from "./emulator/build_emulator.ts";

function nvccVersion(): string | undefined {
  try {
    return execFileSync("nvcc", ["--version"], { encoding: "utf8" }).trim().split("\n").pop();
  } catch {
    return undefined;
  }
}

const version = nvccVersion();
const out = mkdtempSync(join(tmpdir(), "kiln-nvcc-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("CUDA sources", () => {
  it("the catalog lists every .cu file in kernels/cuda", () => {
    expect([...KERNEL_FILES].sort()).toEqual(cudaSources());
  });

  it(`nvcc -arch=sm_90 -cubin compiles every kernel (${version ?? "nvcc not found"})`, async () => {
    requireTools("nvcc");
    const run = promisify(execFile);
    const results = await Promise.allSettled(
      cudaSources().map((f) =>
        run("nvcc", ["-arch=sm_90", "-cubin", "-std=c++17", "-Werror", "all-warnings", "-o", join(out, `${f}.cubin`), join(KERNELS_DIR, f)]),
      ),
    );
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [`${cudaSources()[i]}: ${String((r.reason as { stderr?: string }).stderr ?? r.reason)}`] : []));
    expect(failures).toEqual([]);
  });
});
