/**
 * Compiling rendered kernels, through the kernel cache:
 *
 *   C    → shared library: cc -O3 -march=<level> -fno-trapping-math -fopenmp -shared -fPIC   (the CPU backend;
 *          the level is `native`, or KILN_CPU_ARCH for a binary built once for many machines)
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

/**
 * The instruction set generated CPU code is built for: `native` (this machine's, the default), or
 * the portable level in KILN_CPU_ARCH (x86-64, x86-64-v2, x86-64-v3 = AVX2/FMA, x86-64-v4 =
 * AVX-512), which an engine artifact meant for other machines is compiled with (tools/nightly.sh).
 */
export function cpuArch(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const v = env["KILN_CPU_ARCH"];
  if (v === undefined || v === "" || v === "native") return "native";
  if (!(v in X86_LEVEL_FLAGS)) {
    throw new KilnError("INVALID_ARGUMENT", `KILN_CPU_ARCH=${v}: expected native or one of ${Object.keys(X86_LEVEL_FLAGS).join(", ")}`);
  }
  return v;
}

export function cFlags(arch: string = cpuArch()): string[] {
  return ["-O3", `-march=${arch}`, "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"];
}

/** /proc/cpuinfo flags each x86-64 micro-architecture level adds (the psABI levels). */
const X86_LEVEL_FLAGS: Readonly<Record<string, readonly string[]>> = {
  "x86-64": [],
  "x86-64-v2": ["cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"],
  "x86-64-v3": ["avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"],
  "x86-64-v4": ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"],
};
const LEVELS = Object.keys(X86_LEVEL_FLAGS);
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

/** What a binary built for `arch` (cpuArch()) is recorded as built for: this CPU model, or the level. */
export function builtForLabel(arch: string = cpuArch()): string {
  return arch === "native" ? hostArch() : `${process.arch} ${arch}`;
}

/**
 * Whether a CPU binary recorded as built for `builtFor` runs here: one built for this CPU model,
 * or for a portable x86-64 level whose every instruction-set flag this CPU has (`cpuFlags`: the
 * flags line of /proc/cpuinfo).
 */
export function runsHere(builtFor: string, cpuFlags: ReadonlySet<string> = hostCpuFlags()): boolean {
  if (builtFor === hostArch()) return true;
  const [machine, level] = builtFor.split(" ");
  if (machine !== process.arch || process.arch !== "x64" || level === undefined) return false;
  const upTo = LEVELS.indexOf(level);
  if (upTo < 0) return false;
  return LEVELS.slice(0, upTo + 1).every((l) => (X86_LEVEL_FLAGS[l] ?? []).every((f) => cpuFlags.has(f)));
}

let cpuFlagsCache: ReadonlySet<string> | undefined;

/** The instruction-set flags of this CPU (Linux's /proc/cpuinfo); empty where it cannot be read. */
export function hostCpuFlags(): ReadonlySet<string> {
  if (cpuFlagsCache !== undefined) return cpuFlagsCache;
  let flags = new Set<string>();
  try {
    const line = fs.readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    if (line !== undefined) flags = new Set(line.slice(line.indexOf(":") + 1).trim().split(/\s+/));
  } catch {
    // not Linux: only binaries built for this exact CPU model are used
  }
  cpuFlagsCache = flags;
  return flags;
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
  const arch = cpuArch();
  const flags = cFlags(arch);
  const key = cache.key({ source, flags, arch: builtForLabel(arch), compiler: cc.version });
  const entry = cache.getOrBuild(key, ".so", (out) => run(cc.command, [...flags, "-o", out], source, ".c", out));
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
