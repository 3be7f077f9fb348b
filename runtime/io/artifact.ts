/**
 * Engine artifacts: what `kiln compile` writes and `kiln run` / `kiln serve` load without tracing.
 *
 *   <out>/manifest.json          format version, model config, target, dtype, shapes, pieces,
 *                                kernels (+ CUDA launch configurations), capture sizes, file hashes
 *   <out>/graph.json             the optimized IR the program computes
 *   <out>/program.json           the compiled program the executor runs: buffers, steps, kernels
 *   <out>/kernels/module.{c,cu}  every generated kernel, one translation unit
 *   <out>/kernels/module.{so,cubin}  compiled, when a compiler was available (the manifest says
 *                                for which host or sm_XX; elsewhere the source is built at load)
 *   <out>/weights.safetensors    parameters re-laid out and stored as the program reads them
 *   <out>/weight_map.json        checkpoint tensor → parameter, each exactly once
 *   <out>/config.json, generation_config.json, tokenizer files (copied)
 *
 * The artifact is assembled in a sibling folder and renamed into place when complete, so a failed
 * compile leaves nothing half-written. The manifest goes in last and lists the size and SHA-256
 * of every other file: the loader refuses a truncated artifact (sizes) or an altered small file
 * (digests); `kiln verify` hashes the weights too.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { graphToJson } from "../../compiler/graph_json.ts";
import { kernelsPerLayer } from "../../compiler/fusion_report.ts";
import { KernelCache } from "../../compiler/kernel_cache.ts";
import { compile } from "../../compiler/pipeline.ts";
import { formatTarget, paramDtypes, type Target } from "../../compiler/program.ts";
import { renderCModule } from "../../compiler/render/c.ts";
import { cudaLaunch, renderCudaModule } from "../../compiler/render/cuda.ts";
import { programToJson } from "../../compiler/program_json.ts";
import { builtForLabel, cFlags, compileC, compileCuda, findCompiler, nvccFlags } from "../../compiler/toolchain.ts";
import type { ModelRegistry } from "../../models/registry.ts";
import { ARTIFACT_FORMAT, ARTIFACT_FORMAT_VERSION, MANIFEST_FILE } from "./artifact_loader.ts";
import { fileDigest } from "./file_digest.ts";
import { weightMapReport, writeArtifactWeights } from "./artifact_weights.ts";
import { isKilnError, KilnError } from "../engine/errors.ts";
import { configDtype, loadConfigJson } from "../../models/hf_config.ts";
import { isOnnxModelPath, modelFolderOf } from "../../models/onnx/onnx_path.ts";
import { loadModel } from "./model_loader.ts";
import { packagePath } from "./package_root.ts";
import { FLOAT_DTYPES, KV_DTYPES, type FloatDtype, type KvDtype } from "../../compiler/dtype.ts";

export const COPIED_FILES = [
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "chat_template.jinja",
  "special_tokens_map.json",
] as const;

export function parseTarget(s: string): Target {
  if (s === "cpu") return { kind: "cpu" };
  const m = /^cuda:(sm_\d+[a-z]?)$/.exec(s);
  if (m) return { kind: "cuda", arch: m[1]! };
  throw new KilnError("INVALID_ARGUMENT", `target '${s}' is not 'cpu' or 'cuda:sm_XX' (e.g. cuda:sm_90)`);
}

export function parseDtype(s: string): FloatDtype {
  const d = FLOAT_DTYPES.find((x) => x === s);
  if (d === undefined) throw new KilnError("INVALID_ARGUMENT", `dtype '${s}' is not one of ${FLOAT_DTYPES.join(", ")}`);
  return d;
}

/** A KV cache storage: a float dtype, or fp8 (e4m3, CUDA only). */
export function parseKvDtype(s: string): KvDtype {
  const d = KV_DTYPES.find((x) => x === s);
  if (d === undefined) throw new KilnError("INVALID_ARGUMENT", `KV cache dtype '${s}' is not one of ${KV_DTYPES.join(", ")}`);
  return d;
}

