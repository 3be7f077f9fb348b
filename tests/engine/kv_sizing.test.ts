/**
 * The CPU KV pool's default size, and a context window larger than the pool: lowered to what
 * fits (and said) when the user did not ask for it, refused with KV_EXHAUSTED when they did.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createEngine, defaultCpuKvCacheBytes } from "../../runtime/engine/create_engine.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { copyFixture, editConfig } from "../fixture_copy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GiB = 2 ** 30;

function longContextQwen3(): string {
  const dir = copyFixture("qwen3");
  editConfig(dir, (c) => {
    c["max_position_embeddings"] = 40_960;
  });
  return dir;
}

describe("the CPU KV pool", () => {
  it("defaults to a quarter of memory, at most 4 GiB and at least 256 MiB", () => {
    expect(defaultCpuKvCacheBytes(24 * GiB)).toBe(4 * GiB);
    expect(defaultCpuKvCacheBytes(8 * GiB)).toBe(2 * GiB);
    expect(defaultCpuKvCacheBytes(GiB / 2)).toBe(256 * 2 ** 20);
  });

  it("lowers a model's context window that does not fit, and serves", async () => {
    const dir = longContextQwen3();
    const created = await createEngine({ modelDir: dir, kvCacheBytes: 2 ** 20 });
    expect(created.contextLowered).toEqual({ from: 40_960 });
    expect(created.maxModelLen).toBe(created.kvPool.numBlocks * created.kvPool.blockSize);
    expect(created.maxModelLen).toBeLessThan(40_960);
    const [result] = await created.engine.generateBatch([[1, 5, 6]], { maxTokens: 4, temperature: 0, ignoreEos: true });
    expect(result!.completions[0]!.tokenIds.length).toBe(4);
    created.engine.close();
  });

  it("keeps refusing a context window the user asked for", async () => {
    const dir = longContextQwen3();
    try {
      await createEngine({ modelDir: dir, kvCacheBytes: 2 ** 20, maxModelLen: 40_960 });
      expect.unreachable();
    } catch (e) {
      expect(isKilnError(e, "KV_EXHAUSTED")).toBe(true);
    }
  });

  it("kiln serve says which context window it chose", async () => {
    const dir = longContextQwen3();
    const child = spawn(process.execPath, ["bin/kiln.js", "serve", dir, "--port", "0", "--kv-cache-memory-bytes", "1MiB", "--log-level", "warn"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const out = await new Promise<string>((resolve, reject) => {
      let text = "";
      child.stdout.on("data", (b: Buffer) => {
        text += b.toString();
        if (text.includes("try: curl")) resolve(text);
      });
      child.on("exit", () => reject(new Error(`exited: ${text}`)));
    });
    child.kill("SIGTERM");
    expect(out).toMatch(/context window: \d+ tokens \(lowered from the model's 40960: the KV pool holds no more/);
  }, 60_000);
});
