/**
 * Loading an engine artifact (runtime/artifact.ts) instead of a model folder: the optimized graph
 * comes from graph.json and the weights from weights.safetensors, so nothing is traced and no
 * checkpoint name is mapped again. The model class is still built from config.json (without
 * weights) for its vocabulary size and context length.
 *
 * Refused, with an error that says why: an artifact of another format version, one compiled for
 * another target, and one with a file missing, truncated or altered (sizes and SHA-256 hashes in
 * the manifest are checked before anything is read).
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import nodePath from "node:path";
import { graphFromJson } from "../compiler/graph_json.ts";
import { ropeFreqBf16 } from "../compiler/passes/rope_freq_bf16.ts";
import { STORAGE_DTYPES, type StorageDtype } from "../compiler/program.ts";
import { SINGLE_DEVICE } from "../models/dsl/module.ts";
import { defaultRegistry } from "../models/registry.ts";
import { readArtifactWeights } from "./artifact_weights.ts";
import { KilnError } from "./errors.ts";
import { architectures, isJsonObject, loadConfigJson, type JsonObject } from "./hf_config.ts";
import type { LoadedModel, LoadOptions } from "./model_loader.ts";

/** The artifact format this kiln writes and reads; bump the version on any incompatible change. */
export const ARTIFACT_FORMAT = "kiln-engine";
export const ARTIFACT_FORMAT_VERSION = 1;
export const MANIFEST_FILE = "manifest.json";

export interface ArtifactInfo {
  readonly dir: string;
  /** `cpu` or `cuda:sm_XX` */
  readonly target: string;
  readonly dtype: StorageDtype;
  readonly maxModelLen: number;
  readonly maxNumSeqs: number;
  /** the whole manifest, as read */
  readonly manifest: JsonObject;
}

/** Size and SHA-256 of a file, read in chunks (weights files may be far larger than a Buffer). */
export function fileDigest(path: string): { bytes: number; sha256: string } {
  const h = createHash("sha256");
  const chunk = Buffer.alloc(1 << 24);
  const fd = fs.openSync(path, "r");
  let bytes = 0;
  try {
    for (let n = fs.readSync(fd, chunk, 0, chunk.length, null); n > 0; n = fs.readSync(fd, chunk, 0, chunk.length, null)) {
      h.update(chunk.subarray(0, n));
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { bytes, sha256: h.digest("hex") };
}

/** A folder is an artifact when it has a manifest (a model folder never does). */
export function isArtifactDir(dir: string): boolean {
  return fs.existsSync(nodePath.join(dir, MANIFEST_FILE));
}

/**
 * The storage dtype an artifact's manifest declares, read without checking anything else
 * (undefined when the manifest cannot say); loading checks the whole artifact.
 */
export function declaredArtifactDtype(dir: string): StorageDtype | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(nodePath.join(dir, MANIFEST_FILE), "utf8"));
  } catch {
    return undefined; // unreadable: loadArtifact reports it with the reason
  }
  return isJsonObject(raw) ? STORAGE_DTYPES.find((d) => d === raw["dtype"]) : undefined;
}

function fail(dir: string, msg: string, code: "CONFIG_INVALID" | "MODEL_NOT_FOUND" | "INVALID_ARGUMENT" = "CONFIG_INVALID"): never {
  throw new KilnError(code, `engine artifact ${dir}: ${msg}`);
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}

/** Reads and checks the manifest, then every file it lists; `target` is what the caller runs. */
export function readArtifact(dir: string, target = "cpu"): ArtifactInfo {
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
  if (raw["target"] !== target) {
    fail(dir, `compiled for target ${JSON.stringify(raw["target"])}, but this backend runs '${target}'; compile with --target ${target}`, "INVALID_ARGUMENT");
  }
  const dtype = STORAGE_DTYPES.find((d) => d === raw["dtype"]);
  const shapes = raw["shapes"];
  const maxModelLen = isJsonObject(shapes) ? positiveInt(shapes["maxModelLen"]) : undefined;
  const maxNumSeqs = isJsonObject(shapes) ? positiveInt(shapes["maxNumSeqs"]) : undefined;
  const files = raw["files"];
  if (dtype === undefined || maxModelLen === undefined || maxNumSeqs === undefined || !isJsonObject(files)) {
    return fail(dir, `${MANIFEST_FILE} lacks dtype, shapes or files`);
  }
  for (const required of ["graph.json", "weights.safetensors", "config.json"]) {
    if (!(required in files)) fail(dir, `${MANIFEST_FILE} does not list ${required}`);
  }
  for (const [name, entry] of Object.entries(files)) {
    const path = nodePath.join(dir, name);
    if (!isJsonObject(entry) || typeof entry["sha256"] !== "string" || typeof entry["bytes"] !== "number") fail(dir, `bad entry for ${name}`);
    if (!fs.existsSync(path)) fail(dir, `${name} is missing`, "MODEL_NOT_FOUND");
    const size = fs.statSync(path).size;
    if (size !== entry["bytes"]) fail(dir, `${name} is ${size} bytes, the manifest says ${String(entry["bytes"])}: the file is truncated or corrupt`);
    if (fileDigest(path).sha256 !== entry["sha256"]) fail(dir, `${name} does not match its SHA-256 in the manifest: the file is corrupt or was edited`);
  }
  return { dir, target, dtype, maxModelLen, maxNumSeqs, manifest: raw };
}

export async function loadArtifact(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const info = readArtifact(dir, opts.target ?? "cpu");
  const storage = info.dtype === "bf16" ? "bf16" : "f32";
  if (opts.weightStorage !== undefined && opts.weightStorage !== storage) {
    fail(dir, `its weights are stored as ${storage}; recompile with --dtype ${opts.weightStorage} to run them as ${opts.weightStorage}`, "INVALID_ARGUMENT");
  }
  const config = loadConfigJson(dir);
  const { arch, cls } = await (opts.registry ?? defaultRegistry).resolve(architectures(config));
  const model = new cls({ config, ctx: { parallel: SINGLE_DEVICE, weightStorage: storage } });
  const graphPath = nodePath.join(dir, "graph.json");
  const stored = graphFromJson(fs.readFileSync(graphPath, "utf8"), graphPath);
  const graph = opts.ropeFreqBf16 ? ropeFreqBf16(stored) : stored;
  const weights = readArtifactWeights(nodePath.join(dir, "weights.safetensors"));
  for (const n of graph.nodes) {
    if (n.kind === "param" && !weights.has(n.name)) fail(dir, `weights.safetensors has no tensor for parameter '${n.name}'`);
  }
  const map: unknown = JSON.parse(fs.readFileSync(nodePath.join(dir, "weight_map.json"), "utf8"));
  const tensors = isJsonObject(map) ? map["tensors"] : undefined;
  const skipped = isJsonObject(map) ? map["skipped"] : undefined;
  if (!isJsonObject(tensors) || !Array.isArray(skipped)) return fail(dir, "weight_map.json is malformed");
  const report = {
    loaded: new Map(Object.entries(tensors).map(([k, v]) => [k, String(v)])),
    skipped: skipped.map(String),
  };
  return { dir, arch, config, model, graph, weights, report, artifact: info };
}