/** Decode batch sizes to capture CUDA graphs for: 1, 2, 4, then multiples of 8 up to max-num-seqs. */
export function captureSizes(maxNumSeqs: number): number[] {
  const sizes = [1, 2, 4].filter((s) => s <= maxNumSeqs);
  for (let s = 8; s < maxNumSeqs + 8 && s <= 512; s += 8) sizes.push(s);
  return sizes;
}

/** Long steps report through this; the CLI draws progress bars, tests pass nothing. */
export interface ProgressReporter {
  start(label: string, total: number): void;
  advance(by: number): void;
  finish(): void;
}
const SILENT: ProgressReporter = { start() {}, advance() {}, finish() {} };

export interface CompileArtifactOptions {
  readonly modelDir: string;
  readonly outDir: string;
  readonly target: Target;
  /** default: the checkpoint's dtype (f16 checkpoints become f32 on the CPU) */
  readonly dtype?: FloatDtype;
  /** the KV cache's storage on CUDA (default: as the weights; fp8 is e4m3) */
  readonly kvCacheDtype?: KvDtype;
  /** default: the model's max_position_embeddings */
  readonly maxModelLen?: number;
  readonly maxNumSeqs?: number;
  readonly ropeFreqBf16?: boolean;
  /** replace an existing non-empty output folder */
  readonly force?: boolean;
  readonly progress?: ProgressReporter;
  readonly cache?: KernelCache;
  readonly registry?: ModelRegistry;
}

export interface ArtifactSummary {
  readonly outDir: string;
  readonly target: string;
  readonly dtype: FloatDtype;
  readonly kernels: number;
  readonly steps: number;
  readonly kernelsPerLayer: { readonly before: readonly number[]; readonly after: readonly number[] };
  /** seconds per phase: load (read + trace), compile (passes → rendered source), binary, weights, hash */
  readonly seconds: Readonly<Record<"load" | "compile" | "binary" | "weights" | "hash" | "total", number>>;
  readonly bytes: { readonly total: number; readonly weights: number; readonly kernelSource: number; readonly binary: number };
  /** the compiler that built kernels/module.{so,cubin}, or undefined when none was available */
  readonly compiler: string | undefined;
}

