/** The on-disk kernel cache: keyed by everything that determines a binary, built once, atomically. */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultCacheDir, KernelCache, type CacheKeyParts } from "../../compiler/kernel_cache.ts";
import { compileC, findCompiler } from "../../compiler/toolchain.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";

const fresh = (): KernelCache => new KernelCache(mkdtempSync(join(tmpdir(), "kiln-cache-")));
const PARTS: CacheKeyParts = { source: "void f(void) {}", flags: ["-O3"], arch: "sm_90", compiler: "nvcc 13.0" };

describe("kernel cache", () => {
  it("keys on the source, the flags, the target architecture and the compiler version", () => {
    const c = fresh();
    const base = c.key(PARTS);
    expect(c.key({ ...PARTS })).toBe(base);
    expect(c.key({ ...PARTS, source: "void f(void) { }" })).not.toBe(base);
    expect(c.key({ ...PARTS, flags: ["-O2"] })).not.toBe(base);
    expect(c.key({ ...PARTS, arch: "sm_80" })).not.toBe(base);
    expect(c.key({ ...PARTS, compiler: "nvcc 12.4" })).not.toBe(base);
    // fields are length-prefixed: moving text between fields changes the key
    expect(c.key({ ...PARTS, source: "void f(void) {}sm", arch: "_90" })).not.toBe(base);
  });

  it("builds on a miss, then hits without building, and leaves no temporary files", () => {
    const c = fresh();
    let builds = 0;
    const build = (out: string): void => {
      builds++;
      writeFileSync(out, "binary");
    };
    const first = c.getOrBuild("abc", ".so", build);
    const second = c.getOrBuild("abc", ".so", build);
    expect([first.hit, second.hit, builds]).toEqual([false, true, 1]);
    expect(readdirSync(c.dir)).toEqual(["abc.so"]);
  });

  it("keeps nothing when a build fails", () => {
    const c = fresh();
    expect(() =>
      c.getOrBuild("bad", ".so", (out) => {
        writeFileSync(out, "half");
        throw new Error("compiler crashed");
      }),
    ).toThrow("compiler crashed");
    expect(readdirSync(c.dir)).toEqual([]);
  });

  it("falls back to the temp directory when the cache folder cannot be written", () => {
    const blocker = join(mkdtempSync(join(tmpdir(), "kiln-ro-")), "file");
    writeFileSync(blocker, "not a folder");
    const c = new KernelCache(join(blocker, "kernels")); // a folder below a file can never be created
    const entry = c.getOrBuild(`probe-${process.pid}`, ".bin", (out) => writeFileSync(out, "x"));
    expect(entry.path.startsWith(tmpdir())).toBe(true);
    expect(c.getOrBuild(`probe-${process.pid}`, ".bin", () => {}).hit).toBe(true);
  });

  it("lives under $KILN_CACHE_DIR, else ~/.cache/kiln", () => {
    expect(defaultCacheDir({ KILN_CACHE_DIR: "/x/y" })).toBe(join("/x/y", "kernels"));
    expect(defaultCacheDir({})).toMatch(/\.cache[/\\]kiln[/\\]kernels$/);
  });

  it("compiles C once per source and reports a compiler error with its log", () => {
    const c = fresh();
    const a = compileC("int kiln_probe(void) { return 1; }\n", c);
    const b = compileC("int kiln_probe(void) { return 1; }\n", c);
    expect([a.hit, b.hit, a.path === b.path, existsSync(a.path)]).toEqual([false, true, true, true]);
    expect(() => compileC("int broken( {", c)).toThrow(/failed on generated kernels:[\s\S]*error/);
  });

  it("names the missing compiler", () => {
    const missing = findCompiler("kiln-no-such-cc");
    expect(missing.version).toBeUndefined();
    try {
      compileC("int x;", fresh(), missing);
      throw new Error("expected a failure");
    } catch (e) {
      expect(isKilnError(e, "NATIVE_UNAVAILABLE")).toBe(true);
      expect(String(e)).toContain("kiln-no-such-cc");
    }
  });
});
