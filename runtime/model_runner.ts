/**
 * The model runner: a traced graph, its weights, a backend executor and the KV cache. The
 * engine hands it the chunks of one step; it packs them and returns the wanted logits.
 */
import type { Graph } from "../compiler/ir.ts";
import type { WeightData } from "../models/dsl/parameter.ts";
import { CpuExecutor } from "./cpu/executor.ts";
import { loadNative } from "./cpu/native.ts";
import { KvCache, packStep, type SeqChunk } from "./kv_cache.ts";

export interface RunnerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
}

export class ModelRunner {
  readonly kv: KvCache;
  private readonly executor: CpuExecutor;

  constructor(
    readonly graph: Graph,
    weights: ReadonlyMap<string, WeightData>,
    readonly vocabSize: number,
    opts: RunnerOptions,
  ) {
    this.executor = new CpuExecutor(graph, weights, loadNative());
    this.kv = new KvCache(graph.kvLayers, opts.numBlocks, opts.blockSize);
  }

  get blockSize(): number {
    return this.kv.blockSize;
  }

  /** Runs one step over the given chunks; logits [S, vocab] for the rows the chunks asked for. */
  execute(chunks: readonly SeqChunk[]): Float32Array {
    return this.executor.run(packStep(chunks, this.kv.blockSize), this.kv);
  }
}
