/**
 * The safetensors header, read and validated exactly as the format's specification and its Rust
 * reference implementation require, so a file whose bytes are off by one is refused rather than
 * read one byte off:
 *
 *   u64 little-endian N, then N bytes of UTF-8 JSON (may be padded with trailing spaces):
 *   `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { str: str } }`,
 *   then the data section, which starts exactly at byte 8 + N.
 *
 * Every tensor's [begin, end) is relative to the data section, spans exactly
 * product(shape) × dtype size bytes, and the tensors, sorted by offset, tile the data section:
 * the first begins at 0, each begins where the previous ended, the last ends at the file's end.
 * Names are unique. Every failure is SAFETENSORS_INVALID naming the file (and the tensor).
 */
import fs from "node:fs";
import { KilnError } from "../engine/errors.ts";

/** Bytes per element for every dtype the format defines. */
// prettier-ignore
export const DTYPE_SIZES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
} as const satisfies Record<string, number>;

export type DType = keyof typeof DTYPE_SIZES;

export function isDType(s: string): s is DType {
  return Object.hasOwn(DTYPE_SIZES, s);
}

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** [begin, end) relative to the data area, exactly as written in the header. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute position of the first byte in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** The reference implementation refuses larger headers (a guard against a hostile length). */
const MAX_HEADER_BYTES = 100_000_000;
/** Node's readSync takes at most 2 GiB per call; big reads go in pieces below that. */
const READ_CHUNK = 1 << 30;

export function readHeader(path: string, fd: number): SafetensorsHeader {
  const invalid = (msg: string): KilnError => new KilnError("SAFETENSORS_INVALID", `${path}: ${msg}`);
  const stat = fs.fstatSync(fd);
  if (!stat.isFile()) throw invalid("is not a regular file");
  const fileSize = stat.size;
  if (fileSize < 8) throw invalid(`file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readFully(path, fd, lenBuf, 0, "header length");
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(fileSize - 8)) {
    throw invalid(`header length ${headerLen} runs past the end of the ${fileSize}-byte file`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw invalid(`header length ${headerLen} exceeds the format's ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  const headerBuf = Buffer.alloc(n);
  readFully(path, fd, headerBuf, 8, "header");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBuf);
  } catch (e) {
    throw new KilnError("SAFETENSORS_INVALID", `${path}: header is not valid UTF-8`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new KilnError("SAFETENSORS_INVALID", `${path}: header is not valid JSON (header length ${n} may be wrong)`, { cause: e });
  }
  if (!isRecord(parsed)) throw invalid("header is not a JSON object");
  // The spec: the header begins with "{" (JSON.parse alone would also take leading whitespace).
  if (!text.startsWith("{")) throw invalid(`header does not begin with "{" (header length ${n} may be wrong)`);
  // JSON.parse keeps the last of two equal keys; the format allows each name once.
  const duplicate = firstDuplicate(topLevelKeys(text));
  if (duplicate !== undefined) throw invalid(`"${duplicate}" appears twice in the header`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  let metadata: Readonly<Record<string, string>> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(entry, invalid);
      continue;
    }
    tensors.set(name, parseEntry(path, name, entry, dataStart, dataSize));
  }
  checkTiling(path, tensors, dataSize);
  return { tensors, metadata };
}

function parseMetadata(entry: unknown, invalid: (msg: string) => KilnError): Readonly<Record<string, string>> {
  if (!isRecord(entry)) throw invalid("__metadata__ is not an object");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") throw invalid(`__metadata__["${k}"] is not a string`);
    out[k] = v;
  }
  return out;
}

