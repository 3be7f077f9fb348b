/**
 * --kv-cache-dtype fp8 (vLLM's spelling for an e4m3 KV cache): the flag takes it, --dtype does
 * not (fp8 weights are not this path), and the CPU backend refuses anything but an f32 cache
 * with a typed error before a model loads.
 */
import { InvalidArgumentError } from "commander";
import { describe, expect, it } from "vitest";
import { cudaDtypeFlag, kvCacheDtypeFlag, registerCudaFromFlags } from "../../cli/options.ts";
import { compileArtifact, parseDtype, parseKvDtype } from "../../runtime/io/artifact.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { fixture } from "../fixture_copy.ts";

describe("--kv-cache-dtype fp8", () => {
  it("the KV flag takes fp8 and fp8_e4m3 beside the float spellings; --dtype refuses fp8", () => {
    const kv = kvCacheDtypeFlag("--kv-cache-dtype");
    expect(kv("fp8")).toBe("fp8");
    expect(kv(" FP8_E4M3 ")).toBe("fp8");
    expect(kv("bfloat16")).toBe("bf16");
    expect(kv("auto")).toBe("auto");
    for (const bad of ["fp8_e5m2", "int8", ""]) {
      expect(() => kv(bad), bad).toThrow(InvalidArgumentError);
      expect(() => kv(bad), bad).toThrow(/--kv-cache-dtype must be auto, float32, bfloat16, float16 or fp8/);
    }
    expect(() => cudaDtypeFlag("--dtype")("fp8")).toThrow(/--dtype must be auto, float32, bfloat16 or float16/);
  });

  it("kiln compile's spellings: fp8 is a KV storage, not a weight dtype", () => {
    expect(parseKvDtype("fp8")).toBe("fp8");
    expect(parseKvDtype("bf16")).toBe("bf16");
    expect(() => parseKvDtype("fp8_e5m2")).toThrow(/KV cache dtype 'fp8_e5m2' is not one of f32, bf16, f16, fp8/);
    expect(() => parseDtype("fp8")).toThrow(/dtype 'fp8' is not one of f32, bf16, f16/);
  });

  it("the CPU backend refuses an fp8 cache with INVALID_ARGUMENT", async () => {
    const flags = { backend: "cpu", dtype: "auto", kvCacheDtype: "fp8" } as const;
    const err = await registerCudaFromFlags(flags, "auto").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKilnError(err) && err.code === "INVALID_ARGUMENT").toBe(true);
    await expect(compileArtifact({ modelDir: fixture("llama"), outDir: "unused", target: { kind: "cpu" }, kvCacheDtype: "fp8" })).rejects.toThrow(
      /KV cache in f32, not fp8/,
    );
  });
});
