/**
 * A safetensors reader that never holds a whole file in memory: the header is parsed and
 * validated once at `open`, and each tensor is read on demand by offset from an open file
 * descriptor, so a multi-GB checkpoint costs only the tensors actually asked for.
 *
 * Format: u64 little-endian header length N, then N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { str: str } }`,
 * then the data area; offsets are relative to the start of the data area.
 */
import fs from "node:fs";
import { KilnError } from "./errors.ts";

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

/** Node's readSync takes at most 2 GiB per call; big tensors are read in pieces below that. */
const READ_CHUNK = 1 << 30;

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private fd: number | undefined;

  private constructor(path: string, fd: number, tensors: ReadonlyMap<string, TensorInfo>, metadata: Readonly<Record<string, string>>) {
    this.path = path;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(path, "r");
    } catch (e) {
      throw new KilnError("MODEL_NOT_FOUND", `${path}: cannot open safetensors file`, { cause: e });
    }
    try {
      const { tensors, metadata } = readHeader(path, fd);
      return new SafetensorsFile(path, fd, tensors, metadata);
    } catch (e) {
      // Leave no descriptor behind when the header is rejected.
      fs.closeSync(fd);
      throw e;
    }
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (info === undefined) {
      throw new KilnError("TENSOR_MISSING", `${this.path}: no tensor named "${name}"`);
    }
    return info;
  }

  /** The tensor's raw little-endian bytes, in a fresh buffer (offset 0, so any typed view is aligned). */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    const fd = this.openFd();
    const out = new Uint8Array(info.byteLength);
    readFully(this.path, fd, out, info.fileOffset, `tensor "${name}"`);
    return out;
  }

  /** The tensor as float32; F16, BF16 and F64 are converted (F64 rounds to nearest). */
  readF32(name: string): Float32Array {
    const info = this.info(name);
    const convert = TO_F32[info.dtype];
    if (convert === undefined) throw this.dtypeError(info, "float32");
    return convert(this.readBytes(name).buffer);
  }

  /** The raw bfloat16 bit patterns, for kernels that consume bf16 directly. */
  readBf16Bits(name: string): Uint16Array {
    const info = this.info(name);
    if (info.dtype !== "BF16") throw this.dtypeError(info, "bf16 bits");
    return new Uint16Array(this.readBytes(name).buffer);
  }

  /** The tensor as int32, from I32 or from I64 when every value fits. */
  readI32(name: string): Int32Array {
    const info = this.info(name);
    if (info.dtype === "I32") return new Int32Array(this.readBytes(name).buffer);
    if (info.dtype !== "I64") throw this.dtypeError(info, "int32");
    const wide = new BigInt64Array(this.readBytes(name).buffer);
    const out = new Int32Array(wide.length);
    for (let i = 0; i < wide.length; i++) {
      const v = wide[i] ?? 0n;
      if (v < -2147483648n || v > 2147483647n) {
        throw new KilnError(
          "SAFETENSORS_DTYPE",
          `${this.path}: tensor "${name}" (I64) value ${v} at index ${i} does not fit in int32`,
        );
      }
      out[i] = Number(v);
    }
    return out;
  }

  /** Idempotent; reads after close fail with INVALID_ARGUMENT. */
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  private openFd(): number {
    if (this.fd === undefined) {
      throw new KilnError("INVALID_ARGUMENT", `${this.path}: safetensors file already closed`);
    }
    return this.fd;
  }

  private dtypeError(info: TensorInfo, wanted: string): KilnError {
    return new KilnError(
      "SAFETENSORS_DTYPE",
      `${this.path}: tensor "${info.name}" has dtype ${info.dtype}, which cannot be read as ${wanted}`,
    );
  }
}

// Typed-array views use host byte order; every platform Node supports is little-endian.
const TO_F32: Partial<Record<DType, (bytes: ArrayBufferLike) => Float32Array>> = {
  F32: (b) => new Float32Array(b),
  BF16: (b) => bf16BitsToF32(new Uint16Array(b)),
  F16: (b) => f16BitsToF32(new Uint16Array(b)),
  F64: (b) => Float32Array.from(new Float64Array(b)),
};

interface Header {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
}

function readHeader(path: string, fd: number): Header {
  const invalid = (msg: string): KilnError => new KilnError("SAFETENSORS_INVALID", `${path}: ${msg}`);
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) throw invalid(`file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readFully(path, fd, lenBuf, 0, "header length");
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(fileSize - 8)) {
    throw invalid(`header length ${headerLen} runs past the end of the ${fileSize}-byte file`);
  }
  const n = Number(headerLen);
  const headerBuf = Buffer.alloc(n);
  readFully(path, fd, headerBuf, 8, "header");
  let parsed: unknown;
  try {
    parsed = JSON.parse(headerBuf.toString("utf8"));
  } catch (e) {
    throw new KilnError("SAFETENSORS_INVALID", `${path}: header is not valid JSON`, { cause: e });
  }
  if (!isRecord(parsed)) throw invalid("header is not a JSON object");

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
  checkNoOverlap(path, tensors);
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
  const numel = shape.reduce((a, d) => a * d, 1);
  const expected = numel * DTYPE_SIZES[dtype];
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

function checkNoOverlap(path: string, tensors: ReadonlyMap<string, TensorInfo>): void {
  // Empty tensors occupy no bytes and may share an offset with anything.
  const spans = [...tensors.values()]
    .filter((t) => t.byteLength > 0)
    .sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0]);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1];
    const cur = spans[i];
    if (prev !== undefined && cur !== undefined && cur.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new KilnError(
        "SAFETENSORS_INVALID",
        `${path}: tensors "${prev.name}" and "${cur.name}" overlap in the data area`,
      );
    }
  }
}

/** Fill `out` from `position`; readSync may return short reads and takes at most 2 GiB per call. */
function readFully(path: string, fd: number, out: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < out.length) {
    const got = fs.readSync(fd, out, done, Math.min(READ_CHUNK, out.length - done), position + done);
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

/** bfloat16 is the top half of a float32, so widening is a 16-bit shift. */
export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = (bits[i] ?? 0) << 16;
  return new Float32Array(wide.buffer);
}

/** IEEE binary16 to float32; every half value is exact in float32, so this never rounds. */
export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i] ?? 0;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * frac * 2 ** -24; // zero or subnormal
    else if (exp === 0x1f) out[i] = frac === 0 ? sign * Infinity : NaN;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}
