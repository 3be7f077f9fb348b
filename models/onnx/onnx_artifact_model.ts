/**
 * An ONNX model read back from an engine artifact, kept apart from the importer so the registry
 * (loaded at every start) does not load the importer and protobufjs.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { CausalLM, ModelArgs } from "../dsl/causal_lm.ts";
import type { LoadReport } from "../dsl/load_weights.ts";
import type { Parameter } from "../dsl/parameter.ts";
import { ONNX_ARCH } from "./onnx_path.ts";

/**
 * An imported ONNX model as an engine artifact holds it: the artifact stores the imported graph
 * and its compiled program, so nothing is imported or traced when it loads; this gives the engine
 * the sizes it asks of a model, from the config.json the artifact writer made (`vocab_size`,
 * `max_position_embeddings`). Tracing it is an error: without the .onnx file there is nothing to
 * import.
 */
export class OnnxArtifactModel implements CausalLM {
  readonly vocabSize: number;
  readonly maxPositions: number;

  constructor(args: ModelArgs) {
    this.vocabSize = args.config.int("vocab_size", { min: 1, max: 2 ** 24 });
    this.maxPositions = args.config.int("max_position_embeddings", { min: 1, max: 2 ** 24 });
  }

  forward(): Tensor {
    throw new KilnError(
      "ARCH_UNKNOWN",
      `${ONNX_ARCH} is an ONNX graph as an engine artifact stores it: it runs the artifact's program; to trace it again, load its .onnx file`,
    );
  }

  loadWeights(): LoadReport {
    return { loaded: new Map(), skipped: [] };
  }

  parameters(): Map<string, Parameter> {
    return new Map();
  }
}
