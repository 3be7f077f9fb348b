/**
 * Loading an engine artifact (runtime/io/artifact.ts) instead of a model folder: the compiled
 * program comes from program.json with the optimized graph it computes (graph.json) and the
 * binary built from it (kernels/module.{so,cubin}), the weights from weights.safetensors, laid
 * out as the program stores them. Nothing is traced, compiled or mapped again: the executor runs
 * the stored program (runtime/backends/step_executor.ts's CompiledModel). The model class is still built
 * from config.json (without weights) for its vocabulary size and context length.
 *
 * Refused, with an error that says why: an artifact of another format version, one compiled for
 * another backend, and one with a file missing or of the wrong size. The small files (manifest,
 * graph, program, kernels, tokenizer) are checked against their SHA-256 in the manifest at every
 * load; the weights only by size, since hashing gigabytes would cost more than the load itself:
 * `kiln verify <artifact>` (or --verify) hashes every file on request.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { graphFromJson } from "../../compiler/graph_json.ts";
import { ropeFreqBf16 } from "../../compiler/passes/rope_freq_bf16.ts";
import { programFromJson } from "../../compiler/program_json.ts";
import { SINGLE_DEVICE } from "../../models/dsl/module.ts";
import { defaultRegistry } from "../../models/registry.ts";
import { readArtifactWeights } from "./artifact_weights.ts";
import { fileDigest } from "./file_digest.ts";
import { loadNative } from "../backends/cpu/native.ts";
import { KilnError } from "../engine/errors.ts";
import { architectures, isJsonObject, loadConfigJson } from "../../models/hf_config.ts";
import type { ArtifactInfo, LoadedModel, LoadOptions } from "./loaded_model.ts";

export type { ArtifactInfo } from "./loaded_model.ts";
import type { BackendName, CompiledModel, StoredModule } from "../backends/step_executor.ts";
import { FLOAT_DTYPES, KV_DTYPES, type FloatDtype, type KvDtype } from "../../compiler/dtype.ts";

/** The artifact format this kiln writes and reads; bump the version on any incompatible change. */
export const ARTIFACT_FORMAT = "kiln-engine";
/** 2: the stored program is what runs (program.json and its binary are read back; CUDA weights as the program stores them) */
export const ARTIFACT_FORMAT_VERSION = 2;
export const MANIFEST_FILE = "manifest.json";
/** The files checked only by size at load (hashed by `kiln verify`). */
export const LARGE_FILES: ReadonlySet<string> = new Set(["weights.safetensors"]);


/** A folder is an artifact when it has a manifest (a model folder never does). */
export function isArtifactDir(dir: string): boolean {
  return fs.existsSync(nodePath.join(dir, MANIFEST_FILE));
}

/**
 * The storage dtype an artifact's manifest declares, read without checking anything else
 * (undefined when the manifest cannot say); loading checks the whole artifact.
 */
export function declaredArtifactDtype(dir: string): FloatDtype | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined; // unreadable: loadArtifact reports it with the reason
  }
  return isJsonObject(raw) ? FLOAT_DTYPES.find((d) => d === raw["dtype"]) : undefined;
}

/** How an artifact's program holds the KV cache: its manifest's kvCacheDtype, else as its weights (undefined when unreadable). */
export function declaredArtifactKvDtype(dir: string): KvDtype | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined;
  }
  if (!isJsonObject(raw)) return undefined;
  return raw["kvCacheDtype"] === undefined ? FLOAT_DTYPES.find((d) => d === raw["dtype"]) : KV_DTYPES.find((d) => d === raw["kvCacheDtype"]);
}

function fail(dir: string, msg: string, code: "CONFIG_INVALID" | "MODEL_NOT_FOUND" | "INVALID_ARGUMENT" = "CONFIG_INVALID"): never {
  throw new KilnError(code, `engine artifact ${dir}: ${msg}`);
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}

export interface ReadArtifactOptions {
  /** the backend that will run it: an artifact compiled for another is refused */
  readonly backend?: BackendName;
  /** hash every file, the weights too (`kiln verify`, --verify) */
  readonly verify?: boolean;
}

