// An engine artifact runs the program it stores: --dtype or --kv-cache-dtype asking for another
// storage is refused with INVALID_ARGUMENT instead of being silently ignored; auto, or the
// artifact's own storage, is accepted.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkArtifactDtypes } from "../../cli/options.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";

function artifact(manifest: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-artifact-flags-"));
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return dir;
}

function refusal(f: () => void): string {
  try {
    f();
  } catch (e) {
    if (isKilnError(e, "INVALID_ARGUMENT")) return e.message;
    throw e;
  }
  throw new Error("not refused");
}

describe("dtype flags on an engine artifact", () => {
  it("accepts auto and the stored storage", () => {
    const dir = artifact({ dtype: "bf16", kvCacheDtype: "fp8" });
    expect(() => checkArtifactDtypes(dir, { dtype: "auto", kvCacheDtype: "auto" })).not.toThrow();
    expect(() => checkArtifactDtypes(dir, { dtype: "bf16", kvCacheDtype: "fp8" })).not.toThrow();
  });

  it("refuses another weight or KV storage, naming the stored one", () => {
    const dir = artifact({ dtype: "bf16", kvCacheDtype: "fp8" });
    expect(refusal(() => checkArtifactDtypes(dir, { dtype: "f32", kvCacheDtype: "auto" }))).toMatch(/weights in bf16.*drop --dtype f32, or recompile/);
    expect(refusal(() => checkArtifactDtypes(dir, { dtype: "auto", kvCacheDtype: "bf16" }))).toMatch(/KV cache in fp8.*drop --kv-cache-dtype bf16/);
  });

  it("an artifact without kvCacheDtype holds its KV cache as its weights", () => {
    const dir = artifact({ dtype: "f16" });
    expect(() => checkArtifactDtypes(dir, { dtype: "auto", kvCacheDtype: "f16" })).not.toThrow();
    expect(refusal(() => checkArtifactDtypes(dir, { dtype: "auto", kvCacheDtype: "fp8" }))).toMatch(/KV cache in f16/);
  });
});
