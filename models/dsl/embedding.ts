/**
 * Token and learned-position embeddings, and the LM head. The vocabulary is split across ranks
 * along dim 0; at size 1 the rank holds all of it. `ParallelLMHead.tieTo` shares the embedding's
 * parameter, as tied checkpoints (Qwen2, the fortune model) expect.
 */
import type { Tensor } from "../../compiler/trace.ts";
import { Module, type ModelContext } from "./module.ts";
import type { Parameter, WeightLoader } from "./parameter.ts";

export class VocabParallelEmbedding extends Module {
  weight: Parameter;
  readonly vocabPerRank: number;

  constructor(
    prefix: string,
    readonly vocabSize: number,
    readonly hiddenSize: number,
    ctx: ModelContext,
  ) {
    super(prefix);
    const tp = ctx.parallel.tpSize;
    this.vocabPerRank = Math.ceil(vocabSize / tp);
    const start = ctx.parallel.tpRank * this.vocabPerRank;
    const rows = Math.min(this.vocabPerRank, vocabSize - start);
    const load: WeightLoader = (p, src) => p.fill(src, { rowStart: 0, rows }, { dim: 0, start, size: rows }, "*");
    this.weight = this.param("weight", [this.vocabPerRank, hiddenSize], ctx.weightStorage, load);
  }

  /** ids [T] (i32) → [T, hidden] */
  forward(ids: Tensor): Tensor {
    return this.scoped(ids.graph, () => {
      if (ids.dtype !== "i32" || ids.rank !== 1) ids.graph.fail("embedding expects a 1-D i32 tensor of token ids");
      const table = this.use(ids.graph, this.weight);
      return ids.graph.add({
        kind: "embedding",
        table: table.id,
        ids: ids.id,
        shape: [ids.shape[0]!, this.hiddenSize],
        dtype: "f32",
      });
    });
  }
}

/**
 * Learned absolute positions (GPT-2's wpe, OPT's embed_positions): a table [numPositions, H],
 * whole on every rank, indexed by the step's positions. `offset` leading checkpoint rows are
 * never read (OPT keeps 2 for padding and looks up position p at row p + 2), so the loader drops
 * them and position p reads row p here.
 */
export class LearnedPositionalEmbedding extends Module {
  readonly weight: Parameter;

  constructor(
    prefix: string,
    readonly numPositions: number,
    readonly hiddenSize: number,
    opts: { readonly offset?: number } = {},
  ) {
    super(prefix);
    const offset = opts.offset ?? 0;
    const load: WeightLoader = (p, src) =>
      p.fill(src, { rowStart: 0, rows: numPositions }, { dim: 0, start: offset, size: numPositions }, "*");
    // small beside the vocabulary (GPT-2: 1024 rows), so kept in f32 whatever the matrices' storage
    this.weight = this.param("weight", [numPositions, hiddenSize], "f32", load);
  }

  /** positions [T] (i32) → [T, hidden] */
  forward(positions: Tensor): Tensor {
    return this.scoped(positions.graph, () => {
      const g = positions.graph;
      if (positions.dtype !== "i32" || positions.rank !== 1) g.fail("positional embedding expects a 1-D i32 tensor of positions");
      const table = this.use(g, this.weight);
      return g.add({ kind: "embedding", table: table.id, ids: positions.id, shape: [positions.shape[0]!, this.hiddenSize], dtype: "f32" });
    });
  }
}

export class ParallelLMHead extends VocabParallelEmbedding {
  /** Uses the embedding's weight as the head's (tied embeddings); the checkpoint's copy is skipped. */
  tieTo(embedding: VocabParallelEmbedding): void {
    this.weight = embedding.weight;
  }

  /** hidden [S, H] → logits [S, vocab] */
  logits(hidden: Tensor): Tensor {
    return this.scoped(hidden.graph, () => {
      if (hidden.cols !== this.hiddenSize) hidden.graph.fail(`lm head expects ${this.hiddenSize} columns, got ${hidden.cols}`);
      const w = this.use(hidden.graph, this.weight);
      return hidden.graph.add({
        kind: "linear",
        x: hidden.id,
        weight: w.id,
        bias: undefined,
        shape: [hidden.shape[0]!, this.vocabPerRank],
        dtype: "f32",
      });
    });
  }
}
