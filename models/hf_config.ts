/**
 * Reading Hugging Face `config.json`-style files. The JSON is wrapped once in a `ConfigReader`
 * whose typed accessors are the only way fields come out, so every missing or mistyped field
 * fails the same way: KilnError CONFIG_INVALID naming the file and the (dotted) field.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { describeRange, inRange, type ValueRange } from "./config_limits.ts";
import { KilnError } from "../runtime/engine/errors.ts";

// Rope settings are part of the config surface; they live in their own file for size.
export {
  parseRope,
  ropeAttentionScaling,
  ropeInvFreq,
  ropeInvFreqForLength,
  rotaryDimOf,
  type RopeConfig,
  type RopeScaling,
  type RopeType,
} from "./rope_config.ts";

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | JsonObject;
export interface JsonObject {
  readonly [key: string]: JsonValue;
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** transformers 5 writes non-finite floats as `{"__float__": "Infinity"}` since JSON has no literal for them. */
const SPECIAL_FLOATS: Readonly<Record<string, number>> = {
  Infinity: Infinity,
  "-Infinity": -Infinity,
  NaN: NaN,
};

export class ConfigReader {
  /** The file the values came from, named in every error. */
  readonly path: string;
  readonly raw: JsonObject;
  /** Dotted path of this object inside the file ("" at top level, "rope_parameters." nested). */
  private readonly prefix: string;

  constructor(raw: JsonObject, path: string, prefix = "") {
    this.raw = raw;
    this.path = path;
    this.prefix = prefix;
  }

  /** Present and not null. */
  has(key: string): boolean {
    const v = this.raw[key];
    return v !== undefined && v !== null;
  }

  keys(): string[] {
    return Object.keys(this.raw);
  }

  isObject(key: string): boolean {
    return isJsonObject(this.raw[key]);
  }

  /** With `range`, a value outside it is CONFIG_INVALID (see config_limits.ts). */
  int(key: string, range?: ValueRange): number {
    return this.required(key, this.optInt(key, range), "an integer");
  }
  float(key: string, range?: ValueRange): number {
    return this.required(key, this.optFloat(key, range), "a number");
  }
  bool(key: string): boolean {
    return this.required(key, this.optBool(key), "a boolean");
  }
  string(key: string): string {
    return this.required(key, this.optString(key), "a string");
  }
  intList(key: string, range?: ValueRange): number[] {
    return this.required(key, this.optIntList(key, range), "a list of integers");
  }
  floatList(key: string): number[] {
    return this.required(key, this.optFloatList(key), "a list of numbers");
  }
  stringList(key: string): string[] {
    return this.required(key, this.optStringList(key), "a list of strings");
  }
  object(key: string): ConfigReader {
    return this.required(key, this.optObject(key), "an object");
  }

  optInt(key: string, range?: ValueRange): number | undefined {
    return this.inRange(key, "an integer", range, this.opt(key, "an integer", toInt));
  }
  optFloat(key: string, range?: ValueRange): number | undefined {
    return this.inRange(key, "a number", range, this.opt(key, "a number", toFloat));
  }
  optBool(key: string): boolean | undefined {
    return this.opt(key, "a boolean", (v) => (typeof v === "boolean" ? v : undefined));
  }
  optString(key: string): string | undefined {
    return this.opt(key, "a string", (v) => (typeof v === "string" ? v : undefined));
  }
  optIntList(key: string, range?: ValueRange): number[] | undefined {
    const list = this.opt(key, "a list of integers", (v) => listOf(v, toInt));
    if (range !== undefined) list?.forEach((x, i) => this.inRange(`${key}[${i}]`, "an integer", range, x));
    return list;
  }
  optFloatList(key: string): number[] | undefined {
    return this.opt(key, "a list of numbers", (v) => listOf(v, toFloat));
  }
  optStringList(key: string): string[] | undefined {
    return this.opt(key, "a list of strings", (v) => listOf(v, (x) => (typeof x === "string" ? x : undefined)));
  }
  optObject(key: string): ConfigReader | undefined {
    return this.opt(key, "an object", (v) =>
      isJsonObject(v) ? new ConfigReader(v, this.path, `${this.prefix}${key}.`) : undefined,
    );
  }

