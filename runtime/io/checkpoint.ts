/**
 * A model folder's weights as one name → tensor table, whether they live in a single
 * `model.safetensors` or in shards listed by `model.safetensors.index.json`.
 *
 * Which files count as the checkpoint, in order:
 *   1. `model.safetensors.index.json` present: exactly the shards its `weight_map` names.
 *   2. `model.safetensors` present: that file alone. (Model folders may hold other safetensors
 *      files that are not weights, e.g. our fixtures' `reference.safetensors`.)
 *   3. otherwise every `*.safetensors` in the folder.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { KilnError } from "../engine/errors.ts";
import { SafetensorsFile, type TensorInfo } from "./safetensors.ts";

const INDEX_FILE = "model.safetensors.index.json";
const SINGLE_FILE = "model.safetensors";

export class Checkpoint {
  readonly dir: string;
  private readonly files: readonly SafetensorsFile[];
  private readonly owner: ReadonlyMap<string, SafetensorsFile>;

  private constructor(dir: string, files: readonly SafetensorsFile[], owner: ReadonlyMap<string, SafetensorsFile>) {
    this.dir = dir;
    this.files = files;
    this.owner = owner;
  }

  static open(modelDir: string): Checkpoint {
    const layout = checkpointLayout(modelDir);
    const files: SafetensorsFile[] = [];
    try {
      for (const p of layout.paths) files.push(SafetensorsFile.open(p));
      const owner = new Map<string, SafetensorsFile>();
      for (const f of files) {
        for (const name of f.tensors.keys()) {
          const prev = owner.get(name);
          if (prev !== undefined) {
            throw new KilnError(
              "SAFETENSORS_INVALID",
              `tensor "${name}" appears in both ${prev.path} and ${f.path}`,
            );
          }
          owner.set(name, f);
        }
      }
      if (layout.weightMap !== undefined) checkIndexAgreesWithShards(modelDir, layout.weightMap, owner);
      return new Checkpoint(modelDir, files, owner);
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
  }

  /** Every tensor name, sorted so loaders and error messages are deterministic. */
  names(): string[] {
    return [...this.owner.keys()].sort();
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    return this.file(name).info(name);
  }

  /** The shard file holding `name`. */
  pathOf(name: string): string {
    return this.file(name).path;
  }

  readBytes(name: string): Uint8Array {
    return this.file(name).readBytes(name);
  }

  readF32(name: string): Float32Array {
    return this.file(name).readF32(name);
  }

  readBf16Bits(name: string): Uint16Array {
    return this.file(name).readBf16Bits(name);
  }

  readI32(name: string): Int32Array {
    return this.file(name).readI32(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private file(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (f === undefined) {
      throw new KilnError("TENSOR_MISSING", `${this.dir}: checkpoint has no tensor named "${name}"`);
    }
    return f;
  }
}

interface Layout {
  readonly paths: readonly string[];
  /** tensor name → absolute shard path, when the folder has an index. */
  readonly weightMap: ReadonlyMap<string, string> | undefined;
}

function checkpointLayout(modelDir: string): Layout {
  let entries: string[];
  try {
    entries = fs.readdirSync(modelDir);
  } catch (e) {
    throw new KilnError("MODEL_NOT_FOUND", `${modelDir}: model folder cannot be read`, { cause: e });
  }
  if (entries.includes(INDEX_FILE)) {
    const weightMap = readWeightMap(modelDir);
    return { paths: [...new Set(weightMap.values())].sort(), weightMap };
  }
  if (entries.includes(SINGLE_FILE)) return { paths: [nodePath.join(modelDir, SINGLE_FILE)], weightMap: undefined };
  const all = entries.filter((e) => e.endsWith(".safetensors")).sort();
  if (all.length === 0) {
    throw new KilnError("MODEL_NOT_FOUND", `${modelDir}: no ${INDEX_FILE} and no *.safetensors files`);
  }
  return { paths: all.map((e) => nodePath.join(modelDir, e)), weightMap: undefined };
}

/** tensor name → absolute shard path, from the index's weight_map. */
function readWeightMap(modelDir: string): ReadonlyMap<string, string> {
  const indexPath = nodePath.join(modelDir, INDEX_FILE);
  const invalid = (msg: string): KilnError => new KilnError("SAFETENSORS_INVALID", `${indexPath}: ${msg}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new KilnError("SAFETENSORS_INVALID", `${indexPath}: cannot read or parse JSON`, { cause: e });
  }
  const weightMap = isRecord(parsed) ? parsed["weight_map"] : undefined;
  if (!isRecord(weightMap)) throw invalid(`"weight_map" is missing or not an object`);
  const root = nodePath.resolve(modelDir);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string") throw invalid(`weight_map["${name}"] is not a file name`);
    const full = nodePath.resolve(root, shard);
    // A shard must sit inside the model folder; anything else is a corrupt or hostile index.
    if (!full.startsWith(root + nodePath.sep)) throw invalid(`weight_map["${name}"] = "${shard}" leaves the model folder`);
    out.set(name, full);
  }
  if (out.size === 0) throw invalid(`"weight_map" is empty`);
  return out;
}

/** With an index, each listed tensor must be in the shard the index names. */
function checkIndexAgreesWithShards(
  modelDir: string,
  weightMap: ReadonlyMap<string, string>,
  owner: ReadonlyMap<string, SafetensorsFile>,
): void {
  for (const [name, shard] of weightMap) {
    const f = owner.get(name);
    if (f === undefined || nodePath.resolve(f.path) !== shard) {
      throw new KilnError(
        "SAFETENSORS_INVALID",
        `${nodePath.join(modelDir, INDEX_FILE)}: weight_map puts "${name}" in ${shard}, but that shard does not hold it`,
      );
    }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
