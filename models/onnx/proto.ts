/**
 * Reading an ONNX ModelProto into plain data: the graph's nodes with typed attributes, its
 * initializers as constants (raw data, typed fields, or external data files beside the model),
 * its inputs and outputs with their shapes, and the opsets it imports. Anything unreadable is a
 * KilnError ONNX_INVALID; an opset the importer was not written for is ONNX_UNSUPPORTED.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, normalize } from "node:path";
import onnxProto from "onnx-proto";
import { KilnError } from "../../runtime/engine/errors.ts";
import { makeConst, numelOf, type ConstTensor, type OnnxDtype } from "./const_tensor.ts";

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type Long = { toNumber(): number };

export type OnnxAttr =
  | { readonly type: "float"; readonly value: number }
  | { readonly type: "int"; readonly value: number }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "tensor"; readonly value: ConstTensor }
  | { readonly type: "floats"; readonly value: readonly number[] }
  | { readonly type: "ints"; readonly value: readonly number[] }
  | { readonly type: "other"; readonly value: number };

export interface OnnxNode {
  /** position in the graph's node list, named in errors */
  readonly index: number;
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  /** "" marks an omitted optional input */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: ReadonlyMap<string, OnnxAttr>;
}

/** A graph input or output: its element type and dims (a number, or a symbolic name). */
export interface OnnxValueInfo {
  readonly name: string;
  readonly dtype: OnnxDtype | undefined;
  readonly dims: readonly (number | string)[];
}

export interface OnnxModelFile {
  readonly path: string;
  /** the default domain's opset */
  readonly opset: number;
  readonly producer: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: ReadonlyMap<string, ConstTensor>;
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
}

/** The default-domain opsets the importer's op rules were written against. */
export const SUPPORTED_OPSETS = { min: 13, max: 21 } as const;

const DTYPES: Readonly<Record<number, OnnxDtype>> = { 1: "f32", 2: "u8", 3: "i8", 5: "i16", 6: "i32", 7: "i64", 9: "bool", 10: "f16", 11: "f64", 16: "bf16" };
const BYTES: Readonly<Record<OnnxDtype, number>> = { f32: 4, f16: 2, bf16: 2, f64: 8, i64: 8, i32: 4, i16: 2, i8: 1, u8: 1, bool: 1 };

const num = (v: number | Long | null | undefined): number => (v === null || v === undefined ? 0 : typeof v === "number" ? v : v.toNumber());

