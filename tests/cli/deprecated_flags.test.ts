/**
 * `kiln serve --kv-cache-memory`, deprecated for vLLM's `--kv-cache-memory-bytes` (docs/deprecation.md),
 * through the real command's parser, at its current stage ("warn"): the old flag still works and
 * gives what the new one gives, warns exactly once per process, is hidden from --help, and loses
 * to the new flag when both are given. The command's action is replaced, so nothing is served.
 */
import { afterEach, beforeEach, expect, it, vi, type MockInstance } from "vitest";
import { KV_CACHE_MEMORY_FLAG, kvCacheBytesFlag, serveCommand } from "../../cli/serve.ts";
import { processDeprecations } from "../../runtime/engine/deprecation.ts";

interface Parsed {
  kvCacheMemoryBytes?: number;
  kvCacheMemory?: number;
}

async function parseServe(args: readonly string[]): Promise<Parsed> {
  let parsed: Parsed = {};
  const cmd = serveCommand()
    .exitOverride()
    .action((_dir: string | undefined, flags: Parsed) => {
      parsed = flags;
    });
  await cmd.parseAsync([...args], { from: "user" });
  return parsed;
}

let stderr: MockInstance<typeof process.stderr.write>;
const warnings = (): string[] => stderr.mock.calls.map(([chunk]) => String(chunk)).filter((line) => line.startsWith("kiln: deprecated:"));

beforeEach(() => {
  processDeprecations.reset();
  stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
});
afterEach(() => {
  stderr.mockRestore();
  processDeprecations.reset();
});

it("is at stage warn", () => {
  expect(KV_CACHE_MEMORY_FLAG.stage).toBe("warn");
});

it("--kv-cache-memory sizes the pool as --kv-cache-memory-bytes does, warning once across two uses", async () => {
  const replacement = kvCacheBytesFlag(await parseServe(["--kv-cache-memory-bytes", "6MiB"]));
  expect(replacement).toEqual({ kvCacheBytes: 6 * 2 ** 20 });
  expect(warnings()).toEqual([]);

  expect(kvCacheBytesFlag(await parseServe(["--kv-cache-memory", "6MiB"]))).toEqual(replacement);
  expect(kvCacheBytesFlag(await parseServe(["--kv-cache-memory", "6MiB"]))).toEqual(replacement);
  const [warning, ...more] = warnings();
  expect(more).toEqual([]);
  expect(warning).toContain("`kiln serve --kv-cache-memory` is deprecated since kiln 0.2");
  expect(warning).toContain("use `--kv-cache-memory-bytes`");
  expect(warning).toContain("KILN_ALLOW_DEPRECATED=kv-cache-memory-flag");
});

it("the new flag wins where both are given, and only the new one is in --help", async () => {
  expect(kvCacheBytesFlag(await parseServe(["--kv-cache-memory", "1GiB", "--kv-cache-memory-bytes", "6MiB"]))).toEqual({ kvCacheBytes: 6 * 2 ** 20 });
  const help = serveCommand().helpInformation();
  expect(help).toContain("--kv-cache-memory-bytes <size>");
  expect(help).not.toMatch(/--kv-cache-memory </);
});

it("a bad size is still refused as the new flag refuses it", async () => {
  await expect(parseServe(["--kv-cache-memory", "lots"])).rejects.toThrow(/'lots' is not a size/);
});
