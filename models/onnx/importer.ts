/**
 * The ONNX importer: walks an ONNX graph in order and builds the same IR a traced DSL model
 * gives, over the flattened token batch (see value.ts for how an N-d ONNX activation maps to
 * [T, F]). Each node is, in turn:
 *   - folded, when all its inputs are constants (shapes, ranges, masks, rotary tables);
 *   - the root of a recognized pattern (attention, rotary, RMSNorm, GELU/SiLU), mapped whole;
 *   - mapped by its op rule (act_ops.ts);
 *   - or left `failed`, an error raised only if something that reaches the output reads it.
 * Graph inputs: `input_ids` [batch, seq] (int) → the token ids [T]; `position_ids` → positions.
 * The output (`logits`, or the only output) [.., vocab] becomes the logits rows picked by
 * `logits_indices`, as a DSL model's head does.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { KilnError, isKilnError } from "../../runtime/engine/errors.ts";
import type { ModelInputs } from "../dsl/causal_lm.ts";
import { applyActRule } from "./act_ops.ts";
import { matchAttention } from "./attention_pattern.ts";
import { foldNode, sliceRange } from "./const_fold.ts";
import { isFloatDtype, makeConst, numelOf, type ConstTensor } from "./const_tensor.ts";
import { attrInt, nodeError, nodeLabel, type ImportContext } from "./context.ts";
import { matchActivation, matchRmsNorm } from "./norm_patterns.ts";
import type { OnnxModelFile, OnnxNode, OnnxValueInfo } from "./proto.ts";
import { matchRotary } from "./rotary_pattern.ts";
import { actShape, inStorageOrder, type Act, type ActDim, type Value } from "./value.ts";

export interface ImportOptions {
  /**
   * Float graph inputs bound to rows of a table [R, F] picked by the token ids: lets a block
   * whose input is hidden states (not token ids) run through the engine's inputs (tests).
   */
  readonly rowInputs?: ReadonlyMap<string, Float32Array>;
}

