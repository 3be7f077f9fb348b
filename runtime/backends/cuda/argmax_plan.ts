/**
 * How the greedy pick of a step is split over the GPU (kernels/cuda/sampling.cu). One 256-thread
 * block a row (kiln_argmax_rows) reads a 128k-entry row on a single SM: at batch 1 that one block
 * takes longer than a small model's layer. Split into B blocks a row (kiln_argmax_partial, then
 * kiln_argmax_final over the B partials), the grid fills the GPU: B is chosen so that S·B is
 * about two waves of the SMs, with at least ARGMAX_MIN_CHUNK logits a block (below that the second
 * launch costs more than it saves) and at most ARGMAX_MAX_BLOCKS.
 */
import type { DevicePtr, Dim3 } from "./device.ts";

/** the most blocks a row: bounds the partials' scratch (argmaxPartsBytes) */
export const ARGMAX_MAX_BLOCKS = 64;
/** the fewest logits a block of a split row reads */
export const ARGMAX_MIN_CHUNK = 4096;

/** Blocks a row for S rows of V logits on a GPU with `multiprocessors` SMs; 1 means kiln_argmax_rows. */
export function argmaxBlocks(S: number, V: number, multiprocessors: number): number {
  if (S <= 0) return 1;
  const byWidth = Math.floor(V / ARGMAX_MIN_CHUNK);
  const byGrid = Math.ceil((2 * multiprocessors) / S);
  return Math.max(1, Math.min(ARGMAX_MAX_BLOCKS, byWidth, byGrid));
}

/** Bytes of the partials (a value and an index each) for up to S rows. */
export function argmaxPartsBytes(S: number): number {
  return Math.max(1, S) * ARGMAX_MAX_BLOCKS * 8;
}

/** What queues kernel launches (CudaKernels). */
interface ArgmaxLauncher {
  launch(name: "kiln_argmax_rows", grid: Dim3, block: Dim3, args: readonly [DevicePtr, DevicePtr, number, number]): void;
  launch(name: "kiln_argmax_partial", grid: Dim3, block: Dim3, args: readonly [DevicePtr, DevicePtr, DevicePtr, number, number, number]): void;
  launch(name: "kiln_argmax_final", grid: Dim3, block: Dim3, args: readonly [DevicePtr, DevicePtr, DevicePtr, number, number, number]): void;
}

/**
 * Queues the greedy pick of S rows of V logits into out[S] (i32), split into B blocks a row;
 * `parts` holds at least argmaxPartsBytes(S) bytes: [S, B] f32 values, then [S, B] i32 indices.
 */
export function launchArgmax(k: ArgmaxLauncher, out: DevicePtr, parts: DevicePtr, logits: DevicePtr, S: number, V: number, B: number): void {
  if (B <= 1) {
    k.launch("kiln_argmax_rows", [S, 1, 1], [256, 1, 1], [out, logits, S, V]);
    return;
  }
  if (B > ARGMAX_MAX_BLOCKS) throw new Error(`argmax split into ${B} blocks a row; at most ${ARGMAX_MAX_BLOCKS}`);
  const partAt = parts + BigInt(S * B * 4);
  k.launch("kiln_argmax_partial", [B, S, 1], [256, 1, 1], [parts, partAt, logits, S, V, B]);
  k.launch("kiln_argmax_final", [S, 1, 1], [32, 1, 1], [out, parts, partAt, S, V, B]);
}
