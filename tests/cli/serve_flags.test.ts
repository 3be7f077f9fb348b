/** `kiln serve`'s --backend and --gpu-memory-utilization flags, and the KV pool in its startup lines. */
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { backendFlag, cudaDtypeFlag, cudaWeightDtype, gpuMemoryUtilizationFlag, kvCacheDtypeFlag } from "../../cli/options.ts";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileArtifact, parseTarget } from "../../runtime/io/artifact.ts";
import { copyFixture, editConfig, fixture } from "../fixture_copy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("kiln serve flags", () => {
  it("--gpu-memory-utilization takes a fraction f with 0 < f ≤ 1", () => {
    expect(gpuMemoryUtilizationFlag("0.9")).toBe(0.9);
    expect(gpuMemoryUtilizationFlag("1")).toBe(1);
    for (const bad of ["0", "-0.5", "1.01", "abc", "", "NaN"]) expect(() => gpuMemoryUtilizationFlag(bad), bad).toThrow(InvalidArgumentError);
  });

  it("--backend takes cpu or cuda", () => {
    expect(backendFlag("cuda")).toBe("cuda");
    expect(() => backendFlag("tpu")).toThrow(/cpu or cuda/);
  });

  it("--dtype takes auto, float32, bfloat16 or float16 (and their short names); fp8 is for the KV cache only", () => {
    const f = cudaDtypeFlag("--dtype");
    expect(["auto", "float32", "FP32", "f32", "bfloat16", "bf16", "float16", "half", "fp16"].map(f)).toEqual(["auto", "f32", "f32", "f32", "bf16", "bf16", "f16", "f16", "f16"]);
    for (const bad of ["fp8", "int8", ""]) expect(() => f(bad), bad).toThrow(/--dtype must be auto, float32, bfloat16 or float16/);
  });

  it("--kv-cache-dtype takes the same, and fp8 (e4m3, vLLM's spelling)", () => {
    const f = kvCacheDtypeFlag("--kv-cache-dtype");
    expect(["auto", "float32", "bf16", "half", "fp8", "fp8_e4m3"].map(f)).toEqual(["auto", "f32", "bf16", "f16", "fp8", "fp8"]);
    for (const bad of ["int8", "fp8_e5m2", ""]) expect(() => f(bad), bad).toThrow(/--kv-cache-dtype must be auto, float32, bfloat16, float16 or fp8/);
  });

  it("--dtype auto means f16 for a folder whose config declares float16 weights, and stays auto otherwise", () => {
    const dir = copyFixture("llama");
    editConfig(dir, (cfg) => {
      cfg["dtype"] = "float16";
    });
    expect(cudaWeightDtype("auto", dir)).toBe("f16");
    expect(cudaWeightDtype("bf16", dir)).toBe("bf16");
    expect(cudaWeightDtype("auto", fixture("llama"))).toBe("auto"); // float32: the backend's auto decides
    expect(cudaWeightDtype("auto", fixture("llama-bf16"))).toBe("auto");
    expect(cudaWeightDtype("auto", undefined)).toBe("auto");
  });

  it("--dtype auto means f16 for an engine artifact stored in f16, whatever its config.json says", async () => {
    const root = mkdtempSync(join(tmpdir(), "kiln-artifact-dtype-"));
    for (const dtype of ["f16", "bf16"] as const) {
      const out = join(root, dtype);
      await compileArtifact({ modelDir: fixture("llama"), outDir: out, target: parseTarget("cuda:sm_90"), dtype, maxModelLen: 64 });
      expect(cudaWeightDtype("auto", out), dtype).toBe(dtype === "f16" ? "f16" : "auto"); // bf16 weights load as bf16: the backend's auto sees them
    }
  }, 60_000);

  it("--kv-cache-dtype on the CPU backend is refused with a typed error before the model loads", async () => {
    const err = await promisify(execFile)(process.execPath, ["--import", "tsx", "cli/kiln.ts", "serve", "--kv-cache-dtype", "bfloat16"], { cwd: ROOT }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(/\[INVALID_ARGUMENT\].*apply to --backend cuda/);
  }, 30_000);

  it("an out-of-range fraction stops the command before the model loads", async () => {
    const err = await promisify(execFile)(process.execPath, ["--import", "tsx", "cli/kiln.ts", "serve", "--gpu-memory-utilization", "1.5"], { cwd: ROOT }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toMatch(/0 < f ≤ 1 \(got '1\.5'\)/);
  }, 30_000);

  it("the startup lines say where the model runs and how large the KV pool is", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/kiln.ts", "serve", "--port", "0", "--kv-cache-memory-bytes", "6MiB", "--log-level", "error"], {
      cwd: ROOT,
    });
    try {
      const out = await new Promise<string>((resolve, reject) => {
        let text = "";
        child.stdout.on("data", (d: Buffer) => {
          text += d.toString();
          if (text.includes("try: curl")) resolve(text);
        });
        child.once("exit", (code) => reject(new Error(`kiln serve exited with ${code}: ${text}`)));
      });
      expect(out).toMatch(/kiln is serving 'fortune-llama' at http:\/\/127\.0\.0\.1:\d+\/v1 on cpu\n/);
      expect(out).toContain("KV pool: 64 blocks of 16 tokens (1024 tokens)\n");
    } finally {
      child.kill("SIGTERM");
    }
  }, 30_000);
});
