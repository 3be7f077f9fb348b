/** Test support for the ONNX importer: the fixtures' paths and references, and mutated copies of a model. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import onnxProto from "onnx-proto";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";

export const ONNX_FIXTURES = fileURLToPath(new URL("../fixtures/onnx/", import.meta.url));
export const MLP_BLOCK = join(ONNX_FIXTURES, "mlp_block.onnx");
export const TINY_LLAMA = join(ONNX_FIXTURES, "tiny_llama.onnx");

export interface MlpReference {
  /** [3, 5, 64] */
  readonly x: Float32Array;
  readonly y: Float32Array;
}

export function mlpReference(): MlpReference {
  const ref = SafetensorsFile.open(join(ONNX_FIXTURES, "mlp_block.reference.safetensors"));
  try {
    return { x: ref.readF32("x"), y: ref.readF32("y") };
  } finally {
    ref.close();
  }
}

export interface LlamaReference {
  /** input_ids [1, 12] */
  readonly ids: number[];
  /** logits [1, 12, 512] */
  readonly logits: Float32Array;
}

export function llamaReference(): LlamaReference {
  const ref = SafetensorsFile.open(join(ONNX_FIXTURES, "tiny_llama.reference.safetensors"));
  try {
    const b = ref.readBytes("input_ids");
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const ids = Array.from({ length: b.byteLength / 8 }, (_, i) => Number(dv.getBigInt64(8 * i, true)));
    return { ids, logits: ref.readF32("logits") };
  } finally {
    ref.close();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** What a mutation may change: the model, and its graph's node and initializer lists. */
export interface ModelEdit {
  readonly model: onnxProto.onnx.ModelProto;
  nodes: onnxProto.onnx.INodeProto[];
  initializers: onnxProto.onnx.ITensorProto[];
}

/** A copy of `path` changed by `edit`, written to a fresh temporary folder; returns the new path. */
export function mutatedModel(path: string, edit: (e: ModelEdit) => void, name = "mutated.onnx"): string {
  const m = onnxProto.onnx.ModelProto.decode(readFileSync(path));
  const g = m.graph;
  if (!g) throw new Error(`${path} has no graph`);
  const e: ModelEdit = { model: m, nodes: [...(g.node ?? [])], initializers: [...(g.initializer ?? [])] };
  edit(e);
  g.node = e.nodes;
  g.initializer = e.initializers;
  const out = join(mkdtempSync(join(tmpdir(), "kiln-onnx-")), name);
  writeFileSync(out, onnxProto.onnx.ModelProto.encode(m).finish());
  return out;
}

/** The first `bytes` bytes of `path`, as a truncated model file. */
export function truncatedModel(path: string, bytes: number): string {
  const out = join(mkdtempSync(join(tmpdir(), "kiln-onnx-")), "truncated.onnx");
  writeFileSync(out, readFileSync(path).subarray(0, bytes));
  return out;
}
