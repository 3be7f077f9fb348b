/**
 * The native CPU kernels (kernels/cpu/*.cc, built by `npm run build:native` into
 * build/native/Release/kiln_cpu.node, or prebuilt in a package: prebuiltAddonPath). Every function works in place on preallocated typed arrays
 * and runs synchronously; shapes are passed explicitly and checked in C++, which throws a
 * TypeError (wrong array type, wrong argument count) or RangeError (wrong length, index outside a
 * cache) before touching memory. All matrices are row-major f32 unless noted.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { packagePath } from "../../io/package_root.ts";
import { KilnError } from "../../engine/errors.ts";

export interface NativeKernels {
  /** out[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]); w in PyTorch Linear layout [out_features, in_features]. */
  readonly gemmF32: (
    out: Float32Array,
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    M: number,
    N: number,
    K: number,
  ) => void;
  /** As gemmF32 with w [N,K] stored as bf16 bit patterns (f32 = bits << 16); f32 accumulation. */
  readonly gemmBf16: (
    out: Float32Array,
    x: Float32Array,
    w: Uint16Array,
    bias: Float32Array | null,
    M: number,
    N: number,
    K: number,
  ) => void;
  /**
   * x, out [rows, cols]; each row is cols/group groups of `group` elements, each normalised:
   * y = x / sqrt(mean(x²) + eps) · (w[j] + weightOffset), w [group]. weightOffset = 1 is Gemma's
   * (1 + w); group < cols is Qwen3's per-head q/k norm. out may be x itself.
   */
  readonly rmsNorm: (
    out: Float32Array,
    x: Float32Array,
    w: Float32Array,
    rows: number,
    cols: number,
    group: number,
    eps: number,
    weightOffset: number,
  ) => void;
  /**
   * In place on x [T, numHeads * headDim]: the first rotaryDim elements of each head rotate by
   * angle_i = f32(positions[t] · invFreq[i]), invFreq [rotaryDim/2]. neox: pairs (i, i + rotaryDim/2)
   * (HF rotate_half); otherwise pairs (2i, 2i+1) (GPT-J).
   */
  readonly rope: (
    x: Float32Array,
    positions: Int32Array,
    invFreq: Float32Array,
    T: number,
    numHeads: number,
    headDim: number,
    rotaryDim: number,
    neox: boolean,
  ) => void;
  /**
   * k, v [T, numKvHeads * headDim] → caches [numSlots, numKvHeads, headDim] at slot
   * slotMapping[t] (= block · blockSize + offset). All slots are checked before any is written.
   */
  readonly writeKv: (
    kCache: Float32Array,
    vCache: Float32Array,
    k: Float32Array,
    v: Float32Array,
    slotMapping: Int32Array,
    T: number,
    numKvHeads: number,
    headDim: number,
  ) => void;
  /**
   * Causal attention for a packed step of S sequences over the paged caches.
   * q, out [T, numHeads * headDim]; sequence s owns rows queryStartLoc[s] .. queryStartLoc[s+1]-1
   * (queryStartLoc [S+1], starting at 0); seqLens [S] counts cached + new tokens, so query i of s
   * sits at position seqLens[s] - qLen + i. Key j of s is at slot
   * blockTables[s · maxBlocksPerSeq + ⌊j / blockSize⌋] · blockSize + j mod blockSize.
   * GQA: head h reads kv head ⌊h / (numHeads / numKvHeads)⌋. slidingWindow 0 = none, else keys
   * with p - j < slidingWindow; softcap 0 = none, else score = softcap · tanh(score / softcap).
   */
  readonly pagedAttention: (
    out: Float32Array,
    q: Float32Array,
    kCache: Float32Array,
    vCache: Float32Array,
    queryStartLoc: Int32Array,
    seqLens: Int32Array,
    blockTables: Int32Array,
    maxBlocksPerSeq: number,
    blockSize: number,
    numHeads: number,
    numKvHeads: number,
    headDim: number,
    scale: number,
    slidingWindow: number,
    softcap: number,
  ) => void;
  /**
   * Threads (the caller included) that kernels split big enough work over: KILN_NUM_THREADS, else
   * OMP_NUM_THREADS, else the CPUs this process may run on. Read once, at the first call.
   */
  readonly numThreads: () => number;
  /**
   * The whole file as an ArrayBuffer, memory-mapped copy-on-write (nothing is read until touched;
   * writes stay private). Throws with the system's reason.
   */
  readonly mapFile: (path: string) => ArrayBuffer;
}

const KERNEL_NAMES = [
  "gemmF32",
  "gemmBf16",
  "rmsNorm",
  "rope",
  "writeKv",
  "pagedAttention",
  "numThreads",
  "mapFile",
] as const satisfies readonly (keyof NativeKernels)[];

/** Where `npm run build:native` puts the addon built from source. */
export const SOURCE_BUILD_PATH = packagePath("build", "native", "Release", "kiln_cpu.node");

/**
 * Where a package built once for many machines (tools/nightly.sh) carries the addon prebuilt for
 * this platform, built for a portable instruction set: such a package has no build/native and
 * must install without cmake or a compiler.
 */
export function prebuiltAddonPath(platform: string = process.platform, arch: string = process.arch): string {
  return packagePath("prebuilds", `${platform}-${arch}`, "kiln_cpu.node");
}

function isNativeKernels(mod: unknown): mod is NativeKernels {
  if (typeof mod !== "object" || mod === null) return false;
  return KERNEL_NAMES.every((name) => typeof Reflect.get(mod, name) === "function");
}

/**
 * Loads the addon (Node caches it, so repeated calls return the same object; still, load once and
 * keep the result). Throws KilnError NATIVE_UNAVAILABLE if it is not built or does not load.
 */
export function loadNative(): NativeKernels {
  return loadNativeFrom(addonPath());
}

/**
 * The prebuilt addon when the package carries one for this platform, else the source build. A
 * checkout has no prebuilds/ (tools/nightly.sh stages them outside the tree), so there the source
 * build is always the one loaded, and a rebuilt kernel is never shadowed by a stale prebuild.
 */
export function addonPath(): string {
  const prebuilt = prebuiltAddonPath();
  return existsSync(prebuilt) ? prebuilt : SOURCE_BUILD_PATH;
}

/** loadNative from an explicit path to kiln_cpu.node (tests, or a build kept elsewhere). */
export function loadNativeFrom(path: string): NativeKernels {
  if (!existsSync(path)) {
    throw new KilnError(
      "NATIVE_UNAVAILABLE",
      `the native CPU kernels are not built (no ${path}): run \`npm run build:native\``,
    );
  }
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)(path);
  } catch (cause) {
    throw new KilnError(
      "NATIVE_UNAVAILABLE",
      `the native CPU kernels at ${path} failed to load (${String(cause)}): rebuild with \`npm run build:native\``,
      { cause },
    );
  }
  if (!isNativeKernels(mod)) {
    throw new KilnError(
      "NATIVE_UNAVAILABLE",
      `${path} lacks some of ${KERNEL_NAMES.join(", ")}: it is stale, run \`npm run build:native\``,
    );
  }
  return mod;
}
