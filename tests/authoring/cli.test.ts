/**
 * The model-author commands as a user runs them (processes, so in the slow tier): new-model
 * writes a plugin, the plugin runs the fixture's golden, check-model passes it against the
 * checkpoint and flags a seeded mistake at its line; an unregistered Llama runs generically.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { copyFixture, editConfig, fixture } from "../fixture_copy.ts";
import { ROOT, seededModel } from "./model_source_copy.ts";

function kiln(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, "bin/kiln.js"), ...args], { cwd: ROOT, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const summaryOf = (stdout: string): { ok: boolean; arch: string } =>
  (JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as { summary: { ok: boolean; arch: string } }).summary;

describe("kiln new-model and check-model", () => {
  it("new-model writes a plugin that passes the golden and check-model", () => {
    const out = join(mkdtempSync(join(tmpdir(), "kiln-cli-new-model-")), "qwen3.mts");
    const made = kiln("new-model", fixture("qwen3"), "-o", out, "--arch", "CliQwen3ForCausalLM");
    expect(made.status, made.stderr).toBe(0);
    expect(made.stdout).toContain("closest to Qwen3ForCausalLM");
    expect(made.stdout).not.toContain("TODO");
    const dir = copyFixture("qwen3");
    editConfig(dir, (c) => (c["architectures"] = ["CliQwen3ForCausalLM"]));
    const golden = kiln("--plugin", out, "golden", dir);
    expect(golden.status, golden.stderr).toBe(0);
    expect(summaryOf(golden.stdout)).toMatchObject({ ok: true, arch: "CliQwen3ForCausalLM" });
    expect(golden.stderr).not.toContain("generic decoder-only");
    const checked = kiln("check-model", out, "--checkpoint", dir);
    expect(checked.status, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout).toContain(": ok against");
  });

  it("check-model exits 1 citing file:line of a seeded column → column pair", () => {
    const seeded = seededModel("gpt2", [["this.cProj = new RowParallelLinear(this.join(\"c_proj\"), cfg.innerSize", "this.cProj = new ColumnParallelLinear(this.join(\"c_proj\"), cfg.innerSize"], ["  readonly cProj: RowParallelLinear;\n  constructor(\n    prefix: string,\n    readonly cfg: Gpt2Config,", "  readonly cProj: ColumnParallelLinear;\n  constructor(\n    prefix: string,\n    readonly cfg: Gpt2Config,"]]);
    const r = kiln("check-model", seeded);
    expect(r.status).toBe(1);
    const line = readFileSync(seeded, "utf8").split("\n").findIndex((l) => l.includes("this.cProj.forward(this.cFc.forward(x)")) + 1;
    expect(r.stdout).toMatch(new RegExp(`gpt2_seeded\\.ts:${line}: \\[tensor-parallel\\] this\\.cProj \\(ColumnParallelLinear\\)`));
  });

  it("an unregistered Llama runs through the generic implementation, which says so on one line", () => {
    const dir = copyFixture("llama");
    editConfig(dir, (c) => (c["architectures"] = ["MyLlamaForCausalLM"]));
    const r = kiln("golden", dir);
    expect(r.status, r.stderr).toBe(0);
    expect(summaryOf(r.stdout)).toMatchObject({ ok: true, arch: "MyLlamaForCausalLM" });
    expect(r.stderr.split("\n").filter((l) => l.includes("generic decoder-only implementation"))).toHaveLength(1);
  });
});
