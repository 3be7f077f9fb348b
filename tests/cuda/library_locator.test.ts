// Where the CUDA libraries are looked for, in which order, and what the error says when none
// loads — on a staged host (an injected HostProbe), so the test means the same on every machine.
import { describe, expect, it } from "vitest";
import { isKilnError } from "../../runtime/engine/errors.ts";
import {
  candidatePaths,
  cudaIncludeDirs,
  LIBCUBLASLT,
  LIBCUDA,
  LIBNVRTC,
  locateLibrary,
  parseLdconfig,
  type HostProbe,
} from "../../runtime/backends/cuda/library_locator.ts";

const LDCONFIG = [
  "1234 libs found in cache `/etc/ld.so.cache'",
  "\tlibnvrtc.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13",
  "\tlibcuda.so.1 (libc6,x86-64) => /usr/local/nvidia/lib64/libcuda.so.1",
  "\tlibcuda.so.1 (libc6) => /usr/lib32/libcuda.so.1",
  "\tlibcuda.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so",
].join("\n");

function probe(files: readonly string[], opts: { env?: Record<string, string>; ldconfig?: string; dirs?: Record<string, string[]> } = {}): HostProbe {
  return {
    env: opts.env ?? {},
    exists: (p) => files.includes(p),
    listDir: (p) => opts.dirs?.[p] ?? [],
    ldconfig: () => opts.ldconfig,
  };
}