/** Reads and checks the manifest, then every file it lists (sizes; digests of the small files, or of all with verify). */
export function readArtifact(dir: string, opts: ReadArtifactOptions = {}): ArtifactInfo {
  const backend = opts.backend ?? "cpu";
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, MANIFEST_FILE), "utf8"));
  } catch (e) {
    return fail(dir, `${MANIFEST_FILE} cannot be read as JSON (${String(e)}); recompile with \`kiln compile\``);
  }
  if (!isJsonObject(raw) || raw["format"] !== ARTIFACT_FORMAT) return fail(dir, `${MANIFEST_FILE} is not a ${ARTIFACT_FORMAT} manifest`);
  if (raw["formatVersion"] !== ARTIFACT_FORMAT_VERSION) {
    fail(dir, `format version ${JSON.stringify(raw["formatVersion"])} is not the version ${ARTIFACT_FORMAT_VERSION} this kiln reads; recompile with \`kiln compile\``);
  }
  const target = raw["target"];
  if (typeof target !== "string" || (target === "cpu" ? "cpu" : target.split(":")[0]) !== backend) {
    const hint = backend === "cpu" ? "compile with --target cpu" : "compile with --target cuda:sm_XX";
    fail(dir, `compiled for target ${JSON.stringify(target)}, but this backend runs '${backend}'; ${hint}`, "INVALID_ARGUMENT");
  }
  const dtype = FLOAT_DTYPES.find((d) => d === raw["dtype"]);
  const shapes = raw["shapes"];
  const maxModelLen = isJsonObject(shapes) ? positiveInt(shapes["maxModelLen"]) : undefined;
  const maxNumSeqs = isJsonObject(shapes) ? positiveInt(shapes["maxNumSeqs"]) : undefined;
  const files = raw["files"];
  if (dtype === undefined || maxModelLen === undefined || maxNumSeqs === undefined || !isJsonObject(files)) {
    return fail(dir, `${MANIFEST_FILE} lacks dtype, shapes or files`);
  }
  for (const required of ["graph.json", "program.json", "weights.safetensors", "config.json"]) {
    if (!(required in files)) fail(dir, `${MANIFEST_FILE} does not list ${required}`);
  }
  for (const [name, entry] of Object.entries(files)) {
    const path = nodePath.join(dir, name);
    if (!isJsonObject(entry) || typeof entry["sha256"] !== "string" || typeof entry["bytes"] !== "number") fail(dir, `bad entry for ${name}`);
    if (!fs.existsSync(path)) fail(dir, `${name} is missing`, "MODEL_NOT_FOUND");
    const size = fs.statSync(path).size;
    if (size !== entry["bytes"]) fail(dir, `${name} is ${size} bytes, the manifest says ${String(entry["bytes"])}: the file is truncated or corrupt`);
    if ((opts.verify === true || !LARGE_FILES.has(name)) && fileDigest(path).sha256 !== entry["sha256"]) {
      fail(dir, `${name} does not match its SHA-256 in the manifest: the file is corrupt or was edited`);
    }
  }
  return { dir, target, dtype, maxModelLen, maxNumSeqs, manifest: raw };
}

/** The kernel module the manifest names: its source, and its binary unless the artifact carries source only. */
function storedModule(dir: string, info: ArtifactInfo): StoredModule {
  const module = info.manifest["module"];
  if (!isJsonObject(module) || typeof module["source"] !== "string") return fail(dir, `${MANIFEST_FILE} does not name the kernel module`);
  const sourcePath = nodePath.join(dir, module["source"]);
  const binary = module["binary"];
  const files = info.manifest["files"];
  // source only (no compiler at compile time): the executor builds it, as for another machine
  if (!isJsonObject(binary)) return { sourcePath };
  const file = binary["file"];
  const builtFor = binary["builtFor"];
  const entry = isJsonObject(files) && typeof file === "string" ? files[file] : undefined;
  if (typeof file !== "string" || typeof builtFor !== "string" || !isJsonObject(entry) || typeof entry["sha256"] !== "string") {
    return fail(dir, `${MANIFEST_FILE}'s module binary entry is malformed`);
  }
  return { sourcePath, binary: { path: nodePath.join(dir, file), builtFor, sha256: entry["sha256"] } };
}

