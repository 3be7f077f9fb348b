/**
 * Block identity for prefix caching: a full block is named by a hash chained over its parent's
 * hash and its own token ids, so equal hashes mean equal whole prefixes, not just equal blocks
 * (vLLM's hash_block_tokens). The root of the chain is the request's cache salt, so requests
 * with different salts never share blocks.
 *
 * SHA-256 makes an accidental collision (which would hand a request someone else's KV) as
 * unlikely as in vLLM's sha256 mode; the digest is kept as a base64 string for Map keys.
 */
import { hash } from "node:crypto";

export type BlockHash = string;

/**
 * The hash of tokens[start, end) chained to `parent` (or rooted in `salt`): SHA-256 over the
 * chain's head, then the ids as little-endian int32, hashed in one call.
 */
export function hashBlock(parent: BlockHash | undefined, tokens: readonly number[], salt: string | undefined, start = 0, end = tokens.length): BlockHash {
  // parent digests are fixed-length base64, roots are marked apart, so encodings cannot collide
  const head = parent !== undefined ? `p${parent}` : `r${salt === undefined ? "" : `${salt.length}:${salt}`}|`;
  const headBytes = Buffer.byteLength(head, "utf8");
  const bytes = Buffer.allocUnsafe(headBytes + 4 * (end - start));
  bytes.write(head, 0, "utf8");
  for (let i = start, at = headBytes; i < end; i++, at += 4) bytes.writeInt32LE(tokens[i]!, at);
  return hash("sha256", bytes, "base64");
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
    hashes.push(hashBlock(hashes[b - 1], tokens, salt, b * blockSize, (b + 1) * blockSize));
  }
}
