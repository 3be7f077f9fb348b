/**
 * The CLI on ONNX models, as processes: `kiln golden` on the fixture, `kiln run` with the
 * tokenizer from the folder beside the .onnx file, and a malformed file exiting 2 with its code.
 */
import { copyFileSync, mkdtempSync } from "node:fs";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { FIXTURES_DIR } from "../fixtures/index.ts";
import { TINY_LLAMA, truncatedModel } from "./onnx_fixtures.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function kiln(args: readonly string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ["--import", "tsx", "cli/kiln.ts", ...args], { cwd: ROOT, encoding: "utf8" });
}

describe("kiln on .onnx models", () => {
  it("golden: prefill and teacher-forced decode match the reference beside the file", () => {
    const r = kiln(["golden", TINY_LLAMA]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const summary = lines[lines.length - 1]!["summary"] as { ok: boolean; arch: string; greedy_token_match: string };
    expect(summary).toMatchObject({ ok: true, arch: "OnnxModel", greedy_token_match: "6/6" });
  });

  it("run: the tokenizer comes from the folder beside the .onnx file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-onnx-run-"));
    copyFileSync(TINY_LLAMA, join(dir, "model.onnx"));
    // the tiny Llama's vocabulary is the fixtures' 512-entry tokenizer
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(FIXTURES_DIR, "llama", f), join(dir, f));
    const r = kiln(["run", "--model", join(dir, "model.onnx"), "--prompt", "Hello there", "--temperature", "0", "--max-tokens", "6", "--ignore-eos", "--stats"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(0);
  });

  it("a truncated .onnx file exits 2 with kiln: error [ONNX_INVALID]", () => {
    const r = kiln(["golden", truncatedModel(TINY_LLAMA, 1000)]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^kiln: error \[ONNX_INVALID\]: /);
  });
});
