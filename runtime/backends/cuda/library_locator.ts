/**
 * Finding the CUDA libraries at run time. For each library the candidates are, in order:
 *   1. its own environment variable (KILN_LIBCUDA, KILN_LIBNVRTC, KILN_LIBCUBLASLT): a file path,
 *      and when it is set nothing else is tried, so a wrong override is reported, not bypassed;
 *   2. KILN_CUDA_HOME's lib folders (targets/x86_64-linux/lib, lib64, lib);
 *   3. NVIDIA's pip wheels (nvidia/<package>/lib in the site-packages of the active virtualenv or
 *      conda environment, the user's ~/.local, then the system Pythons), as PyTorch installs them;
 *   4. what `ldconfig -p` lists under the library's file names;
 *   5. the standard folders: /usr/local/cuda/…, /usr/local/cuda-*\/… (newest first),
 *      /usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib64.
 * A toolkit library of a newer CUDA major version than the driver (libnvrtc.so.13 under a 12.x
 * driver) is passed over when the driver's version is known: its CUBINs and its own calls need
 * that driver. The first candidate left that exists and loads wins; when none does, KilnError
 * CUDA_UNAVAILABLE names every path tried and why each failed. The file system and ldconfig are injected
 * (`HostProbe`) so tests can stage any layout.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { KilnError } from "../../engine/errors.ts";

export interface LibrarySpec {
  /** the library as users know it, e.g. "libcuda (the CUDA driver)" */
  readonly title: string;
  readonly envVar: string;
  /** file names to look for, preferred first */
  readonly fileNames: readonly string[];
  /** folders under site-packages/nvidia/ whose lib/ may hold it (NVIDIA's pip wheels) */
  readonly pipPackages: readonly string[];
}

export const LIBCUDA: LibrarySpec = {
  title: "libcuda (the NVIDIA driver's CUDA library)",
  envVar: "KILN_LIBCUDA",
  fileNames: ["libcuda.so.1", "libcuda.so"],
  pipPackages: [], // the driver comes with the GPU, never from pip
};

export const LIBNVRTC: LibrarySpec = {
  title: "libnvrtc (NVRTC, the CUDA runtime compiler)",
  envVar: "KILN_LIBNVRTC",
  fileNames: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
  pipPackages: ["cu13", "cuda_nvrtc"], // CUDA 13 wheels share nvidia/cu13; 12's have one folder a library
};

export const LIBCUBLASLT: LibrarySpec = {
  title: "libcublasLt (cuBLASLt)",
  envVar: "KILN_LIBCUBLASLT",
  fileNames: ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"],
  pipPackages: ["cu13", "cublas"],
};

/** What the locator may ask of the host; SYSTEM_PROBE is the real one. */
export interface HostProbe {
  readonly env: Readonly<Record<string, string | undefined>>;
  exists(path: string): boolean;
  /** entries of a folder, or [] when it cannot be read */
  listDir(path: string): readonly string[];
  /** the output of `ldconfig -p`, or undefined when it cannot be run */
  ldconfig(): string | undefined;
}

export const SYSTEM_PROBE: HostProbe = {
  env: process.env,
  exists: (path) => existsSync(path),
  listDir: (path) => {
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  },
  ldconfig: () => {
    for (const bin of ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]) {
      try {
        return execFileSync(bin, ["-p"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 });
      } catch {
        // try the next spelling
      }
    }
    return undefined;
  },
};

export type CandidateSource = "environment" | "KILN_CUDA_HOME" | "pip wheel" | "ldconfig" | "standard folder";

export interface Candidate {
  readonly path: string;
  readonly source: CandidateSource;
}

/** CUDA toolkit roots under /usr/local: /usr/local/cuda first, then cuda-X.Y newest first. */
function cudaRoots(probe: HostProbe): string[] {
  const versioned = probe
    .listDir("/usr/local")
    .filter((name) => /^cuda-\d+(\.\d+)*$/.test(name))
    .sort((a, b) => compareVersions(b.slice(5), a.slice(5)))
    .map((name) => join("/usr/local", name));
  return ["/usr/local/cuda", ...versioned];
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function libDirsOf(root: string): string[] {
  return [join(root, "targets/x86_64-linux/lib"), join(root, "lib64"), join(root, "lib")];
}

/** `ldconfig -p` lines look like "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1". */
export function parseLdconfig(output: string, fileName: string): string[] {
  const paths: string[] = [];
  for (const line of output.split("\n")) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/.exec(line);
    if (m && m[1] === fileName && (m[2] ?? "").includes("x86-64")) paths.push(m[3] ?? "");
  }
  return paths.filter((p) => p !== "");
}

/**
 * site-packages folders that may hold NVIDIA's wheels, most specific first: the active virtualenv,
 * the active conda environment, the user's, then the system Pythons (python3.* folders newest first).
 */
