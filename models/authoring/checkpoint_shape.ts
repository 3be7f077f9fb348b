/**
 * A checkpoint as the authoring tools see it: tensor names and shapes from the safetensors
 * headers, no data. Structure (which tensors exist, how they are sized) is what decides whether a
 * checkpoint fits a known decoder shape, so nothing here reads a weight.
 */
import { Checkpoint } from "../../runtime/io/checkpoint.ts";

/** tensor name → shape, sorted by name */
export type CheckpointShape = ReadonlyMap<string, readonly number[]>;

export function readCheckpointShape(dir: string): CheckpointShape {
  const ckpt = Checkpoint.open(dir);
  try {
    return new Map(ckpt.names().map((n) => [n, ckpt.info(n).shape] as const));
  } finally {
    ckpt.close();
  }
}

export function describeShape(shape: readonly number[] | undefined): string {
  return shape === undefined ? "(absent)" : `[${shape.join(", ")}]`;
}