  /** A CONFIG_INVALID error about `key`, for checks beyond type (ranges, allowed values). */
  error(key: string, problem: string): KilnError {
    return new KilnError("CONFIG_INVALID", `${this.path}: field "${this.prefix}${key}" ${problem}`);
  }

  private opt<T>(key: string, what: string, convert: (v: JsonValue) => T | undefined): T | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    const out = convert(v);
    if (out === undefined) throw this.error(key, `must be ${what}, got ${JSON.stringify(v)}`);
    return out;
  }

  private inRange(key: string, what: string, range: ValueRange | undefined, v: number | undefined): number | undefined {
    if (v !== undefined && range !== undefined && !inRange(v, range)) {
      throw this.error(key, `must be ${what} ${describeRange(range)}, got ${v}`);
    }
    return v;
  }

  private required<T>(key: string, v: T | undefined, what: string): T {
    if (v === undefined) throw this.error(key, `is missing (expected ${what})`);
    return v;
  }
}

function toInt(v: JsonValue): number | undefined {
  return typeof v === "number" && Number.isInteger(v) ? v : undefined;
}

function toFloat(v: JsonValue): number | undefined {
  if (typeof v === "number") return v;
  if (isJsonObject(v)) {
    const tag = v["__float__"];
    if (typeof tag === "string" && Object.hasOwn(SPECIAL_FLOATS, tag)) return SPECIAL_FLOATS[tag];
  }
  return undefined;
}

function listOf<T>(v: JsonValue, convert: (x: JsonValue) => T | undefined): T[] | undefined {
  if (!Array.isArray(v)) return undefined;
  const out: T[] = [];
  for (const x of v) {
    const c = convert(x);
    if (c === undefined) return undefined;
    out.push(c);
  }
  return out;
}

/** Parse a JSON file into a ConfigReader; an unreadable file gets `missingCode`, bad JSON CONFIG_INVALID. */
export function readJsonConfig(path: string, missingCode: "MODEL_NOT_FOUND" | "CONFIG_INVALID"): ConfigReader {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (e) {
    // Only absence is `missingCode`; a directory or an unreadable file in its place is a bad config.
    const absent = isErrnoCode(e, "ENOENT");
    throw new KilnError(absent ? missingCode : "CONFIG_INVALID", `${path}: cannot read file (${errnoText(e)})`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new KilnError("CONFIG_INVALID", `${path}: not valid JSON`, { cause: e });
  }
  if (!isJsonObject(parsed)) throw new KilnError("CONFIG_INVALID", `${path}: top level is not a JSON object`);
  return new ConfigReader(parsed, path);
}

function isErrnoCode(e: unknown, code: string): boolean {
  return e instanceof Error && "code" in e && e.code === code;
}

/** The system's reason for a failed file operation ("EISDIR: illegal operation on a directory, read"). */
function errnoText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The model folder's `config.json`; a folder without one is MODEL_NOT_FOUND. */
export function loadConfigJson(modelDir: string): ConfigReader {
  return readJsonConfig(nodePath.join(modelDir, "config.json"), "MODEL_NOT_FOUND");
}

/** HF `architectures` (e.g. ["LlamaForCausalLM"]); empty when the config does not say. */
export function architectures(reader: ConfigReader): string[] {
  return reader.optStringList("architectures") ?? [];
}

export const CONFIG_DTYPES = ["float32", "float16", "bfloat16", "float64"] as const;
export type ConfigDtype = (typeof CONFIG_DTYPES)[number];

/**
 * The checkpoint's declared dtype, from `dtype` (transformers 5) or the older `torch_dtype`;
 * undefined when absent or "auto".
 */
export function configDtype(reader: ConfigReader): ConfigDtype | undefined {
  const key = reader.has("dtype") ? "dtype" : "torch_dtype";
  const raw = reader.optString(key);
  if (raw === undefined || raw === "auto") return undefined;
  const name = raw.startsWith("torch.") ? raw.slice("torch.".length) : raw;
  const found = CONFIG_DTYPES.find((d) => d === name);
  if (found === undefined) throw reader.error(key, `has unsupported dtype "${raw}"`);
  return found;
}
