/**
 * CUDA C++ → CUBIN through NVRTC, for the device's own architecture (`--gpu-architecture=sm_XX`,
 * so no PTX is JIT-compiled by the driver), with the CUDA headers found next to libnvrtc on the
 * include path. CUBINs are cached on disk under $KILN_CACHE_DIR (default ~/.cache/kiln)/cubin,
 * keyed by a hash of the source, its headers, the options, the architecture and the NVRTC
 * library (version and path), so a second run loads instead of compiling. A failed compile throws CUDA_ERROR with
 * NVRTC's log.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as koffi from "koffi";
import { check, type StatusText } from "./check.ts";
import { bindNvrtc, type NvrtcApi } from "./ffi/nvrtc.ts";
import { cudaIncludeDirs, LIBNVRTC, locateLibrary, SYSTEM_PROBE, type HostProbe } from "./library_locator.ts";

export interface CudaProgram {
  /** file name, used in errors and as NVRTC's program name, e.g. "paged_attention.cu" */
  readonly name: string;
  readonly source: string;
  /** headers the source #includes, by include name ("common.cuh" → its text) */
  readonly headers: ReadonlyMap<string, string>;
}

export interface CompiledProgram {
  readonly cubin: Uint8Array;
  readonly fromCache: boolean;
  readonly ms: number;
}

export function defaultCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const dir = env["KILN_CACHE_DIR"];
  return dir !== undefined && dir !== "" ? dir : join(homedir(), ".cache", "kiln");
}

export class NvrtcCompiler {
  private constructor(
    private readonly api: NvrtcApi,
    private readonly text: StatusText,
    readonly libraryPath: string,
    /** "13.0" */
    readonly version: string,
    /** the CUDA include folder passed with -I, when one was found */
    readonly includeDir: string | undefined,
    readonly cacheDir: string,
  ) {}

  /** driverVersion (cuDriverGetVersion's, e.g. 12040): NVRTC libraries of a newer CUDA major are passed over */
  static open(opts: { probe?: HostProbe; cacheDir?: string; driverVersion?: number } = {}): NvrtcCompiler {
    const probe = opts.probe ?? SYSTEM_PROBE;
    const found = locateLibrary(LIBNVRTC, (p) => bindNvrtc(koffi.load(p)), probe, opts.driverVersion !== undefined ? { driverVersion: opts.driverVersion } : {});
    const { path, library: api } = found;
    const text: StatusText = {
      library: "libnvrtc",
      describe: (status) => {
        const s = api.nvrtcGetErrorString(status) ?? `nvrtcResult ${status}`;
        return { name: s, text: status === 6 ? "the program did not compile; NVRTC's log follows" : s };
      },
    };
    const major = new Int32Array(1);
    const minor = new Int32Array(1);
    check(api.nvrtcVersion(major, minor), "nvrtcVersion", text);
    const includeDir = cudaIncludeDirs(path, probe)[0];
    return new NvrtcCompiler(api, text, path, `${major[0]}.${minor[0]}`, includeDir, opts.cacheDir ?? defaultCacheDir(probe.env));
  }

  optionsFor(arch: string): string[] {
    const opts = [`--gpu-architecture=${arch}`, "--std=c++17"];
    if (this.includeDir !== undefined) opts.push(`-I${this.includeDir}`);
    return opts;
  }

  /** The program as a CUBIN for `arch` (e.g. "sm_90"), from the cache when it is there. */
  compile(program: CudaProgram, arch: string): CompiledProgram {
    const t0 = performance.now();
    const options = this.optionsFor(arch);
    const file = this.cachePath(program, options, arch);
    if (existsSync(file)) {
      try {
        return { cubin: new Uint8Array(readFileSync(file)), fromCache: true, ms: performance.now() - t0 };
      } catch {
        // unreadable cache entry: compile again
      }
    }
    const cubin = this.compileNow(program, options);
    storeQuietly(file, cubin);
    return { cubin, fromCache: false, ms: performance.now() - t0 };
  }

  private cachePath(program: CudaProgram, options: readonly string[], arch: string): string {
    const h = createHash("sha256");
    const headers = [...program.headers.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    h.update(JSON.stringify({ source: program.source, headers, options, arch, nvrtc: this.version, library: this.libraryPath }));
    const stem = program.name.replace(/\.[^.]*$/, "").replace(/[^\w.-]/g, "_");
    return join(this.cacheDir, "cubin", `${stem}-${arch}-${h.digest("hex").slice(0, 24)}.cubin`);
  }

  private compileNow(program: CudaProgram, options: readonly string[]): Uint8Array {
    const api = this.api;
    const handle = new BigUint64Array(1);
    const includeNames = [...program.headers.keys()];
    const headerTexts = includeNames.map((n) => program.headers.get(n) ?? "");
    check(
      api.nvrtcCreateProgram(handle, program.source, program.name, includeNames.length, headerTexts, includeNames),
      `nvrtcCreateProgram(${program.name})`,
      this.text,
    );
    const prog = handle[0] ?? 0n;
    try {
      const size = new BigUint64Array(1);
      const readLog = (): string => {
        check(api.nvrtcGetProgramLogSize(prog, size), "nvrtcGetProgramLogSize", this.text);
        const buf = Buffer.alloc(Number(size[0]));
        check(api.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog", this.text);
        return buf.toString("utf8").replace(/\0+$/, "");
      };
      check(
        api.nvrtcCompileProgram(prog, options.length, options),
        `nvrtcCompileProgram(${program.name}, ${options.join(" ")})`,
        this.text,
        readLog,
      );
      check(api.nvrtcGetCUBINSize(prog, size), `nvrtcGetCUBINSize(${program.name})`, this.text);
      const cubin = Buffer.alloc(Number(size[0]));
      check(api.nvrtcGetCUBIN(prog, cubin), `nvrtcGetCUBIN(${program.name})`, this.text);
      return new Uint8Array(cubin.buffer, cubin.byteOffset, cubin.byteLength);
    } finally {
      // also after a failed compile, whose error (with its log) is the one worth reporting
      api.nvrtcDestroyProgram(handle);
    }
  }
}

/** Writes a cache entry atomically; a cache that cannot be written only costs a recompile later. */
function storeQuietly(file: string, data: Uint8Array): void {
  try {
    mkdirSync(join(file, ".."), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    renameSync(tmp, file);
  } catch {
    // read-only or full disk: run without the cache
  }
}
