/**
 * Quantized checkpoints through the real CLI: `kiln run` generates from one, and a malformed one
 * (or a --quantization that names another method) exits 2 with one `kiln: error [CODE]` line.
 * Starts processes: belongs in the slow tier (SLOW in vitest.config.ts).
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { editWeights } from "../fixture_copy.ts";
import { writeQuantizedFixture, type QuantizedFixture } from "./quantize_fixture.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);

async function kilnRun(dir: string, extra: readonly string[] = []): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["bin/kiln.js", "run", "-m", dir, "-p", "hi", "--max-tokens", "2", ...extra], { cwd: ROOT, timeout: 60_000 });
    return { status: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: unknown; stderr?: unknown };
    return { status: typeof err.code === "number" ? err.code : -1, stdout: String(err.stdout), stderr: String(err.stderr) };
  }
}

describe("kiln run on quantized checkpoints", () => {
  const made: QuantizedFixture[] = [];
  afterAll(() => made.forEach((m) => m.cleanup()));

  it("generates from an AWQ checkpoint with --quantization awq; naming another method exits 2", async () => {
    const fx = writeQuantizedFixture("llama", { kind: "awq", groupSize: 32 });
    made.push(fx);
    const r = await kilnRun(fx.quantized, ["--quantization", "awq"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const other = await kilnRun(fx.quantized, ["--quantization", "gptq"]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/^kiln: error \[QUANT_INVALID\]: .*gptq/m);
  });

  it("a malformed checkpoint exits 2 naming the tensor, without a stack trace", async () => {
    const fx = writeQuantizedFixture("llama", { kind: "gptq", bits: 4, groupSize: 32, sym: true, descAct: false });
    made.push(fx);
    editWeights(fx.quantized, (ts) => ts.filter((t) => t.name !== "model.layers.0.mlp.down_proj.scales"));
    const r = await kilnRun(fx.quantized);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^kiln: error \[QUANT_INVALID\]: .*model\.layers\.0\.mlp\.down_proj\.scales/m);
    expect(r.stderr).not.toContain("    at ");
  });
});
