/**
 * Block identity for prefix caching: a full block is named by a hash chained over its parent's
 * hash and its own token ids, so equal hashes mean equal whole prefixes, not just equal blocks
 * (vLLM's hash_block_tokens). The root of the chain is the request's cache salt, so requests
 * with different salts never share blocks.
 *
 * SHA-256 makes an accidental collision (which would hand a request someone else's KV) as
 * unlikely as in vLLM's sha256 mode; the digest is kept as a base64 string for Map keys.
 */
import { createHash } from "node:crypto";

export type BlockHash = string;

export function hashBlock(parent: BlockHash | undefined, tokens: readonly number[], salt: string | undefined): BlockHash {
  const h = createHash("sha256");
  // parent digests are fixed-length base64, roots are marked apart, so encodings cannot collide
  if (parent !== undefined) h.update(`p${parent}`);
  else h.update(`r${salt === undefined ? "" : `${salt.length}:${salt}`}|`);
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest("base64");
}

/** Extends `hashes` (one per full block so far) to cover every full block of `tokens`. */
export function extendBlockHashes(
  hashes: BlockHash[],
  tokens: readonly number[],
  blockSize: number,
  salt: string | undefined,
): void {
  const full = Math.floor(tokens.length / blockSize);
  for (let b = hashes.length; b < full; b++) {
    hashes.push(hashBlock(hashes[b - 1], tokens.slice(b * blockSize, (b + 1) * blockSize), salt));
  }
}
