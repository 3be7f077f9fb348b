/**
 * From a model folder to a serving engine: load the model, compile it for the chosen backend (an
 * engine artifact's stored program is used as is), size the KV pool from a memory budget, build
 * the model runner, and wire in the tokenizer, the EOS ids of generation_config.json and the
 * sliding window when every attention layer has one.
 *
 * The pool: numBlocks when given, else kvCacheBytes when given; else on a device backend (CUDA)
 * a share of device memory (gpuMemoryUtilization, default 0.9, as vLLM), and on the CPU a quarter
 * of the machine's memory up to 4 GiB (vLLM's CPU KV space), at least 256 MiB. When the model's
 * own context window does not fit the pool and no maxModelLen was asked for, the window is lowered
 * to what fits (contextLowered says so); an explicit maxModelLen that does not fit stays an error.
 */
import os from "node:os";
import type { KvLayerSpec } from "../../compiler/ir.ts";
import { KilnError } from "./errors.ts";
import { loadGenerationConfig } from "../io/generation_config.ts";
import { modelFolderOf } from "../../models/onnx/onnx_path.ts";
import { KvCache } from "../backends/kv_cache.ts";
import { DEFAULT_MODEL_DIR, loadModel, type LoadedModel, type LoadOptions } from "../io/model_loader.ts";
import { compileFor, KV_PLANNERS, ModelRunner } from "../backends/model_runner.ts";
import { DEFAULT_STATE_SLOTS, type BackendName, type KvPlan } from "../backends/step_executor.ts";
import { KilnTokenizer } from "../io/tokenizer.ts";
import { Engine, type EngineOptions } from "./engine.ts";
import { blocksForOneSequence, DEFAULT_MAX_NUM_BATCHED_TOKENS } from "./engine_config.ts";

export interface CreateEngineOptions extends Omit<EngineOptions, "maxModelLen" | "tokenizer" | "eosTokenIds" | "attentionWindow"> {
  /** default: the embedded fortune model */
  readonly modelDir?: string;
  /** default: the model's max_position_embeddings */
  readonly maxModelLen?: number;
  /** tokens per KV block (default 16) */
  readonly blockSize?: number;
  /** memory for the KV pool (CPU default: defaultCpuKvCacheBytes()); ignored when numBlocks is given */
  readonly kvCacheBytes?: number;
  readonly numBlocks?: number;
  /**
   * share of the device's total memory the engine may hold on the CUDA backend, in (0, 1]
   * (default 0.9); the KV pool gets what the weights, activations and other processes leave.
   * Used only when neither numBlocks nor kvCacheBytes is given; the CPU ignores it.
   */
  readonly gpuMemoryUtilization?: number;
  /** per-sequence state slots of models with mamba-like layers (default: maxNumSeqs, else 32) */
  readonly numStateSlots?: number;
  readonly backend?: BackendName;
  readonly load?: LoadOptions;
  /** the model folder's tokenizer, when the caller has loaded it already (loading a large one takes a second) */
  readonly tokenizer?: KilnTokenizer;
}

export interface CreatedEngine {
  readonly engine: Engine;
  readonly runner: ModelRunner;
  readonly tokenizer: KilnTokenizer;
  readonly model: LoadedModel;
  readonly kvPool: KvPoolInfo;
  /** the engine's context window */
  readonly maxModelLen: number;
  /** set when the model's context window did not fit the KV pool and was lowered to maxModelLen */
  readonly contextLowered?: { readonly from: number };
}

/** How the KV pool was sized, for the startup log. */
export interface KvPoolInfo {
  readonly numBlocks: number;
  readonly blockSize: number;
  /** what the pool is sized from */
  readonly source: "numBlocks" | "kvCacheBytes" | "gpuMemoryUtilization" | "attention-free";
  /** the device budget's breakdown when sized from gpuMemoryUtilization */
  readonly plan?: KvPlan;
}

/** The least the CPU pool gets by default. */
export const DEFAULT_KV_CACHE_BYTES = 256 * 2 ** 20;

/** The CPU pool's default: a quarter of the machine's memory, at most 4 GiB, at least 256 MiB. */
export function defaultCpuKvCacheBytes(totalMemory = os.totalmem()): number {
  return Math.max(DEFAULT_KV_CACHE_BYTES, Math.min(4 * 2 ** 30, Math.floor(totalMemory / 4)));
}
export const DEFAULT_GPU_MEMORY_UTILIZATION = 0.9;
/** The default context window of attention-free models (raise it with maxModelLen). */
export const ATTENTION_FREE_MAX_MODEL_LEN = 8192;

