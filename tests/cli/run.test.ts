/**
 * `kiln run` on the embedded model reproduces the HF reference's greedy text: at temperature 0,
 * with top-k 1 at any temperature, cut at a stop string or at the context window, and on the
 * CUDA backend (the emulator of the CUDA libraries).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { blocksForGeneration } from "../../cli/run.ts";
import { buildEmulator, emulatorEnv } from "../cuda/emulator/build_emulator.ts";
import { copyFixture, editConfig } from "../fixture_copy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));
const refs = JSON.parse(readFileSync(new URL("../../assets/fortune-llama/reference.json", import.meta.url), "utf8")) as {
  prompt: string;
  greedy: string;
}[];

function kiln(args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(process.execPath, ["--import", "tsx", "cli/kiln.ts", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
}

describe("kiln run", () => {
  for (const ref of refs) {
    it(`greedy text for ${JSON.stringify(ref.prompt)}`, () => {
      const out = kiln(["run", "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "24", "--ignore-eos", "--no-skip-special-tokens"]);
      expect(out).toBe(ref.greedy + "\n");
    });
  }

  it("samples reproducibly with a seed", () => {
    const args = ["run", "--prompt", "You will", "--temperature", "0.9", "--top-p", "0.95", "--seed", "7", "--max-tokens", "16"];
    const a = kiln(args);
    expect(kiln(args)).toBe(a);
    expect(a.trim().length).toBeGreaterThan(0);
  });

  it("with --top-k 1 samples the greedy text at any temperature", () => {
    const ref = refs[1]!;
    const out = kiln(["run", "--prompt", ref.prompt, "--temperature", "0.8", "--top-k", "1", "--max-tokens", "24", "--ignore-eos", "--no-skip-special-tokens"]);
    expect(out).toBe(ref.greedy + "\n");
  });

  it("ends at a --stop string, which is not printed", () => {
    const ref = refs[0]!;
    const out = kiln(["run", "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "24", "--stop", "zzz", "--stop", "form"]);
    expect(out).toBe(ref.greedy.slice(0, ref.greedy.indexOf("form")) + "\n");
  });

  it("ends at --max-model-len (prompt + output), as --stats reports", () => {
    const ref = refs[0]!;
    const r = spawnSync(process.execPath, ["--import", "tsx", "cli/kiln.ts", "run", "-p", ref.prompt, "--temperature", "0", "--max-model-len", "10", "--stats"], {
      cwd: ROOT,
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const m = /^prompt (\d+) tokens, generated (\d+) \(length\); first token [\d.]+ ms, decode \d+ tokens\/s$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![1]) + Number(m![2])).toBe(10);
    expect(ref.greedy.startsWith(r.stdout.slice(0, -1))).toBe(true);
  });

  it("--backend cuda, on the emulated CUDA libraries, gives the same greedy text", () => {
    const ref = refs[0]!;
    const env = { ...emulatorEnv(buildEmulator()), KILN_CACHE_DIR: CUBIN_CACHE };
    const out = kiln(["run", "--backend", "cuda", "--prompt", ref.prompt, "--temperature", "0", "--max-tokens", "24", "--ignore-eos", "--no-skip-special-tokens"], env);
    expect(out).toBe(ref.greedy + "\n");
  }, 300_000);

  it("fails with a typed error line for a missing model folder", () => {
    try {
      kiln(["run", "--prompt", "x", "--model", "/nonexistent/model"]);
      throw new Error("expected failure");
    } catch (e) {
      const err = e as { status: number; stderr: string };
      expect(err.status).toBe(2);
      expect(err.stderr).toContain("[MODEL_NOT_FOUND]");
    }
  });
});

/** Bad model files reach the user as one typed line and exit status 2, never a stack trace. */
describe("kiln run on bad model files", () => {
  const copies: string[] = [];
  afterAll(() => copies.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const copy = (name: string): string => {
    const dir = copyFixture(name);
    copies.push(dir);
    return dir;
  };
  const run = (dir: string): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, ["bin/kiln.js", "run", "-m", dir, "-p", "hi", "--max-tokens", "2"], { cwd: ROOT, encoding: "utf8" });
  const expectTyped = (dir: string, code: string): void => {
    const r = run(dir);
    expect(r.status, String(r.stderr)).toBe(2);
    expect(String(r.stderr)).toMatch(new RegExp(`^kiln: error \\[${code}\\]: `, "m"));
    expect(String(r.stderr)).not.toContain("    at ");
  };

  it("max_position_embeddings: 1e9 is CONFIG_INVALID (was: Invalid typed array length)", () => {
    const dir = copy("llama");
    editConfig(dir, (c) => (c["max_position_embeddings"] = 1e9));
    expectTyped(dir, "CONFIG_INVALID");
  });

  it("a directory named model.safetensors is SAFETENSORS_INVALID (was: EISDIR stack trace)", () => {
    const dir = copy("llama");
    rmSync(`${dir}/model.safetensors`);
    mkdirSync(`${dir}/model.safetensors`);
    expectTyped(dir, "SAFETENSORS_INVALID");
  });

  it("sizes the KV pool from the prompt and --max-tokens, capped by the context window", () => {
    expect(blocksForGeneration(3, 2, 1 << 24, 16)).toBe(1);
    expect(blocksForGeneration(20, 13, 1 << 24, 16)).toBe(3);
    expect(blocksForGeneration(20, 1000, 40, 16)).toBe(3);
    // a long context window costs nothing until it is used
    const dir = copy("llama");
    editConfig(dir, (c) => (c["max_position_embeddings"] = 1 << 24));
    const r = run(dir);
    expect(r.status, String(r.stderr)).toBe(0);
  });
});