describe("library locator", () => {
  it("parses ldconfig -p, keeping x86-64 entries of the exact file name", () => {
    expect(parseLdconfig(LDCONFIG, "libcuda.so.1")).toEqual(["/usr/local/nvidia/lib64/libcuda.so.1"]);
    expect(parseLdconfig(LDCONFIG, "libcuda.so")).toEqual(["/usr/lib/x86_64-linux-gnu/libcuda.so"]);
    expect(parseLdconfig(LDCONFIG, "libcublasLt.so.13")).toEqual([]);
  });

  it("searches KILN_CUDA_HOME, then ldconfig, then the standard folders (newest toolkit first)", () => {
    const p = probe([], {
      env: { KILN_CUDA_HOME: "/opt/cuda" },
      ldconfig: LDCONFIG,
      dirs: { "/usr/local": ["cuda-12.4", "cuda-13.0", "cuda-9.2", "bin", "cuda"] },
    });
    const paths = candidatePaths(LIBNVRTC, p).map((c) => `${c.source}: ${c.path}`);
    expect(paths.slice(0, 3)).toEqual([
      "KILN_CUDA_HOME: /opt/cuda/targets/x86_64-linux/lib/libnvrtc.so.13",
      "KILN_CUDA_HOME: /opt/cuda/targets/x86_64-linux/lib/libnvrtc.so.12",
      "KILN_CUDA_HOME: /opt/cuda/targets/x86_64-linux/lib/libnvrtc.so",
    ]);
    const ld = paths.indexOf("ldconfig: /usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13");
    const std = paths.indexOf("standard folder: /usr/local/cuda/targets/x86_64-linux/lib/libnvrtc.so.13");
    expect(ld).toBeGreaterThan(2);
    expect(std).toBeGreaterThan(ld);
    const order = ["/usr/local/cuda/lib64", "/usr/local/cuda-13.0/lib64", "/usr/local/cuda-12.4/lib64", "/usr/local/cuda-9.2/lib64", "/usr/local/nvidia/lib64"].map((d) =>
      paths.indexOf(`standard folder: ${d}/libnvrtc.so.13`),
    );
    expect(order.every((x, i) => x > 0 && (i === 0 || x > order[i - 1]!))).toBe(true);
    // the ldconfig hit is not tried twice
    expect(paths.filter((x) => x.endsWith("cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13"))).toHaveLength(1);
  });

  it("an explicit override is the only candidate", () => {
    const p = probe([], { env: { KILN_LIBCUDA: "/my/libcuda.so.1" }, ldconfig: LDCONFIG });
    expect(candidatePaths(LIBCUDA, p)).toEqual([{ path: "/my/libcuda.so.1", source: "environment" }]);
  });

  it("opens the first candidate that exists and loads, skipping one that fails to load", () => {
    const p = probe(["/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so"], { ldconfig: LDCONFIG });
    const opened: string[] = [];
    const found = locateLibrary(LIBCUDA, (path) => {
      opened.push(path);
      if (path.includes("nvidia")) throw new Error("wrong ELF class");
      return `handle:${path}`;
    }, p);
    expect(found).toEqual({ path: "/usr/lib/x86_64-linux-gnu/libcuda.so", library: "handle:/usr/lib/x86_64-linux-gnu/libcuda.so" });
    expect(opened).toEqual(["/usr/local/nvidia/lib64/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so"]);
  });

  it("fails with CUDA_UNAVAILABLE naming every path tried and why", () => {
    const p = probe(["/usr/local/cuda/lib64/libcublasLt.so.13"]);
    let err: unknown;
    try {
      locateLibrary(LIBCUBLASLT, () => {
        throw new Error("undefined symbol: cublasLtFoo");
      }, p);
    } catch (e) {
      err = e;
    }
    expect(isKilnError(err, "CUDA_UNAVAILABLE")).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain("libcublasLt");
    expect(msg).toContain("KILN_LIBCUBLASLT");
    expect(msg).toContain("/usr/local/cuda/lib64/libcublasLt.so.13 (standard folder): failed to load: undefined symbol: cublasLtFoo");
    expect(msg).toContain("/usr/local/nvidia/lib64/libcublasLt.so.13 (standard folder): not found");
    expect(msg).toContain("/usr/local/cuda/targets/x86_64-linux/lib/libcublasLt.so.12 (standard folder): not found");
  });

  it("finds the CUDA headers next to libnvrtc", () => {
    const p = probe(["/usr/local/cuda-13.0/targets/x86_64-linux/include/cuda_bf16.h", "/usr/local/cuda/include/cuda_bf16.h"]);
    expect(cudaIncludeDirs("/usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13", p)[0]).toBe("/usr/local/cuda-13.0/targets/x86_64-linux/include");
    // a pip wheel's nvrtc without headers falls back to the toolkit
    expect(cudaIncludeDirs("/opt/venv/nvidia/cu13/lib/libnvrtc.so.13", p)).toEqual(["/usr/local/cuda/include"]);
  });

  it("looks in NVIDIA's pip wheels of the active virtualenv before ldconfig, newest Python first", () => {
    const p = probe([], {
      env: { VIRTUAL_ENV: "/srv/venv", HOME: "/home/u" },
      ldconfig: LDCONFIG,
      dirs: { "/srv/venv/lib": ["python3.11", "python3.12", "site.py"], "/home/u/.local/lib": ["python3.10"] },
    });
    const paths = candidatePaths(LIBNVRTC, p).map((c) => `${c.source}: ${c.path}`);
    const wheel = (py: string, pkg: string, f: string): number => paths.indexOf(`pip wheel: /srv/venv/lib/${py}/site-packages/nvidia/${pkg}/lib/${f}`);
    expect(wheel("python3.12", "cu13", "libnvrtc.so.13")).toBe(0);
    expect(wheel("python3.12", "cuda_nvrtc", "libnvrtc.so.12")).toBeGreaterThan(0);
    expect(wheel("python3.11", "cu13", "libnvrtc.so.13")).toBeGreaterThan(wheel("python3.12", "cuda_nvrtc", "libnvrtc.so.12"));
    const user = paths.indexOf("pip wheel: /home/u/.local/lib/python3.10/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
    const ld = paths.indexOf("ldconfig: /usr/local/cuda-13.0/targets/x86_64-linux/lib/libnvrtc.so.13");
    expect(user).toBeGreaterThan(wheel("python3.11", "cu13", "libnvrtc.so.13"));
    expect(ld).toBeGreaterThan(user);
    // the driver is never a wheel
    expect(candidatePaths(LIBCUDA, p).some((c) => c.source === "pip wheel")).toBe(false);
  });

  it("passes over a toolkit library of a newer CUDA major than the driver, saying why; an explicit override is still tried", () => {
    const files = ["/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.12"];
    const opened: string[] = [];
    const open = (path: string): string => {
      opened.push(path);
      return path;
    };
    expect(locateLibrary(LIBCUBLASLT, open, probe(files), { driverVersion: 12040 }).path).toBe("/usr/local/cuda/lib64/libcublasLt.so.12");
    expect(opened).toEqual(["/usr/local/cuda/lib64/libcublasLt.so.12"]);
    expect(locateLibrary(LIBCUBLASLT, open, probe(files), { driverVersion: 13000 }).path).toBe("/usr/local/cuda/lib64/libcublasLt.so.13");
    let err: unknown;
    try {
      locateLibrary(LIBCUBLASLT, open, probe([files[0]!]), { driverVersion: 12040 });
    } catch (e) {
      err = e;
    }
    expect(isKilnError(err, "CUDA_UNAVAILABLE")).toBe(true);
    expect((err as Error).message).toContain("/usr/local/cuda/lib64/libcublasLt.so.13 (standard folder): a CUDA 13 library, newer than the driver (CUDA 12.4): skipped");
    const env = probe([files[0]!], { env: { KILN_LIBCUBLASLT: files[0]! } });
    expect(locateLibrary(LIBCUBLASLT, open, env, { driverVersion: 12040 }).path).toBe(files[0]);
  });
});
