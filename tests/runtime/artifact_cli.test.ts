/** `kiln compile` then `kiln run --model <artifact>`: the embedded model's reference greedy text. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
  prompt: string;
  greedy: string;
}[];

function kiln(args: string[]): string {
  return execFileSync(process.execPath, ["--import", "tsx", "cli/kiln.ts", ...args], { cwd: ROOT, encoding: "utf8" });
}

describe("kiln compile + kiln run", () => {
  it("compiles the fortune model and runs the artifact with the reference greedy text", () => {
    const out = join(mkdtempSync(join(tmpdir(), "kiln-cli-")), "fortune");
    const summary = kiln(["compile", "assets/fortune-llama", "--target", "cpu", "--max-model-len", "512", "--max-num-seqs", "8", "-o", out]);
    expect(summary).toMatch(/per decoder layer: 18 kernels before fusion, 9 after/);
    expect(summary).toMatch(/size: [\d.]+ MiB/);
    const ref = refs[0]!;
    const text = kiln(["run", "--model", out, "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "24", "--ignore-eos", "--no-skip-special-tokens"]);
    expect(text).toBe(ref.greedy + "\n");

    // kiln verify hashes the weights too; an altered weight is found there (the load checks its size only)
    expect(kiln(["verify", out])).toMatch(/all \d+ files match the manifest/);
    const weights = join(out, "weights.safetensors");
    const bytes = readFileSync(weights);
    bytes[bytes.length - 5]! ^= 0x01;
    writeFileSync(weights, bytes);
    try {
      kiln(["verify", out]);
      throw new Error("expected verify to fail");
    } catch (e) {
      const err = e as { status: number; stdout: string };
      expect(err.status).toBe(1);
      expect(err.stdout).toMatch(/BAD {2}weights\.safetensors \(\d+ bytes\): SHA-256 differs from the manifest/);
    }

    // a corrupted artifact is refused with one clear line and exit status 2
    const manifest = join(out, "manifest.json");
    writeFileSync(manifest, readFileSync(manifest, "utf8").replace('"formatVersion": 2', '"formatVersion": 99'));
    try {
      kiln(["run", "--model", out, "--prompt", "x"]);
      throw new Error("expected a refusal");
    } catch (e) {
      const err = e as { status: number; stderr: string };
      expect(err.status).toBe(2);
      expect(err.stderr).toMatch(/kiln: error \[CONFIG_INVALID\]: engine artifact .*format version 99/);
    }
  });
});
