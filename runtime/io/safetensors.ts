/**
 * A safetensors reader that never holds a whole file in memory: the header is parsed and
 * validated once at `open`, and each tensor is read on demand by offset from an open file
 * descriptor, so a multi-GB checkpoint costs only the tensors actually asked for.
 *
 * The format and the header's validation live in safetensors_header.ts.
 */
import fs from "node:fs";
import { KilnError } from "../engine/errors.ts";
import { readFully, readHeader, type DType, type TensorInfo } from "./safetensors_header.ts";

export { DTYPE_SIZES, isDType, type DType, type TensorInfo } from "./safetensors_header.ts";

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
      // Absent is MODEL_NOT_FOUND; present but unopenable (permissions) is a bad file.
      const absent = e instanceof Error && "code" in e && e.code === "ENOENT";
      const why = e instanceof Error ? e.message : String(e);
      throw new KilnError(absent ? "MODEL_NOT_FOUND" : "SAFETENSORS_INVALID", `${path}: cannot open safetensors file (${why})`, { cause: e });
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
