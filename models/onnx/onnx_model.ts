/**
 * An imported ONNX graph as a CausalLM, so it loads, traces, compiles and serves exactly as a DSL
 * model does: `forward` replays the import into the graph being traced; the parameters are what
 * the importer derived from the initializers (linear weights transposed to [N, K], constants
 * broadcast to rows), already filled, so `loadWeights` only reports them.
 */
import { GraphBuilder, type Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { CausalLM, ModelInputs } from "../dsl/causal_lm.ts";
import type { LoadReport } from "../dsl/load_weights.ts";
import { defaultLoader, Parameter } from "../dsl/parameter.ts";
import { importOnnxGraph, type ImportedParam, type ImportOptions } from "./importer.ts";
import { readOnnxModel, type OnnxModelFile } from "./proto.ts";

import { ONNX_ARCH } from "./onnx_path.ts";

export { ONNX_ARCH };

/** When nothing beside the model says otherwise: rotary tables are read back into frequencies, so any position works. */
export const ONNX_DEFAULT_MAX_POSITIONS = 2048;

export class OnnxCausalLM implements CausalLM {
  readonly vocabSize: number;
  readonly maxPositions: number;
  private readonly params: Map<string, Parameter>;
  private readonly imported: ReadonlyMap<string, ImportedParam>;

  constructor(
    readonly file: OnnxModelFile,
    private readonly opts: ImportOptions = {},
    maxPositions = ONNX_DEFAULT_MAX_POSITIONS,
  ) {
    // a first import learns the vocabulary and the parameters (and fails early on an unsupported graph)
    const g = new GraphBuilder();
    const imported = importOnnxGraph(file, { inputIds: g.input("input_ids"), positions: g.input("positions"), logitsIndices: g.input("logits_indices") }, opts);
    this.vocabSize = imported.vocabSize;
    this.maxPositions = maxPositions;
    this.imported = imported.params;
    this.params = new Map();
    for (const [name, p] of imported.params) {
      const param = new Parameter(name, p.shape, "f32", ["*"], defaultLoader);
      param.data = { dtype: "f32", data: p.data };
      param.markFilled("*");
      this.params.set(name, param);
    }
  }

  static open(path: string, opts: ImportOptions = {}, maxPositions?: number): OnnxCausalLM {
    return new OnnxCausalLM(readOnnxModel(path), opts, maxPositions);
  }

  forward(inputs: ModelInputs): Tensor {
    const imported = importOnnxGraph(this.file, inputs, this.opts, this.imported);
    if (imported.params.size !== this.params.size) throw new KilnError("TRACE_SHAPE", `${this.file.path}: a second import of the graph derived other parameters`);
    return imported.logits;
  }

  /** The weights came with the graph: every parameter is already filled. */
  loadWeights(): LoadReport {
    return { loaded: new Map([...this.params.keys()].map((n) => [n, n])), skipped: [] };
  }

  parameters(): Map<string, Parameter> {
    return new Map(this.params);
  }
}
