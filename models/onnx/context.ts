/**
 * What the importer's op rules and pattern matchers share: the graph being built, the values
 * imported so far, the ONNX graph's structure (who produces a value) and typed errors that name
 * the node (its index, name and op type).
 */
import type { Tensor, GraphBuilder } from "../../compiler/trace.ts";
import { KilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import type { ModelInputs } from "../dsl/causal_lm.ts";
import type { ConstTensor } from "./const_tensor.ts";
import type { OnnxNode } from "./proto.ts";
import type { Act, Value } from "./value.ts";

export interface ImportContext {
  readonly g: GraphBuilder;
  readonly inputs: ModelInputs;
  readonly opset: number;
  /** the node that computes `name`; undefined for graph inputs and initializers */
  producer(name: string): OnnxNode | undefined;
  /** how many nodes read `name` (graph outputs count as one) */
  uses(name: string): number;
  /** the nodes that read `name` */
  consumers(name: string): readonly OnnxNode[];
  value(name: string): Value | undefined;
  /** the constant `name`, when it is one (initializer, Constant, or folded) */
  constOf(name: string): ConstTensor | undefined;
  /** the activation `name`; a failed value raises its error, a constant is refused for `node` */
  act(node: OnnxNode, name: string): Act;
  /**
   * A parameter node for data the importer derived (weights transposed, constants broadcast).
   * Data given as a function is made only when no earlier import of the same model made it.
   */
  param(name: string, shape: readonly number[], data: Float32Array | (() => Float32Array)): Tensor;
  /** names the next attention layer's KV cache */
  nextCacheKey(): string;
}

export function nodeLabel(node: OnnxNode): string {
  return `node ${node.index} '${node.name}' (${node.domain === "" ? "" : `${node.domain}.`}${node.opType})`;
}

export function nodeError(node: OnnxNode, message: string, code: ErrorCode = "ONNX_UNSUPPORTED"): KilnError {
  return new KilnError(code, `${nodeLabel(node)}: ${message}`);
}

export function attrInt(node: OnnxNode, name: string, fallback: number): number {
  const a = node.attrs.get(name);
  if (a === undefined) return fallback;
  if (a.type !== "int") throw nodeError(node, `attribute '${name}' is not an int`, "ONNX_INVALID");
  return a.value;
}

export function attrFloat(node: OnnxNode, name: string, fallback: number): number {
  const a = node.attrs.get(name);
  if (a === undefined) return fallback;
  if (a.type !== "float") throw nodeError(node, `attribute '${name}' is not a float`, "ONNX_INVALID");
  return a.value;
}

export function attrInts(node: OnnxNode, name: string): readonly number[] | undefined {
  const a = node.attrs.get(name);
  if (a === undefined) return undefined;
  if (a.type !== "ints") throw nodeError(node, `attribute '${name}' is not a list of ints`, "ONNX_INVALID");
  return a.value;
}

export function attrString(node: OnnxNode, name: string, fallback: string): string {
  const a = node.attrs.get(name);
  if (a === undefined) return fallback;
  if (a.type !== "string") throw nodeError(node, `attribute '${name}' is not a string`, "ONNX_INVALID");
  return a.value;
}

/** An axis attribute or input normalized to [0, rank). */
export function normAxis(node: OnnxNode, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!(a >= 0 && a < rank)) throw nodeError(node, `axis ${axis} is outside rank ${rank}`, "ONNX_INVALID");
  return a;
}

/** Axes given as an attribute (older opsets) or as the constant input `inputIndex` (newer). */
export function axesOf(ctx: ImportContext, node: OnnxNode, inputIndex: number): readonly number[] | undefined {
  const fromAttr = attrInts(node, "axes");
  if (fromAttr !== undefined) return fromAttr;
  const name = node.inputs[inputIndex];
  if (name === undefined || name === "") return undefined;
  const c = ctx.constOf(name);
  if (c === undefined) throw nodeError(node, "its axes are not a constant the importer can resolve");
  return Array.from(c.data);
}