/** The program, its graph and its binary, as stored. */
function readCompiled(dir: string, info: ArtifactInfo, ropeBf16: boolean | undefined): CompiledModel {
  const graphPath = nodePath.join(dir, "graph.json");
  const graph = graphFromJson(fs.readFileSync(graphPath, "utf8"), graphPath);
  const rounded = ropeFreqBf16(graph);
  const alreadyRounded = graph.nodes.every((n, i) => n.kind !== "rope" || JSON.stringify(n.invFreq) === JSON.stringify((rounded.nodes[i] as typeof n).invFreq));
  if (ropeBf16 === true && !alreadyRounded) {
    fail(dir, "it was compiled without --rope-freq-bf16; recompile with it to run with bf16-rounded rotary frequencies", "INVALID_ARGUMENT");
  }
  let program;
  try {
    program = programFromJson(fs.readFileSync(nodePath.join(dir, "program.json"), "utf8"));
  } catch (e) {
    return fail(dir, `program.json cannot be read (${e instanceof Error ? e.message : String(e)}); recompile with \`kiln compile\``);
  }
  return { graph, program, module: storedModule(dir, info) };
}

export async function loadArtifact(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const info = readArtifact(dir, { backend: opts.backend ?? "cpu", ...(opts.verify === true ? { verify: true } : {}) });
  const storage = info.dtype === "bf16" ? "bf16" : "f32";
  if (opts.weightStorage !== undefined && opts.weightStorage !== storage) {
    fail(dir, `its weights are stored as ${storage}; recompile with --dtype ${opts.weightStorage} to run them as ${opts.weightStorage}`, "INVALID_ARGUMENT");
  }
  const config = loadConfigJson(dir);
  const { arch, cls } = await (opts.registry ?? defaultRegistry).resolve(architectures(config));
  const model = new cls({ config, ctx: { parallel: SINGLE_DEVICE, weightStorage: storage } });
  const compiled = readCompiled(dir, info, opts.ropeFreqBf16);
  const weights = readArtifactWeights(nodePath.join(dir, "weights.safetensors"), weightMapper());
  for (const b of compiled.program.buffers) {
    if (b.role.kind === "param" && !weights.has(b.role.name)) fail(dir, `weights.safetensors has no tensor for parameter '${b.role.name}'`);
  }
  const map: unknown = JSON.parse(fs.readFileSync(nodePath.join(dir, "weight_map.json"), "utf8"));
  const tensors = isJsonObject(map) ? map["tensors"] : undefined;
  const skipped = isJsonObject(map) ? map["skipped"] : undefined;
  if (!isJsonObject(tensors) || !Array.isArray(skipped)) return fail(dir, "weight_map.json is malformed");
  const report = {
    loaded: new Map(Object.entries(tensors).map(([k, v]) => [k, String(v)])),
    skipped: skipped.map(String),
  };
  return { dir, arch, config, model, graph: compiled.graph, weights, report, artifact: info, compiled };
}

/** The native addon's mmap where it loads (a CUDA-only bundle may run without it): weights are views of the page cache. */
function weightMapper(): ((path: string) => ArrayBuffer) | undefined {
  try {
    return loadNative().mapFile;
  } catch {
    return undefined;
  }
}

/** One file's check by `kiln verify`. */
export interface VerifiedFile {
  readonly file: string;
  readonly bytes: number;
  readonly ok: boolean;
  readonly problem?: string;
}

/** Hashes every file the manifest lists (weights included) and says which match; throws only when the manifest itself is unusable. */
export function verifyArtifact(dir: string): VerifiedFile[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, MANIFEST_FILE), "utf8"));
  } catch (e) {
    return fail(dir, `${MANIFEST_FILE} cannot be read as JSON (${String(e)})`);
  }
  const files = isJsonObject(raw) ? raw["files"] : undefined;
  if (!isJsonObject(raw) || raw["format"] !== ARTIFACT_FORMAT || !isJsonObject(files)) return fail(dir, `${MANIFEST_FILE} is not a ${ARTIFACT_FORMAT} manifest`);
  return Object.entries(files).map(([file, entry]): VerifiedFile => {
    const path = nodePath.join(dir, file);
    const expected = isJsonObject(entry) ? entry : {};
    if (!fs.existsSync(path)) return { file, bytes: 0, ok: false, problem: "missing" };
    const { bytes, sha256 } = fileDigest(path);
    if (bytes !== expected["bytes"]) return { file, bytes, ok: false, problem: `${bytes} bytes, the manifest says ${String(expected["bytes"])}` };
    if (sha256 !== expected["sha256"]) return { file, bytes, ok: false, problem: "SHA-256 differs from the manifest" };
    return { file, bytes, ok: true };
  });
}
