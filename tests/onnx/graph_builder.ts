/**
 * Test support: small ONNX graphs written with onnx-proto, to exercise importer rules the
 * fixtures do not (Gemm, Split, Shape arithmetic, ...) against onnxruntime on the same file.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;
type Attr = number | readonly number[] | { readonly f: number };

export interface GraphSpec {
  readonly opset: number;
  readonly inputs: readonly { readonly name: string; readonly dims: readonly (number | string)[]; readonly int?: boolean }[];
  readonly outputs: readonly { readonly name: string; readonly dims: readonly (number | string)[] }[];
  readonly initializers: readonly onnxProto.onnx.ITensorProto[];
  readonly nodes: readonly onnxProto.onnx.INodeProto[];
}

export function floats(name: string, dims: readonly number[], values: ArrayLike<number>): onnxProto.onnx.ITensorProto {
  return { name, dims: [...dims], dataType: onnx.TensorProto.DataType.FLOAT, floatData: Array.from(values) };
}

export function ints(name: string, values: readonly number[], dims: readonly number[] = [values.length]): onnxProto.onnx.ITensorProto {
  return { name, dims: [...dims], dataType: onnx.TensorProto.DataType.INT64, int64Data: [...values] };
}

export function op(opType: string, inputs: readonly string[], outputs: readonly string[], attrs: Readonly<Record<string, Attr>> = {}): onnxProto.onnx.INodeProto {
  const T = onnx.AttributeProto.AttributeType;
  const attribute = Object.entries(attrs).map(([name, v]): onnxProto.onnx.IAttributeProto =>
    typeof v === "number" ? { name, type: T.INT, i: v } : Array.isArray(v) ? { name, type: T.INTS, ints: [...(v as readonly number[])] } : { name, type: T.FLOAT, f: (v as { f: number }).f },
  );
  return { opType, input: [...inputs], output: [...outputs], name: `${opType}_${outputs[0] ?? ""}`, attribute };
}

function valueInfo(name: string, dims: readonly (number | string)[], int: boolean): onnxProto.onnx.IValueInfoProto {
  const elemType = int ? onnx.TensorProto.DataType.INT64 : onnx.TensorProto.DataType.FLOAT;
  return { name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } } } };
}

/** Writes the graph as a model file in a fresh temporary folder; returns its path. */
export function writeGraph(spec: GraphSpec): string {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: spec.opset }],
    producerName: "kiln-tests",
    graph: {
      name: "g",
      node: [...spec.nodes],
      initializer: [...spec.initializers],
      input: spec.inputs.map((i) => valueInfo(i.name, i.dims, i.int === true)),
      output: spec.outputs.map((o) => valueInfo(o.name, o.dims, false)),
    },
  });
  const path = join(mkdtempSync(join(tmpdir(), "kiln-onnx-graph-")), "graph.onnx");
  writeFileSync(path, onnx.ModelProto.encode(model).finish());
  return path;
}

/** Deterministic values in [-1, 1). */
export function pseudoRandom(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}
