/**
 * Constant folding at import: a node whose inputs are all constants (shape arithmetic, masks,
 * ranges, rotary tables) is evaluated here, so only the computation on activations reaches the
 * IR. Float results are rounded to float32 as onnxruntime computes them.
 */
import { nodeError, attrInt, attrInts, normAxis } from "./context.ts";
import {
  broadcastShapes,
  broadcastTo,
  isFloatDtype,
  makeConst,
  numelOf,
  stridesOf,
  type ConstTensor,
  type OnnxDtype,
} from "./const_tensor.ts";
import { dtypeOf, type OnnxNode } from "./proto.ts";

type Binary = (a: number, b: number) => number;
const BINARY: Readonly<Record<string, Binary>> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
  Equal: (a, b) => Number(a === b),
  Less: (a, b) => Number(a < b),
  Greater: (a, b) => Number(a > b),
  And: (a, b) => Number(a !== 0 && b !== 0),
  Or: (a, b) => Number(a !== 0 || b !== 0),
};
const COMPARE = new Set(["Equal", "Less", "Greater", "And", "Or"]);
const UNARY: Readonly<Record<string, (x: number) => number>> = {
  Neg: (x) => -x,
  Sqrt: Math.sqrt,
  Reciprocal: (x) => 1 / x,
  Cos: Math.cos,
  Sin: Math.sin,
  Exp: Math.exp,
  Not: (x) => Number(x === 0),
  Abs: Math.abs,
};

function intDiv(dtype: OnnxDtype, v: number): number {
  return isFloatDtype(dtype) ? v : Math.trunc(v);
}

function elementwise(a: ConstTensor, b: ConstTensor, f: Binary, out: OnnxDtype, node: OnnxNode): ConstTensor {
  const shape = broadcastShapes(a.shape, b.shape);
  if (!shape) throw nodeError(node, `constant shapes [${a.shape.join(", ")}] and [${b.shape.join(", ")}] do not broadcast`, "ONNX_INVALID");
  const x = broadcastTo(a, shape).data;
  const y = broadcastTo(b, shape).data;
  return makeConst(out, shape, Array.from(x, (v, i) => intDiv(out, f(v, y[i]!))));
}

/** Elements of `t` at the given N-d index function, into `shape`. */
function gatherIndex(t: ConstTensor, shape: readonly number[], src: (idx: number[]) => number): ConstTensor {
  const n = numelOf(shape);
  const strides = stridesOf(shape);
  const out = new Array<number>(n);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let rem = i;
    for (let d = 0; d < shape.length; d++) {
      idx[d] = Math.floor(rem / strides[d]!);
      rem -= idx[d]! * strides[d]!;
    }
    out[i] = t.data[src(idx)]!;
  }
  return makeConst(t.dtype, shape, out);
}

function offsetOf(shape: readonly number[], idx: readonly number[]): number {
  const s = stridesOf(shape);
  return idx.reduce((acc, v, d) => acc + v * s[d]!, 0);
}

/** ONNX Reshape's target: 0 copies the input's dim (unless allowzero), one -1 is inferred. */
export function reshapeTarget(node: OnnxNode, input: readonly number[], target: readonly number[], allowZero: boolean): number[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? input[i]! : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = numelOf(input);
  const inferred = out.filter((d) => d === -1).length;
  if (inferred > 1) throw nodeError(node, "reshape target has more than one -1", "ONNX_INVALID");
  const res = out.map((d) => (d === -1 ? total / known : d));
  if (numelOf(res) !== total || res.some((d) => !Number.isInteger(d) || d < 0)) {
    throw nodeError(node, `cannot reshape [${input.join(", ")}] to [${target.join(", ")}]`, "ONNX_INVALID");
  }
  return res;
}

/** Slice bounds of one axis clamped as ONNX does. */
export function sliceRange(start: number, end: number, step: number, size: number): { start: number; count: number } {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + size : start;
  let e = end < 0 ? end + size : end;
  if (step > 0) {
    s = clamp(s, 0, size);
    e = clamp(e, 0, size);
  } else {
    s = clamp(s, -1, size - 1);
    e = clamp(e, -1, size - 1);
  }
  return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
}

