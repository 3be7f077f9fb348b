/** `kiln run` on the embedded model at temperature 0 reproduces the HF reference's greedy text. */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { blocksForGeneration } from "../../runtime/generate.ts";
import { copyFixture, editConfig } from "../fixture_copy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
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