export function sitePackages(probe: HostProbe): string[] {
  const prefixes: string[] = [];
  for (const v of ["VIRTUAL_ENV", "CONDA_PREFIX"]) {
    const p = probe.env[v];
    if (p !== undefined && p !== "") prefixes.push(p);
  }
  const home = probe.env["HOME"];
  if (home !== undefined && home !== "") prefixes.push(join(home, ".local"));
  prefixes.push("/usr/local", "/usr");
  const out: string[] = [];
  for (const prefix of prefixes) {
    const lib = join(prefix, "lib");
    const pythons = probe
      .listDir(lib)
      .filter((n) => /^python3(\.\d+)?$/.test(n))
      .sort((a, b) => compareVersions(b.slice(6) || "0", a.slice(6) || "0"));
    for (const py of pythons) for (const kind of ["site-packages", "dist-packages"]) out.push(join(lib, py, kind));
  }
  return [...new Set(out)];
}

/** The CUDA major version a file name promises (libnvrtc.so.13 → 13), when it says one. */
export function sonameMajor(path: string): number | undefined {
  const m = /\.so\.(\d+)$/.exec(path);
  return m === null ? undefined : Number(m[1]);
}

/** Every place the library may be, in the order they are tried (without duplicates). */
export function candidatePaths(spec: LibrarySpec, probe: HostProbe): Candidate[] {
  const override = probe.env[spec.envVar];
  if (override !== undefined && override !== "") return [{ path: override, source: "environment" }];
  const out: Candidate[] = [];
  const add = (path: string, source: CandidateSource): void => {
    if (!out.some((c) => c.path === path)) out.push({ path, source });
  };
  const home = probe.env["KILN_CUDA_HOME"];
  if (home !== undefined && home !== "") {
    for (const dir of libDirsOf(home)) for (const f of spec.fileNames) add(join(dir, f), "KILN_CUDA_HOME");
  }
  for (const site of sitePackages(probe)) {
    for (const pkg of spec.pipPackages) for (const f of spec.fileNames) add(join(site, "nvidia", pkg, "lib", f), "pip wheel");
  }
  const ld = probe.ldconfig();
  if (ld !== undefined) for (const f of spec.fileNames) for (const p of parseLdconfig(ld, f)) add(p, "ldconfig");
  const folders = [
    ...cudaRoots(probe).flatMap((root) => libDirsOf(root).slice(0, 2)),
    "/usr/local/nvidia/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
  ];
  for (const dir of folders) for (const f of spec.fileNames) add(join(dir, f), "standard folder");
  return out;
}

export interface Located<T> {
  readonly path: string;
  readonly library: T;
}

/**
 * Opens the first candidate that exists and loads. `open` is the loader (koffi.load in
 * production); its exception for a candidate is recorded and the next candidate tried.
 */
export function locateLibrary<T>(
  spec: LibrarySpec,
  open: (path: string) => T,
  probe: HostProbe = SYSTEM_PROBE,
  opts: { readonly driverVersion?: number } = {},
): Located<T> {
  const candidates = candidatePaths(spec, probe);
  const tried: string[] = [];
  const driverMajor = opts.driverVersion === undefined ? undefined : Math.floor(opts.driverVersion / 1000);
  for (const c of candidates) {
    if (!probe.exists(c.path)) {
      tried.push(`${c.path} (${c.source}): not found`);
      continue;
    }
    const major = spec === LIBCUDA ? undefined : sonameMajor(c.path);
    // an explicit override is tried as given; found ones must suit the driver
    if (c.source !== "environment" && major !== undefined && driverMajor !== undefined && major > driverMajor) {
      const v = opts.driverVersion ?? 0;
      tried.push(`${c.path} (${c.source}): a CUDA ${major} library, newer than the driver (CUDA ${driverMajor}.${Math.floor((v % 1000) / 10)}): skipped`);
      continue;
    }
    try {
      return { path: c.path, library: open(c.path) };
    } catch (e) {
      tried.push(`${c.path} (${c.source}): failed to load: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const hint =
    spec === LIBCUDA
      ? "Is an NVIDIA GPU with its driver present? "
      : "Is the CUDA toolkit (or its pip wheels) installed? ";
  throw new KilnError(
    "CUDA_UNAVAILABLE",
    `cannot load ${spec.title}: none of the ${tried.length} paths below loaded. ${hint}` +
      `Set ${spec.envVar} to the library file, or KILN_CUDA_HOME to the toolkit.\n  ${tried.join("\n  ")}`,
  );
}

/**
 * Folders that may hold the CUDA headers (cuda_bf16.h) for NVRTC, given where libnvrtc was found:
 * next to it (…/targets/x86_64-linux/include, …/include), KILN_CUDA_HOME/include, then the
 * standard toolkit roots. Only folders that exist are returned.
 */
export function cudaIncludeDirs(nvrtcPath: string, probe: HostProbe = SYSTEM_PROBE): string[] {
  const libDir = dirname(nvrtcPath);
  const dirs = [join(libDir, "../include"), join(libDir, "../../include"), join(libDir, "../../../include")];
  const home = probe.env["KILN_CUDA_HOME"];
  if (home !== undefined && home !== "") dirs.push(join(home, "include"));
  for (const root of cudaRoots(probe)) dirs.push(join(root, "include"));
  const unique = [...new Set(dirs)];
  return unique.filter((d) => probe.exists(join(d, "cuda_bf16.h")));
}
