/**
 * Compiling rendered kernels, through the kernel cache:
 *
 *   C    → shared library: cc -O3 -march=native -fno-trapping-math -fopenmp -shared -fPIC   (the CPU backend)
 *   CUDA → cubin:          nvcc -arch=sm_XX -cubin                        (ahead of time, when nvcc
 *          is installed; on a GPU machine the CUDA runtime may compile the same source with NVRTC)
 *
 * A failed compile of generated code is a compiler bug, so it throws with the compiler's log; a
 * missing compiler throws a KilnError a user can act on.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";
import { KilnError } from "../runtime/engine/errors.ts";
import { KernelCache, type CacheEntry } from "./kernel_cache.ts";

export const C_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"] as const;
export const nvccFlags = (arch: string): string[] => [`-arch=${arch}`, "-cubin", "-std=c++17", "-Werror", "all-warnings"];

export interface Compiler {
  /** the executable, as found on the PATH */
  readonly command: string;
  /** its first `--version` line that names a version, or undefined when it is not installed */
  readonly version: string | undefined;
}

/** Looks a compiler up once; the result travels in an explicit object. */
export function findCompiler(command: string): Compiler {
  const r = spawnSync(command, ["--version"], { encoding: "utf8" });
  if (r.error !== undefined || r.status !== 0) return { command, version: undefined };
  const lines = r.stdout.split("\n").filter((l) => l.trim() !== "");
  const version = lines.find((l) => /\d+\.\d+/.test(l) && /release|version|\)\s*\d/i.test(l)) ?? lines[0] ?? command;
  return { command, version: version.trim() };
}

export function hostArch(): string {
  return `${process.arch} ${os.cpus()[0]?.model ?? "unknown cpu"}`;
}

export interface CompileResult extends CacheEntry {
  readonly seconds: number;
}

/** A C module → shared library in the cache. */
export function compileC(source: string, cache: KernelCache, cc: Compiler = findCompiler(process.env["CC"] ?? "cc")): CompileResult {
  if (cc.version === undefined) {
    throw new KilnError("NATIVE_UNAVAILABLE", `no C compiler '${cc.command}' on the PATH: the CPU backend compiles its fused kernels with one (set CC to choose another)`);
  }
  const start = performance.now();
  const key = cache.key({ source, flags: C_FLAGS, arch: hostArch(), compiler: cc.version });
  const entry = cache.getOrBuild(key, ".so", (out) => run(cc.command, [...C_FLAGS, "-o", out], source, ".c", out));
  return { ...entry, seconds: (performance.now() - start) / 1000 };
}

/** A CUDA module → cubin for `arch` (e.g. sm_90) in the cache. */
export function compileCuda(source: string, arch: string, cache: KernelCache, nvcc: Compiler = findCompiler("nvcc")): CompileResult {
  if (nvcc.version === undefined) throw new KilnError("NATIVE_UNAVAILABLE", "nvcc is not on the PATH");
  const start = performance.now();
  const flags = nvccFlags(arch);
  const key = cache.key({ source, flags, arch, compiler: nvcc.version });
  const entry = cache.getOrBuild(key, ".cubin", (out) => run(nvcc.command, [...flags, "-o", out], source, ".cu", out));
  return { ...entry, seconds: (performance.now() - start) / 1000 };
}

/** Writes the source beside the output and compiles it; throws with the log on failure. */
function run(command: string, args: readonly string[], source: string, ext: string, out: string): void {
  const src = `${out}.src${ext}`;
  fs.writeFileSync(src, source);
  try {
    execFileSync(command, [...args, src], { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  } catch (e) {
    const stderr = typeof e === "object" && e !== null && "stderr" in e ? String(e.stderr) : String(e);
    throw new Error(`${nodePath.basename(command)} failed on generated kernels:\n${stderr}`, { cause: e });
  } finally {
    fs.rmSync(src, { force: true });
  }
}