export async function createEngine(opts: CreateEngineOptions = {}): Promise<CreatedEngine> {
  const dir = opts.modelDir ?? DEFAULT_MODEL_DIR;
  const backend = opts.backend ?? "cpu";
  const model = await loadModel(dir, { ...opts.load, backend });
  // the one compile of this engine; an artifact's program was compiled by `kiln compile`
  const compiled = model.compiled ?? compileFor(backend, model.graph, model.weights);
  // an .onnx model is a file: its tokenizer and generation config are in the folder beside it
  const tokenizer = opts.tokenizer ?? KilnTokenizer.load(modelFolderOf(dir));
  const generation = loadGenerationConfig(modelFolderOf(dir));
  const blockSize = opts.blockSize ?? 16;
  const attentionFree = model.graph.kvLayers.length === 0;
  // an attention-free model has no positional limit of its own: bound its default context window
  // an artifact records the context window it was compiled for
  const limit = model.artifact?.maxModelLen ?? model.model.maxPositions;
  let maxModelLen = opts.maxModelLen ?? (attentionFree ? Math.min(limit, ATTENTION_FREE_MAX_MODEL_LEN) : limit);
  if (maxModelLen > model.model.maxPositions) {
    throw new KilnError("INVALID_ARGUMENT", `maxModelLen ${maxModelLen} exceeds the model's ${model.model.maxPositions} positions`);
  }
  const numStateSlots = opts.numStateSlots ?? opts.maxNumSeqs;
  const window = uniformSlidingWindow(model.graph.kvLayers);
  const utilization = opts.gpuMemoryUtilization;
  if (utilization !== undefined && !(Number.isFinite(utilization) && utilization > 0 && utilization <= 1)) {
    throw new KilnError("INVALID_ARGUMENT", `gpuMemoryUtilization must be a fraction in (0, 1] (got ${utilization})`);
  }
  const planner = opts.backend === undefined ? undefined : KV_PLANNERS.get(opts.backend);
  let kvPool: KvPoolInfo;
  if (opts.numBlocks !== undefined) {
    kvPool = { numBlocks: opts.numBlocks, blockSize, source: "numBlocks" };
  } else if (attentionFree) {
    // without KV layers a block holds no memory and only counts tokens: give every slot a full window
    kvPool = { numBlocks: Math.ceil(maxModelLen / blockSize) * (numStateSlots ?? DEFAULT_STATE_SLOTS), blockSize, source: "attention-free" };
  } else if (opts.kvCacheBytes !== undefined || planner === undefined) {
    const bytes = opts.kvCacheBytes ?? defaultCpuKvCacheBytes();
    kvPool = { numBlocks: KvCache.blocksForBudget(model.graph.kvLayers, blockSize, bytes), blockSize, source: "kvCacheBytes" };
  } else {
    const maxNumBatchedTokens = opts.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS;
    const plan = planner({
      compiled,
      weights: model.weights,
      blockSize,
      utilization: utilization ?? DEFAULT_GPU_MEMORY_UTILIZATION,
      maxNumBatchedTokens,
      numStateSlots: numStateSlots ?? DEFAULT_STATE_SLOTS,
      needBlocks: blocksForOneSequence(maxModelLen, blockSize, window, maxNumBatchedTokens),
    });
    kvPool = { numBlocks: plan.numBlocks, blockSize, source: "gpuMemoryUtilization", plan };
  }
  const numBlocks = kvPool.numBlocks;
  let contextLowered: CreatedEngine["contextLowered"];
  const need = blocksForOneSequence(maxModelLen, blockSize, window, opts.maxNumBatchedTokens ?? DEFAULT_MAX_NUM_BATCHED_TOKENS);
  if (opts.maxModelLen === undefined && need > numBlocks && numBlocks * blockSize >= 2) {
    // one sequence of the full window would not fit: serve the window that does (as vLLM lowers
    // max_model_len to the KV capacity), and say so; the engine keeps refusing an explicit one
    contextLowered = { from: maxModelLen };
    maxModelLen = numBlocks * blockSize;
  }
  const runner = new ModelRunner(compiled, model.weights, model.model.vocabSize, {
    numBlocks,
    blockSize,
    ...(numStateSlots === undefined ? {} : { numStateSlots }),
    ...(opts.backend === undefined ? {} : { backend: opts.backend }),
  });
  const eos = generation.eosTokenIds.length > 0 ? generation.eosTokenIds : tokenizer.eosTokenId === undefined ? [] : [tokenizer.eosTokenId];
  const engine = new Engine(runner, {
    ...opts,
    maxModelLen,
    tokenizer,
    eosTokenIds: eos,
    ...(window === undefined ? {} : { attentionWindow: window }),
  });
  return { engine, runner, tokenizer, model, kvPool, maxModelLen, ...(contextLowered === undefined ? {} : { contextLowered }) };
}

/** The widest window when every attention layer slides; undefined when any attends to everything. */
export function uniformSlidingWindow(layers: readonly KvLayerSpec[]): number | undefined {
  if (layers.length === 0) return undefined;
  let widest = 0;
  for (const l of layers) {
    if (l.slidingWindow === undefined) return undefined;
    widest = Math.max(widest, l.slidingWindow);
  }
  return widest;
}
