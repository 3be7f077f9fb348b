/**
 * An nvcc compile of every kernel the compiler generates for every fixture (tests/fixtures/index.ts)
 * in every storage type, so a generated kernel that does not compile fails CI even without a GPU.
 * All kernels of a model (bf16, f16 and f32 flavours) go into one translation unit: one nvcc run
 * per distinct module. Slow tier: needs nvcc, and fails saying so where it is missing.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { renderCudaModule } from "../../compiler/render/cuda.ts";
import { findCompiler, nvccFlags } from "../../compiler/toolchain.ts";
import type { LoweredKernel } from "../../compiler/kernel_ir.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { FIXTURES } from "../fixtures/index.ts";
import { requireTools } from "../required_tools.ts";
import { FLOAT_DTYPES } from "../../compiler/dtype.ts";

const SM90 = { kind: "cuda", arch: "sm_90" } as const;
const out = mkdtempSync(join(tmpdir(), "kiln-nvcc-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

async function kernelsOf(dir: string, dtype: (typeof FLOAT_DTYPES)[number]): Promise<readonly LoweredKernel[]> {
  const { graph } = await loadModel(dir);
  return compile(graph, { target: SM90, dtype }).program.kernels;
}

describe("generated CUDA kernels", () => {
  it("nvcc compiles every kernel of every fixture, in every storage type", async () => {
    requireTools("nvcc");
    const nvcc = findCompiler("nvcc");
    const run = promisify(execFile);
    // models of the same shapes and constants generate the same kernels: compile each module once
    const modules = new Map<string, string>();
    for (const { name, dir } of FIXTURES) {
      const kernels = (await Promise.all(FLOAT_DTYPES.map((d) => kernelsOf(dir, d)))).flat();
      const src = renderCudaModule(kernels);
      if (![...modules.values()].includes(src)) modules.set(name, src);
    }
    const results = await Promise.allSettled(
      [...modules].map(async ([name, src]) => {
        const file = join(out, `${name}.cu`);
        writeFileSync(file, src);
        await run(nvcc.command, [...nvccFlags("sm_90"), "-o", join(out, `${name}.cubin`), file]);
        return name;
      }),
    );
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [`${[...modules.keys()][i]}: ${String(Reflect.get(r.reason, "stderr") ?? r.reason)}`] : []));
    expect(failures).toEqual([]);
    expect(modules.size).toBeGreaterThanOrEqual(3);
  }, 300_000);
});