/** Folds `node`; undefined when its op is not one the importer folds. */
export function foldNode(node: OnnxNode, ins: readonly (ConstTensor | undefined)[], opset: number): ConstTensor[] | undefined {
  const op = node.opType;
  const need = (i: number): ConstTensor => {
    const t = ins[i];
    if (!t) throw nodeError(node, `input ${i} is missing`, "ONNX_INVALID");
    return t;
  };
  if (node.domain !== "" && node.domain !== "ai.onnx") return undefined;
  const binary = BINARY[op];
  if (binary) {
    const a = need(0);
    return [elementwise(a, need(1), binary, COMPARE.has(op) ? "bool" : a.dtype, node)];
  }
  const unary = UNARY[op];
  if (unary) {
    const a = need(0);
    return [makeConst(a.dtype, a.shape, Array.from(a.data, unary))];
  }
  switch (op) {
    case "Identity":
      return [need(0)];
    case "Cast": {
      const to = dtypeOf(attrInt(node, "to", 1), `${node.opType} target`);
      const a = need(0);
      return [makeConst(to, a.shape, Array.from(a.data, (v) => (isFloatDtype(to) ? v : to === "bool" ? Number(v !== 0) : Math.trunc(v))))];
    }
    case "Shape": {
      const a = need(0);
      const start = attrInt(node, "start", 0);
      const end = attrInt(node, "end", a.shape.length);
      const r = sliceRange(start, end, 1, a.shape.length);
      return [makeConst("i64", [r.count], a.shape.slice(r.start, r.start + r.count))];
    }
    case "Size":
      return [makeConst("i64", [], [numelOf(need(0).shape)])];
    case "Reshape": {
      const a = need(0);
      const shape = reshapeTarget(node, a.shape, Array.from(need(1).data), attrInt(node, "allowzero", 0) === 1);
      return [{ ...a, shape }];
    }
    case "Unsqueeze": {
      const a = need(0);
      const given = opset < 13 ? (attrInts(node, "axes") ?? []) : Array.from(need(1).data);
      const axes = given.map((ax) => normAxis(node, ax, a.shape.length + given.length));
      const shape = [...a.shape];
      for (const ax of [...axes].sort((p, q) => p - q)) shape.splice(ax, 0, 1);
      return [{ ...a, shape }];
    }
    case "Squeeze": {
      const a = need(0);
      const given = attrInts(node, "axes") ?? (ins[1] ? Array.from(ins[1].data) : undefined);
      const axes = given?.map((ax) => normAxis(node, ax, a.shape.length)) ?? a.shape.flatMap((d, i) => (d === 1 ? [i] : []));
      return [{ ...a, shape: a.shape.filter((_, i) => !axes.includes(i)) }];
    }
    case "Concat": {
      const parts = ins.map((_, i) => need(i));
      const axis = normAxis(node, attrInt(node, "axis", 0), parts[0]!.shape.length);
      const shape = [...parts[0]!.shape];
      shape[axis] = parts.reduce((s, p) => s + p.shape[axis]!, 0);
      const starts: number[] = [];
      let acc = 0;
      for (const p of parts) {
        starts.push(acc);
        acc += p.shape[axis]!;
      }
      const values = new Array<number>(numelOf(shape)).fill(0);
      const strides = stridesOf(shape);
      parts.forEach((p, pi) => {
        const ps = stridesOf(p.shape);
        for (let i = 0; i < p.data.length; i++) {
          let rem = i;
          let o = 0;
          for (let d = 0; d < p.shape.length; d++) {
            const id = Math.floor(rem / ps[d]!);
            rem -= id * ps[d]!;
            o += (d === axis ? id + starts[pi]! : id) * strides[d]!;
          }
          values[o] = p.data[i]!;
        }
      });
      return [makeConst(parts[0]!.dtype, shape, values)];
    }
    case "Gather": {
      const a = need(0);
      const idx = need(1);
      const axis = normAxis(node, attrInt(node, "axis", 0), a.shape.length);
      const shape = [...a.shape.slice(0, axis), ...idx.shape, ...a.shape.slice(axis + 1)];
      return [gatherIndex(a, shape, (o) => {
        const pick = idx.data[offsetOf(idx.shape, o.slice(axis, axis + idx.shape.length))]!;
        const at = pick < 0 ? pick + a.shape[axis]! : pick;
        return offsetOf(a.shape, [...o.slice(0, axis), at, ...o.slice(axis + idx.shape.length)]);
      })];
    }
    case "Slice": {
      const a = need(0);
      const starts = Array.from(need(1).data);
      const ends = Array.from(need(2).data);
      const axes = ins[3] ? Array.from(ins[3].data).map((ax) => normAxis(node, ax, a.shape.length)) : starts.map((_, i) => i);
      const steps = ins[4] ? Array.from(ins[4].data) : starts.map(() => 1);
      const begin = a.shape.map(() => 0);
      const step = a.shape.map(() => 1);
      const shape = [...a.shape];
      axes.forEach((ax, i) => {
        const r = sliceRange(starts[i]!, ends[i]!, steps[i]!, a.shape[ax]!);
        begin[ax] = r.start;
        step[ax] = steps[i]!;
        shape[ax] = r.count;
      });
      return [gatherIndex(a, shape, (o) => offsetOf(a.shape, o.map((v, d) => begin[d]! + v * step[d]!)))];
    }
    case "Transpose": {
      const a = need(0);
      const perm = attrInts(node, "perm") ?? a.shape.map((_, i) => a.shape.length - 1 - i);
      const shape = perm.map((p) => a.shape[p]!);
      return [gatherIndex(a, shape, (o) => {
        const src = new Array<number>(a.shape.length);
        perm.forEach((p, i) => (src[p] = o[i]!));
        return offsetOf(a.shape, src);
      })];
    }
    case "Expand": {
      const a = need(0);
      const target = broadcastShapes(a.shape, Array.from(need(1).data));
      if (!target) throw nodeError(node, "expand shapes do not broadcast", "ONNX_INVALID");
      return [broadcastTo(a, target)];
    }
    case "Where": {
      const c = need(0);
      const shape = broadcastShapes(broadcastShapes(c.shape, need(1).shape) ?? [], need(2).shape);
      if (!shape) throw nodeError(node, "where shapes do not broadcast", "ONNX_INVALID");
      const cd = broadcastTo(c, shape).data;
      const ad = broadcastTo(need(1), shape).data;
      const bd = broadcastTo(need(2), shape).data;
      return [makeConst(need(1).dtype, shape, Array.from(cd, (v, i) => (v !== 0 ? ad[i]! : bd[i]!)))];
    }
    case "Range": {
      const [start, limit, delta] = [need(0).data[0]!, need(1).data[0]!, need(2).data[0]!];
      const n = Math.max(0, Math.ceil((limit - start) / delta));
      return [makeConst(need(0).dtype, [n], Array.from({ length: n }, (_, i) => start + i * delta))];
    }
    case "ConstantOfShape": {
      const shape = Array.from(need(0).data);
      const v = node.attrs.get("value");
      const fill = v?.type === "tensor" ? v.value : makeConst("f32", [1], [0]);
      return [makeConst(fill.dtype, shape, new Array<number>(numelOf(shape)).fill(fill.data[0] ?? 0))];
    }
    default:
      return undefined;
  }
}
