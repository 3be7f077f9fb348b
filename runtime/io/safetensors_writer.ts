/**
 * Writes a safetensors file (for engine artifacts and test checkpoints). Tensors are written one
 * after another straight from their typed arrays, so the file is never assembled in memory, and
 * the bytes go to a temporary name that is renamed into place only when complete: a failed write
 * leaves nothing half-written behind.
 */
import fs from "node:fs";
import { KilnError } from "../engine/errors.ts";
import { DTYPE_SIZES, type DType } from "./safetensors.ts";

export interface TensorToWrite {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Little-endian element bytes, e.g. a Float32Array for F32 or a Uint16Array of bits for BF16. */
  readonly data: ArrayBufferView;
}

export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header["__metadata__"] = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || Object.hasOwn(header, t.name)) {
      throw new KilnError("INVALID_ARGUMENT", `${path}: duplicate or reserved tensor name "${t.name}"`);
    }
    const numel = t.shape.reduce((a, d) => a * d, 1);
    const expected = numel * DTYPE_SIZES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new KilnError(
        "INVALID_ARGUMENT",
        `${path}: tensor "${t.name}" has ${t.data.byteLength} bytes of data but shape ` +
          `[${t.shape.join(", ")}] of ${t.dtype} needs ${expected}`,
      );
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }

  // Pad the JSON with spaces to a multiple of 8 so the data area starts 8-byte aligned,
  // as the reference implementation does.
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w");
  let complete = false;
  try {
    writeAll(fd, len);
    writeAll(fd, json);
    for (const t of tensors) writeAll(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    complete = true;
  } finally {
    fs.closeSync(fd);
    if (!complete) fs.rmSync(tmp, { force: true });
  }
  fs.renameSync(tmp, path);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
}