export interface ImportedParam {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export interface ImportedGraph {
  /** [S, V] */
  readonly logits: Tensor;
  readonly vocabSize: number;
  readonly params: ReadonlyMap<string, ImportedParam>;
}

const PATTERNS = [matchAttention, matchRotary, matchRmsNorm, matchActivation] as const;

function sameData(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

class Importer implements ImportContext {
  readonly opset: number;
  private readonly values = new Map<string, Value>();
  private readonly producers = new Map<string, OnnxNode>();
  private readonly useCounts = new Map<string, number>();
  private readonly readers = new Map<string, OnnxNode[]>();
  readonly params = new Map<string, ImportedParam>();
  private kvLayers = 0;

  constructor(
    private readonly file: OnnxModelFile,
    readonly inputs: ModelInputs,
    private readonly known: ReadonlyMap<string, ImportedParam> | undefined,
  ) {
    this.opset = file.opset;
    for (const n of file.nodes) {
      for (const o of n.outputs) this.producers.set(o, n);
      for (const i of n.inputs) {
        this.useCounts.set(i, (this.useCounts.get(i) ?? 0) + 1);
        this.readers.set(i, [...(this.readers.get(i) ?? []), n]);
      }
    }
    for (const o of file.outputs) this.useCounts.set(o.name, (this.useCounts.get(o.name) ?? 0) + 1);
    for (const [name, c] of file.initializers) this.values.set(name, { kind: "const", c });
  }

  get g(): ModelInputs["inputIds"]["graph"] {
    return this.inputs.inputIds.graph;
  }

  producer(name: string): OnnxNode | undefined {
    return this.producers.get(name);
  }

  uses(name: string): number {
    return this.useCounts.get(name) ?? 0;
  }

  consumers(name: string): readonly OnnxNode[] {
    return this.readers.get(name) ?? [];
  }

  value(name: string): Value | undefined {
    return this.values.get(name);
  }

  constOf(name: string): ConstTensor | undefined {
    const v = this.values.get(name);
    return v?.kind === "const" ? v.c : undefined;
  }

  act(node: OnnxNode, name: string): Act {
    const v = this.values.get(name);
    if (v === undefined) throw nodeError(node, `reads '${name}', which is neither an initializer, a graph input nor an earlier node's output`, "ONNX_INVALID");
    switch (v.kind) {
      case "act": return v;
      case "failed": throw v.error;
      case "const": throw nodeError(node, `expected an activation for '${name}', got a constant`);
    }
  }

  param(name: string, shape: readonly number[], data: Float32Array | (() => Float32Array)): Tensor {
    let made: Float32Array | undefined;
    const values = (): Float32Array => (made ??= typeof data === "function" ? data() : data);
    let key = name;
    for (let k = 2; ; k++) {
      const seen = this.params.get(key);
      if (seen === undefined) break;
      if (seen.shape.join() === shape.join() && sameData(seen.data, values())) return this.g.param(key, shape, "f32");
      key = `${name}#${k}`;
    }
    // a re-import (tracing again) takes the data the first import made instead of making it twice
    const known = this.known?.get(key);
    this.params.set(key, known !== undefined && known.shape.join() === shape.join() ? known : { shape: [...shape], data: values() });
    return this.g.param(key, shape, "f32");
  }

  nextCacheKey(): string {
    return `onnx.attention.${this.kvLayers++}`;
  }

  bindInput(info: OnnxValueInfo, rowInputs: ReadonlyMap<string, Float32Array>): void {
    const isInt = info.dtype !== undefined && !isFloatDtype(info.dtype);
    const tokDims = (dims: readonly (number | string)[]): ActDim[] => dims.map((d) => (d === 1 ? { kind: "unit" } : { kind: "tok", size: d }));
    const fail = (why: string): never => {
      throw new KilnError("ONNX_UNSUPPORTED", `${this.file.path}: graph input '${info.name}' ${why}`);
    };
    if (isInt) {
      if (info.dims.length > 2) fail(`has ${info.dims.length} axes; token ids are [batch, seq]`);
      const which = /position/.test(info.name) ? this.inputs.positions : /input_ids|ids|tokens/.test(info.name) ? this.inputs.inputIds : undefined;
      if (which === undefined) fail("is not input_ids or position_ids (attention masks and past key/values inputs are not supported)");
      this.values.set(info.name, { kind: "act", t: which!, dims: tokDims(info.dims), physical: [] });
      return;
    }
    const rows = rowInputs.get(info.name);
    const F = info.dims[info.dims.length - 1];
    if (rows === undefined || typeof F !== "number") return fail("is a float tensor; only token ids (and position ids) can feed an imported model");
    const table = this.param(info.name, [rows.length / F, F], rows);
    const t = this.g.add({ kind: "embedding", table: table.id, ids: this.inputs.inputIds.id, shape: [this.inputs.inputIds.shape[0]!, F], dtype: "f32" });
    this.values.set(info.name, { kind: "act", t, dims: [...tokDims(info.dims.slice(0, -1)), { kind: "feat", phys: 0 }], physical: [F] });
  }

  private constantNode(node: OnnxNode): ConstTensor {
    const [name, attr] = [...node.attrs.entries()][0] ?? [];
    if (attr === undefined) throw nodeError(node, "a Constant with no value", "ONNX_INVALID");
    switch (attr.type) {
      case "tensor": return attr.value;
      case "float": return makeConst("f32", [], [attr.value]);
      case "int": return makeConst("i64", [], [attr.value]);
      case "floats": return makeConst("f32", [attr.value.length], attr.value);
      case "ints": return makeConst("i64", [attr.value.length], attr.value);
      default: throw nodeError(node, `a Constant given as '${name}' is not supported`);
    }
  }

  /** Shape of an activation whose axes all have exported sizes (a static export): folds like a constant. */
  private shapeOf(node: OnnxNode, a: Act): ConstTensor {
    const shape = actShape(a);
    const sizes = shape.filter((d): d is number => typeof d === "number");
    if (sizes.length !== shape.length) throw nodeError(node, `Shape of [${shape.join(", ")}], whose token axis is symbolic, is not supported (export with static shapes, or without shape arithmetic)`);
    const start = attrInt(node, "start", 0);
    const end = attrInt(node, "end", sizes.length);
    const r = sliceRange(start, end, 1, sizes.length);
    return makeConst("i64", [r.count], sizes.slice(r.start, r.start + r.count));
  }

  private evaluate(node: OnnxNode): Value[] {
    if (node.opType === "Constant" && node.domain === "") return [{ kind: "const", c: this.constantNode(node) }];
    const ins = node.inputs.map((n) => (n === "" ? undefined : this.values.get(n)));
    node.inputs.forEach((n, i) => {
      if (n !== "" && ins[i] === undefined) throw nodeError(node, `reads '${n}', which is neither an initializer, a graph input nor an earlier node's output`, "ONNX_INVALID");
    });
    const failed = ins.find((v) => v?.kind === "failed");
    if (ins.length > 0 && ins.every((v) => v === undefined || v.kind === "const")) {
      const folded = foldNode(node, ins.map((v) => (v?.kind === "const" ? v.c : undefined)), this.opset);
      if (folded === undefined) throw nodeError(node, `op ${node.opType} on constants is not supported`);
      return folded.map((c) => ({ kind: "const", c }));
    }
    const first = ins[0];
    if (node.opType === "Shape" && first?.kind === "act") return [{ kind: "const", c: this.shapeOf(node, first) }];
    for (const match of PATTERNS) {
      const a = match(this, node);
      if (a !== undefined) return [a];
    }
    if (failed?.kind === "failed") throw failed.error;
    const out = applyActRule(this, node);
    if (out === undefined) throw nodeError(node, `op type ${node.opType} is not supported by the ONNX importer`);
    return out;
  }

  run(): void {
    for (const node of this.file.nodes) {
      let outs: Value[];
      try {
        outs = this.evaluate(node);
      } catch (e) {
        // a malformed file fails at once; an unmappable node fails only if its value is used
        if (!isKilnError(e) || e.code === "ONNX_INVALID") throw e;
        outs = node.outputs.map(() => ({ kind: "failed", error: e }));
      }
      node.outputs.forEach((o, i) => {
        const v = outs[i];
        if (o !== "" && v !== undefined) this.values.set(o, v);
      });
    }
  }

  output(): { logits: Tensor; vocab: number } {
    const outs = this.file.outputs;
    const info = outs.find((o) => o.name === "logits") ?? (outs.length === 1 ? outs[0] : undefined);
    if (info === undefined) throw new KilnError("ONNX_UNSUPPORTED", `${this.file.path}: outputs ${outs.map((o) => o.name).join(", ")} include no 'logits' (past key/values outputs are not supported)`);
    const v = this.values.get(info.name);
    if (v === undefined) throw new KilnError("ONNX_INVALID", `${this.file.path}: no node computes the output '${info.name}'`);
    if (v.kind === "failed") throw v.error;
    if (v.kind === "const") throw new KilnError("ONNX_UNSUPPORTED", `${this.file.path}: output '${info.name}' does not depend on the inputs`);
    const last = v.dims[v.dims.length - 1];
    if (v.t.dtype !== "f32" || last?.kind !== "feat" || !inStorageOrder(v) || v.dims.filter((d) => d.kind === "feat").length !== v.physical.length || v.physical.length !== 1) {
      throw new KilnError("ONNX_UNSUPPORTED", `${this.file.path}: output '${info.name}' of shape [${actShape(v).join(", ")}] is not [.., tokens, vocab]`);
    }
    return { logits: v.t.gatherRows(this.inputs.logitsIndices), vocab: numelOf(v.physical) };
  }
}

/**
 * Builds the ONNX graph into the graph of `inputs` (a GraphBuilder being traced). `known`: the
 * parameters of an earlier import of the same file, reused rather than derived again.
 */
export function importOnnxGraph(file: OnnxModelFile, inputs: ModelInputs, opts: ImportOptions = {}, known?: ReadonlyMap<string, ImportedParam>): ImportedGraph {
  const imp = new Importer(file, inputs, known);
  for (const info of file.inputs) imp.bindInput(info, opts.rowInputs ?? new Map());
  imp.run();
  const { logits, vocab } = imp.output();
  return { logits, vocabSize: vocab, params: imp.params };
}

export { nodeLabel };
