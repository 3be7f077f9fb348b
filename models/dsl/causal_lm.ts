/**
 * What every causal language model built with the DSL offers the runtime, and how a model is
 * traced into a graph.
 */
import type { Graph } from "../../compiler/ir.ts";
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import type { ConfigReader } from "../../runtime/hf_config.ts";
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

export interface CausalLM {
  readonly vocabSize: number;
  readonly maxPositions: number;
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
  return g.finish(logits);
}
