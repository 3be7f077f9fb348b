/** A file's size and SHA-256, for artifact manifests, their checks and the kernels a backend loads. */
import { createHash } from "node:crypto";
import fs from "node:fs";

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
