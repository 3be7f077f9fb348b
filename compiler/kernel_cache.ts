/**
 * The on-disk cache of compiled kernel binaries. A binary is found by a hash of everything that
 * determines it: the source, the compiler flags, the target architecture and the compiler's
 * version string. A miss builds into a temporary file beside the cache entry and renames it into
 * place, so concurrent processes (parallel test workers, two servers) never see half a file.
 *
 *   $KILN_CACHE_DIR/kernels/<sha256>.so      (default: ~/.cache/kiln/kernels)
 *
 * When that folder cannot be written (a read-only home), binaries go to a per-user folder under
 * the system temp directory instead: a cache that cannot be kept only costs recompiles.
 */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";

export interface CacheKeyParts {
  readonly source: string;
  readonly flags: readonly string[];
  /** `x86_64 <cpu model>` for native CPU code, `sm_90` for CUDA */
  readonly arch: string;
  /** the compiler's own version line */
  readonly compiler: string;
}

export interface CacheEntry {
  readonly path: string;
  /** false when this call compiled it */
  readonly hit: boolean;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env["KILN_CACHE_DIR"] ?? nodePath.join(os.homedir(), ".cache", "kiln");
  return nodePath.join(base, "kernels");
}

export class KernelCache {
  private writable: string | undefined;

  constructor(readonly dir: string = defaultCacheDir()) {}

  /** `dir`, or the temp-folder fallback when `dir` cannot be created or written */
  private writableDir(): string {
    if (this.writable !== undefined) return this.writable;
    for (const d of [this.dir, nodePath.join(os.tmpdir(), `kiln-kernels-${os.userInfo().uid}`)]) {
      try {
        fs.mkdirSync(d, { recursive: true });
        fs.accessSync(d, fs.constants.W_OK);
        this.writable = d;
        return d;
      } catch {
        // try the next place
      }
    }
    throw new Error(`no writable folder for compiled kernels (tried ${this.dir} and the temp directory)`);
  }

  key(parts: CacheKeyParts): string {
    const h = createHash("sha256");
    // length-prefixed fields, so no two different part lists hash the same bytes
    for (const field of [parts.source, JSON.stringify(parts.flags), parts.arch, parts.compiler]) {
      h.update(`${Buffer.byteLength(field)}:`).update(field);
    }
    return h.digest("hex");
  }

  /** The cached binary for `key`, built by `build(outPath)` first when it is not there yet. */
  getOrBuild(key: string, ext: string, build: (outPath: string) => void): CacheEntry {
    const found = [this.dir, this.writable].find((d) => d !== undefined && fs.existsSync(nodePath.join(d, `${key}${ext}`)));
    if (found !== undefined) return { path: nodePath.join(found, `${key}${ext}`), hit: true };
    const dir = this.writableDir();
    const path = nodePath.join(dir, `${key}${ext}`);
    if (fs.existsSync(path)) return { path, hit: true };
    const tmp = nodePath.join(dir, `.${key}.${process.pid}.${randomBytes(4).toString("hex")}${ext}`);
    try {
      build(tmp);
      fs.renameSync(tmp, path);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    return { path, hit: false };
  }
}