const KILN_VERSION = String((JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")) as { version?: unknown }).version);

function defaultDtype(modelDir: string, target: Target): FloatDtype {
  // an ONNX graph's initializers are imported as f32; it has no config.json to say otherwise
  if (isOnnxModelPath(modelDir)) return "f32";
  const d = configDtype(loadConfigJson(modelDir));
  if (d === "bfloat16") return "bf16";
  return d === "float16" && target.kind === "cuda" ? "f16" : "f32";
}

export async function compileArtifact(opts: CompileArtifactOptions): Promise<ArtifactSummary> {
  const t0 = performance.now();
  const lap = ((): (() => number) => {
    let last = t0;
    return () => {
      const now = performance.now();
      const s = (now - last) / 1000;
      last = now;
      return s;
    };
  })();
  const progress = opts.progress ?? SILENT;
  const cuda = opts.target.kind === "cuda";
  const dtype = opts.dtype ?? defaultDtype(opts.modelDir, opts.target);
  if (!cuda && dtype === "f16") throw new KilnError("INVALID_ARGUMENT", "the CPU backend stores weights as f32 or bf16, not f16");
  if (!cuda && opts.kvCacheDtype !== undefined && opts.kvCacheDtype !== "f32") {
    throw new KilnError("INVALID_ARGUMENT", `the CPU backend keeps its KV cache in f32, not ${opts.kvCacheDtype}`);
  }
  const out = nodePath.resolve(opts.outDir);
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new KilnError("INVALID_ARGUMENT", `${out} exists and is not a folder`);
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0 && !opts.force) {
    throw new KilnError("INVALID_ARGUMENT", `${out} exists and is not empty; pass --force to replace it`);
  }

  progress.start("load checkpoint + trace", 1);
  const loaded = await loadModel(opts.modelDir, {
    weightStorage: dtype === "bf16" ? "bf16" : "f32",
    ...(opts.registry ? { registry: opts.registry } : {}),
    ...(opts.ropeFreqBf16 ? { ropeFreqBf16: true } : {}),
  });
  progress.advance(1);
  progress.finish();
  const maxModelLen = opts.maxModelLen ?? loaded.model.maxPositions;
  const maxNumSeqs = opts.maxNumSeqs ?? 256;
  if (!(Number.isInteger(maxModelLen) && maxModelLen >= 1 && maxModelLen <= loaded.model.maxPositions)) {
    throw new KilnError("INVALID_ARGUMENT", `--max-model-len ${maxModelLen} must be between 1 and the model's ${loaded.model.maxPositions} positions`);
  }
  if (!(Number.isInteger(maxNumSeqs) && maxNumSeqs >= 1)) throw new KilnError("INVALID_ARGUMENT", `--max-num-seqs ${maxNumSeqs} must be a positive integer`);
  const weightMap = weightMapReport(loaded.report, loaded.weights.keys(), opts.modelDir);
  const load = lap();

  const sizes = cuda ? captureSizes(maxNumSeqs) : [];
  const kvDtype = cuda ? (opts.kvCacheDtype ?? dtype) : undefined;
  const { graph, plan, program } = compile(loaded.graph, { target: opts.target, dtype, ...(kvDtype === undefined ? {} : { kvDtype }), captureSizes: sizes });
  const source = cuda ? renderCudaModule(program.kernels) : renderCModule(program.kernels);
  const compileSeconds = lap();

  const binary = await buildBinary(opts.target, source, opts.cache ?? new KernelCache(), progress);
  const binarySeconds = lap();

  const tmp = `${out}.partial-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(nodePath.join(tmp, "kernels"), { recursive: true });
  try {
    const ext = cuda ? "cu" : "c";
    const binExt = cuda ? "cubin" : "so";
    fs.writeFileSync(nodePath.join(tmp, "kernels", `module.${ext}`), source);
    if (binary) fs.writeFileSync(nodePath.join(tmp, "kernels", `module.${binExt}`), binary.data);
    fs.writeFileSync(nodePath.join(tmp, "graph.json"), graphToJson(graph));
    fs.writeFileSync(nodePath.join(tmp, "program.json"), programToJson(program));
    fs.writeFileSync(nodePath.join(tmp, "weight_map.json"), JSON.stringify(weightMap, null, 1));
    for (const f of COPIED_FILES) {
      // an .onnx model's tokenizer and generation config are in the folder beside it
      const src = nodePath.join(modelFolderOf(opts.modelDir), f);
      if (fs.existsSync(src)) fs.copyFileSync(src, nodePath.join(tmp, f));
    }
    // an ONNX graph's config is the one its import made (architecture, vocabulary, positions),
    // not a config.json that may lie beside the file
    if (isOnnxModelPath(opts.modelDir)) fs.writeFileSync(nodePath.join(tmp, "config.json"), JSON.stringify(loaded.config.raw, null, 1));
    const shapes = new Map<string, readonly number[]>();
    for (const n of graph.nodes) if (n.kind === "param") shapes.set(n.name, n.shape.map(Number));
    const storage = paramDtypes(program);
    progress.start("convert + write weights", shapes.size);
    const weights = writeArtifactWeights(nodePath.join(tmp, "weights.safetensors"), loaded.weights, shapes, cuda, dtype, () => progress.advance(1), storage);
    progress.finish();
    const weightSeconds = lap();

    const files = hashFiles(tmp, progress);
    const hash = lap();
    const perLayer = kernelsPerLayer(plan);
    const seconds = { load, compile: compileSeconds, binary: binarySeconds, weights: weightSeconds, hash, total: (performance.now() - t0) / 1000 };
    const manifest = {
      format: ARTIFACT_FORMAT,
      formatVersion: ARTIFACT_FORMAT_VERSION,
      kilnVersion: KILN_VERSION,
      // the folder's name only: an artifact that travels (a package) must not carry the build machine's paths
      model: { architecture: loaded.arch, source: nodePath.basename(nodePath.resolve(opts.modelDir)), config: loaded.config.raw },
      target: formatTarget(opts.target),
      dtype,
      ...(kvDtype === undefined ? {} : { kvCacheDtype: kvDtype }),
      shapes: { maxModelLen, maxNumSeqs, vocabSize: loaded.model.vocabSize, kvLayers: graph.kvLayers },
      cudaGraphCaptureSizes: sizes,
      pieces: program.pieces,
      kernelsPerLayer: perLayer,
      kernels: program.kernels.map((k) => ({
        name: k.name,
        ops: k.ops,
        rows: k.rows,
        params: k.params.map(({ name, io, elem, shape }) => ({ name, io, elem, shape })),
        ...(cuda ? { launch: cudaLaunch(k) } : {}),
      })),
      module: {
        source: `kernels/module.${ext}`,
        ...(binary ? { binary: { file: `kernels/module.${binExt}`, builtFor: cuda ? opts.target.arch : builtForLabel(), compiler: binary.compiler, flags: binary.flags } } : {}),
      },
      weights: { file: "weights.safetensors", ...weights },
      compileSeconds: seconds,
      files,
    };
    fs.writeFileSync(nodePath.join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 1));
    replaceDir(tmp, out);
    const size = (f: string): number => files[f]?.bytes ?? 0;
    return {
      outDir: out,
      target: formatTarget(opts.target),
      dtype,
      kernels: program.kernels.length,
      steps: program.steps.length,
      kernelsPerLayer: perLayer,
      seconds,
      bytes: {
        total: Object.values(files).reduce((n, f) => n + f.bytes, 0) + fs.statSync(nodePath.join(out, MANIFEST_FILE)).size,
        weights: size("weights.safetensors"),
        kernelSource: size(`kernels/module.${ext}`),
        binary: size(`kernels/module.${binExt}`),
      },
      compiler: binary?.compiler,
    };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Size and SHA-256 of every file under `dir`, by relative path. */
export function hashFiles(dir: string, progress: ProgressReporter = SILENT): Record<string, { bytes: number; sha256: string }> {
  const rel: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(nodePath.join(dir, d), { withFileTypes: true })) {
      const p = d === "" ? e.name : `${d}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (p !== MANIFEST_FILE) rel.push(p);
    }
  };
  walk("");
  rel.sort();
  progress.start("hash files", rel.length);
  const out: Record<string, { bytes: number; sha256: string }> = {};
  for (const p of rel) {
    out[p] = fileDigest(nodePath.join(dir, p));
    progress.advance(1);
  }
  progress.finish();
  return out;
}

