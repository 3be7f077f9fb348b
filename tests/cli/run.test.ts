/** `kiln run` on the embedded model at temperature 0 reproduces the HF reference's greedy text. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

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