export function dtypeOf(code: number, what: string): OnnxDtype {
  const d = DTYPES[code];
  if (d === undefined) throw new KilnError("ONNX_UNSUPPORTED", `${what} has ONNX element type ${code}, which the importer does not read`);
  return d;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Little-endian bytes as numbers of the dtype (the view may be unaligned: read through a DataView). */
function decodeBytes(bytes: Uint8Array, dtype: OnnxDtype, count: number, what: string): number[] | Float32Array {
  if (bytes.length !== count * BYTES[dtype]) {
    throw new KilnError("ONNX_INVALID", `${what} holds ${bytes.length} bytes; ${count} ${dtype} values need ${count * BYTES[dtype]}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "f32") {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
    return out;
  }
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    switch (dtype) {
      case "f16": out[i] = f16ToF32(dv.getUint16(2 * i, true)); break;
      case "bf16": out[i] = new Float32Array(new Uint32Array([dv.getUint16(2 * i, true) << 16]).buffer)[0]!; break;
      case "f64": out[i] = dv.getFloat64(8 * i, true); break;
      case "i64": out[i] = Number(dv.getBigInt64(8 * i, true)); break;
      case "i32": out[i] = dv.getInt32(4 * i, true); break;
      case "i16": out[i] = dv.getInt16(2 * i, true); break;
      case "i8": out[i] = dv.getInt8(i); break;
      case "u8": case "bool": out[i] = dv.getUint8(i); break;
      default: throw new Error("unreachable");
    }
  }
  return out;
}

/** The bytes of an external-data tensor, read from the file its `location` names beside the model. */
function externalBytes(t: TensorProto, modelPath: string, what: string): Uint8Array {
  const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
  const location = entries.get("location");
  if (location === undefined || location === "") throw new KilnError("ONNX_INVALID", `${what} is stored externally but names no location`);
  const rel = normalize(location);
  if (isAbsolute(rel) || rel.startsWith("..")) throw new KilnError("ONNX_INVALID", `${what}: external data location '${location}' is outside the model's folder`);
  const file = join(dirname(modelPath), rel);
  if (!existsSync(file)) throw new KilnError("ONNX_INVALID", `${what}: external data file ${file} does not exist`);
  const all = readFileSync(file);
  const offset = Number(entries.get("offset") ?? "0");
  const length = entries.has("length") ? Number(entries.get("length")) : all.length - offset;
  if (!(offset >= 0 && length >= 0 && offset + length <= all.length)) {
    throw new KilnError("ONNX_INVALID", `${what}: bytes [${offset}, ${offset + length}) lie outside ${file} (${all.length} bytes)`);
  }
  return all.subarray(offset, offset + length);
}

export function readTensor(t: TensorProto, modelPath: string, what: string): ConstTensor {
  const dtype = dtypeOf(t.dataType ?? 0, what);
  const shape = (t.dims ?? []).map(num);
  const count = numelOf(shape);
  let values: ArrayLike<number>;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) values = decodeBytes(externalBytes(t, modelPath, what), dtype, count, what);
  else if (t.rawData && t.rawData.length > 0) values = decodeBytes(t.rawData, dtype, count, what);
  else if (dtype === "f32" && t.floatData && t.floatData.length > 0) values = t.floatData;
  else if (dtype === "f64" && t.doubleData && t.doubleData.length > 0) values = t.doubleData;
  else if (dtype === "i64" && t.int64Data && t.int64Data.length > 0) values = t.int64Data.map(num);
  else if (t.int32Data && t.int32Data.length > 0) {
    values = dtype === "f16" ? t.int32Data.map(f16ToF32) : dtype === "bf16" ? decodeBytes(new Uint8Array(new Uint16Array(t.int32Data).buffer), "bf16", count, what) : t.int32Data;
  } else values = [];
  if (values.length !== count) throw new KilnError("ONNX_INVALID", `${what} has shape [${shape.join(", ")}] but holds ${values.length} values`);
  return makeConst(dtype, shape, values);
}

function readAttr(a: onnxProto.onnx.IAttributeProto, modelPath: string, what: string): OnnxAttr {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.FLOAT: return { type: "float", value: a.f ?? 0 };
    case T.INT: return { type: "int", value: num(a.i) };
    case T.STRING: return { type: "string", value: Buffer.from(a.s ?? new Uint8Array()).toString("utf8") };
    case T.TENSOR:
      if (!a.t) throw new KilnError("ONNX_INVALID", `${what} has an empty tensor attribute`);
      return { type: "tensor", value: readTensor(a.t, modelPath, what) };
    case T.FLOATS: return { type: "floats", value: [...(a.floats ?? [])] };
    case T.INTS: return { type: "ints", value: (a.ints ?? []).map(num) };
    default: return { type: "other", value: a.type ?? 0 };
  }
}

function valueInfo(v: onnxProto.onnx.IValueInfoProto): OnnxValueInfo {
  const tt = v.type?.tensorType;
  const dims = (tt?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? num(d.dimValue) : "?"));
  const code = tt?.elemType ?? 0;
  return { name: v.name ?? "", dtype: DTYPES[code], dims };
}

/** Decodes an ONNX file; `path` names it in errors and locates external data. */
export function readOnnxModel(path: string): OnnxModelFile {
  if (!existsSync(path)) throw new KilnError("MODEL_NOT_FOUND", `ONNX model ${path} does not exist`);
  let proto: onnxProto.onnx.ModelProto;
  try {
    proto = onnx.ModelProto.decode(readFileSync(path));
  } catch (e) {
    throw new KilnError("ONNX_INVALID", `${path} is not a readable ONNX model (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  const g = proto.graph;
  if (!g || (g.node ?? []).length === 0) throw new KilnError("ONNX_INVALID", `${path} holds no graph (or an empty one)`);
  const opset = (proto.opsetImport ?? []).find((o) => (o.domain ?? "") === "" || o.domain === "ai.onnx");
  const version = num(opset?.version);
  if (version < SUPPORTED_OPSETS.min || version > SUPPORTED_OPSETS.max) {
    throw new KilnError("ONNX_UNSUPPORTED", `${path} imports opset ${version}; the importer reads opsets ${SUPPORTED_OPSETS.min}-${SUPPORTED_OPSETS.max}`);
  }
  const initializers = new Map<string, ConstTensor>();
  for (const t of g.initializer ?? []) initializers.set(t.name ?? "", readTensor(t, path, `initializer '${t.name ?? ""}'`));
  const nodes = (g.node ?? []).map((n, index): OnnxNode => {
    const what = `node ${index} '${n.name ?? ""}' (${n.opType ?? ""})`;
    const attrs = new Map<string, OnnxAttr>();
    for (const a of n.attribute ?? []) attrs.set(a.name ?? "", readAttr(a, path, what));
    return { index, name: n.name ?? "", opType: n.opType ?? "", domain: n.domain ?? "", inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
  });
  return {
    path,
    opset: version,
    producer: `${proto.producerName ?? ""} ${proto.producerVersion ?? ""}`.trim(),
    nodes,
    initializers,
    inputs: (g.input ?? []).filter((v) => !initializers.has(v.name ?? "")).map(valueInfo),
    outputs: (g.output ?? []).map(valueInfo),
  };
}