interface Binary {
  readonly data: Uint8Array;
  readonly compiler: string;
  readonly flags: readonly string[];
}

/**
 * The compiled module, when a compiler is at hand: cc for the CPU; for CUDA, NVRTC where libnvrtc
 * loads (a GPU machine), else nvcc ahead of time. Without one the artifact carries source only and
 * the CUDA runtime compiles it at load.
 */
async function buildBinary(target: Target, source: string, cache: KernelCache, progress: ProgressReporter): Promise<Binary | undefined> {
  if (target.kind === "cuda") {
    try {
      const { NvrtcCompiler } = await import("../backends/cuda/nvrtc_compiler.ts");
      const nvrtc = NvrtcCompiler.open();
      progress.start("compile kernels (NVRTC)", 1);
      const compiled = nvrtc.compile({ name: "module.cu", source, headers: new Map() }, target.arch);
      progress.advance(1);
      progress.finish();
      return { data: compiled.cubin, compiler: `NVRTC ${nvrtc.version}`, flags: nvrtc.optionsFor(target.arch) };
    } catch (e) {
      if (!isKilnError(e, "CUDA_UNAVAILABLE")) throw e;
    }
  }
  const compiler = findCompiler(target.kind === "cuda" ? "nvcc" : process.env["CC"] ?? "cc");
  if (compiler.version === undefined) return undefined;
  progress.start(`compile kernels (${nodePath.basename(compiler.command)})`, 1);
  const built = target.kind === "cuda" ? compileCuda(source, target.arch, cache, compiler) : compileC(source, cache, compiler);
  progress.advance(1);
  progress.finish();
  const flags = target.kind === "cuda" ? nvccFlags(target.arch) : cFlags();
  return { data: fs.readFileSync(built.path), compiler: compiler.version, flags };
}

function replaceDir(from: string, to: string): void {
  const old = `${to}.old-${process.pid}`;
  const had = fs.existsSync(to);
  if (had) fs.renameSync(to, old);
  fs.renameSync(from, to);
  if (had) fs.rmSync(old, { recursive: true, force: true });
}