function parseEntry(path: string, name: string, entry: unknown, dataStart: number, dataSize: number): TensorInfo {
  const invalid = (msg: string): KilnError =>
    new KilnError("SAFETENSORS_INVALID", `${path}: tensor "${name}": ${msg}`);
  if (!isRecord(entry)) throw invalid("header entry is not an object");
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string") throw invalid("missing or non-string dtype");
  if (!isDType(dtype)) {
    throw new KilnError("SAFETENSORS_DTYPE", `${path}: tensor "${name}" has unknown dtype "${dtype}"`);
  }
  if (!isCountList(shape)) {
    throw invalid(`shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const begin = isCountList(offsets) && offsets.length === 2 ? offsets[0] : undefined;
  const end = isCountList(offsets) && offsets.length === 2 ? offsets[1] : undefined;
  if (begin === undefined || end === undefined) {
    throw invalid(`data_offsets must be [begin, end] integers, got ${JSON.stringify(offsets)}`);
  }
  if (begin > end || end > dataSize) {
    throw invalid(`data_offsets [${begin}, ${end}] out of range of the ${dataSize}-byte data area`);
  }
  const expected = byteSize(shape, DTYPE_SIZES[dtype]);
  if (expected === undefined) throw invalid(`shape [${shape.join(", ")}] has more elements than can be addressed`);
  if (end - begin !== expected) {
    throw invalid(
      `data_offsets span ${end - begin} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${expected}`,
    );
  }
  return {
    name,
    dtype,
    shape: [...shape],
    dataOffsets: [begin, end],
    fileOffset: dataStart + begin,
    byteLength: end - begin,
  };
}

/** product(shape) × elementSize, or undefined when a partial product leaves the safe integers. */
function byteSize(shape: readonly number[], elementSize: number): number | undefined {
  let n = elementSize;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/** Sorted by offset, the tensors must cover the data section exactly: no gap, no overlap, no tail. */
function checkTiling(path: string, tensors: ReadonlyMap<string, TensorInfo>, dataSize: number): void {
  const spans = [...tensors.values()].sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let covered = 0;
  let prev: TensorInfo | undefined;
  for (const t of spans) {
    const [begin] = t.dataOffsets;
    if (begin < covered) {
      throw new KilnError("SAFETENSORS_INVALID", `${path}: tensors "${prev?.name ?? ""}" and "${t.name}" overlap in the data area`);
    }
    if (begin > covered) {
      const after = prev === undefined ? "the start of the data area" : `tensor "${prev.name}"`;
      throw new KilnError("SAFETENSORS_INVALID", `${path}: tensor "${t.name}" begins at ${begin}, leaving a ${begin - covered}-byte gap after ${after}`);
    }
    covered = t.dataOffsets[1];
    prev = t;
  }
  if (covered !== dataSize) {
    throw new KilnError(
      "SAFETENSORS_INVALID",
      `${path}: the tensors cover ${covered} bytes but the data area after the header holds ${dataSize} (is the header length wrong?)`,
    );
  }
}

/** The keys of a JSON object's top level, duplicates included, from text JSON.parse accepted. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let atKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (depth === 1 && atKey) keys.push(String(JSON.parse(text.slice(i, end + 1))));
      atKey = false;
      i = end;
    } else if (ch === "{" || ch === "[") {
      depth++;
      atKey = depth === 1;
    } else if (ch === "}" || ch === "]") {
      depth--;
    } else if (ch === "," && depth === 1) {
      atKey = true;
    }
  }
  return keys;
}

function firstDuplicate(keys: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) return k;
    seen.add(k);
  }
  return undefined;
}

/** Fill `out` from `position`; readSync may return short reads and takes at most 2 GiB per call. */
export function readFully(path: string, fd: number, out: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < out.length) {
    let got: number;
    try {
      got = fs.readSync(fd, out, done, Math.min(READ_CHUNK, out.length - done), position + done);
    } catch (e) {
      throw new KilnError("SAFETENSORS_INVALID", `${path}: cannot read ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (got === 0) {
      throw new KilnError("SAFETENSORS_INVALID", `${path}: ${what} ends past the end of the file (changed since open?)`);
    }
    done += got;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCountList(v: unknown): v is readonly number[] {
  return Array.isArray(v) && v.every((x: unknown) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0);
}
