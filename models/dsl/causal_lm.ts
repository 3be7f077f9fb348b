/**
 * What every causal language model built with the DSL offers the runtime, and how a model is
 * traced into a graph.
 */
import type { Graph } from "../../compiler/ir.ts";
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { ConfigReader } from "../hf_config.ts";
import type { LoadReport, WeightSource } from "./load_weights.ts";
import type { ModelContext } from "./module.ts";
import type { Parameter } from "./parameter.ts";

/** The step's inputs as traced tensors: all scheduled tokens flattened to [T]. */
export interface ModelInputs {
  readonly inputIds: Tensor; // [T] i32
  readonly positions: Tensor; // [T] i32
  /** rows whose logits are wanted (the last token of each sequence, or every prompt token) */
  readonly logitsIndices: Tensor; // [S] i32
}

export interface ModelArgs {
  readonly config: ConfigReader;
  readonly ctx: ModelContext;
}

/**
 * What a model keeps per sequence between steps (vLLM's IsAttentionFree / IsHybrid): a KV cache
 * that grows with the sequence ("attention"), only mamba-like fixed-size state
 * ("attention_free"), or both ("hybrid"). Checked against the traced graph.
 */
export type SequenceStateKind = "attention" | "attention_free" | "hybrid";

export interface CausalLM {
  readonly vocabSize: number;
  readonly maxPositions: number;
  /** default "attention" */
  readonly sequenceState?: SequenceStateKind;
  /** logits [S, vocab] */
  forward(inputs: ModelInputs): Tensor;
  loadWeights(source: WeightSource): LoadReport;
  parameters(): Map<string, Parameter>;
}

export type CausalLMClass = new (args: ModelArgs) => CausalLM;

export function traceModel(model: CausalLM): Graph {
  const g = new GraphBuilder();
  const logits = model.forward({
    inputIds: g.input("input_ids"),
    positions: g.input("positions"),
    logitsIndices: g.input("logits_indices"),
  });
  const graph = g.finish(logits);
  const traced: SequenceStateKind =
    graph.stateLayers.length === 0 ? "attention" : graph.kvLayers.length === 0 ? "attention_free" : "hybrid";
  const declared = model.sequenceState ?? "attention";
  if (traced !== declared) {
    throw new KilnError("TRACE_SHAPE", `the model declares itself ${declared} but its graph is ${traced} (${graph.kvLayers.length} KV layers, ${graph.stateLayers.length} state layers)`);
  }
  return graph;
}
