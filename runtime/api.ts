/**
 * kiln as a library: what `import { createEngine, compile, serve } from "kiln"` gives a Node
 * program. A thin layer over the engine the CLI drives (runtime/engine/create_engine.ts), the
 * artifact compiler (runtime/io/artifact.ts) and the server (runtime/server/app.ts): the defaults
 * are the CLI's, so a model behaves the same from `kiln run`, `kiln serve` and this module.
 *
 *   const engine = await createEngine();                      // the embedded fortune model
 *   for await (const d of engine.generate("You will", { maxTokens: 16, signal })) process.stdout.write(d.text);
 *   const [r] = await engine.generateBatch(["A", "B"], { temperature: 0 });
 *   await engine.close();
 *
 * The CPU backend only, for now: the CUDA backend needs its registration and device lifetime
 * (cli/options.ts's registerCudaFromFlags), which this API does not manage yet.
 */
import { basename } from "node:path";
import { createEngine as createCoreEngine, type CreatedEngine } from "./engine/create_engine.ts";
import type { Prompt, RequestStream } from "./engine/engine.ts";
import { KilnError } from "./engine/errors.ts";
import type { RequestResult } from "./engine/request_output.ts";
import type { SamplingParamsInput } from "./engine/sampling_params.ts";
import { compileArtifact, parseDtype, parseTarget, type ArtifactSummary } from "./io/artifact.ts";
import { loadGenerationConfig, type GenerationDefaults } from "./io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "./io/model_loader.ts";
import type { KilnTokenizer } from "./io/tokenizer.ts";
import type { CorsOptions } from "./server/server_defaults.ts";

export { isKilnError, KilnError } from "./engine/errors.ts";
export type { ErrorCode } from "./engine/errors.ts";
export type { Prompt, RequestStream } from "./engine/engine.ts";
export type { CompletionDelta, CompletionResult, RequestResult, Usage } from "./engine/request_output.ts";
export type { SamplingParamsInput } from "./engine/sampling_params.ts";
export type { FinishReason } from "./engine/sequence.ts";
export type { ArtifactSummary } from "./io/artifact.ts";
export type { ChatMessage, KilnTokenizer } from "./io/tokenizer.ts";
export { DEFAULT_MODEL_DIR };

export interface EngineOptions {
  /** a Hugging Face model folder or an engine artifact (`compile`); default: the embedded fortune model */
  readonly model?: string;
  /** the context window (default: the model's, or the artifact's) */
  readonly maxModelLen?: number;
  /** sequences per step (default 256) */
  readonly maxNumSeqs?: number;
  /** tokens per step */
  readonly maxNumBatchedTokens?: number;
  /** memory for the KV pool in bytes (default: a quarter of the machine's memory, at most 4 GiB) */
  readonly kvCacheBytes?: number;
  /** tokens per KV block (default 16) */
  readonly blockSize?: number;
  /** an engine artifact: hash every file, the weights too, before loading (`kiln verify`) */
  readonly verify?: boolean;
}

/** A request's sampling parameters (OpenAI's and vLLM's meanings), its abort signal and id. */
export interface GenerateOptions extends SamplingParamsInput {
  /** aborting ends the generation at once: the stream's last delta has finishReason "abort" */
  readonly signal?: AbortSignal;
  /** default: "req-<n>" */
  readonly requestId?: string;
}

export interface BatchOptions extends SamplingParamsInput {
  /** aborts every prompt of the batch */
  readonly signal?: AbortSignal;
}

/** A loaded model with its engine; `close()` it to stop generating and free its memory. */
export class KilnEngine {
  /** the model folder or artifact it runs */
  readonly model: string;
  readonly tokenizer: KilnTokenizer;
  readonly maxModelLen: number;
  /** generation_config.json's sampling defaults, applied under what a request sets (as `kiln run` and `kiln serve` do) */
  readonly defaults: GenerationDefaults;
  private closed = false;

  /** Built by `createEngine`; the core engine is reachable for what this class does not wrap. */
  constructor(readonly created: CreatedEngine) {
    this.model = created.model.dir;
    this.tokenizer = created.tokenizer;
    this.maxModelLen = created.maxModelLen;
    this.defaults = loadGenerationConfig(created.model.dir);
  }

  /** Generates from one prompt; the stream yields a delta per step (text and token ids) and ends with usage. */
  generate(prompt: Prompt, options: GenerateOptions = {}): RequestStream {
    const { signal, requestId, ...params } = options;
    return this.created.engine.generate({
      prompt,
      params: this.withDefaults(params),
      ...(signal === undefined ? {} : { signal }),
      ...(requestId === undefined ? {} : { requestId }),
    });
  }

  /** Generates from one prompt to the end: the whole text, tokens, finish reason and usage. */
  async complete(prompt: Prompt, options: GenerateOptions = {}): Promise<RequestResult> {
    const [result] = await this.generateBatch([prompt], options);
    if (result === undefined) throw new Error("a batch of one prompt gave no result");
    return result;
  }

  /** Runs every prompt together (continuous batching) with the same parameters; results in prompt order. */
  generateBatch(prompts: readonly Prompt[], options: BatchOptions = {}): Promise<RequestResult[]> {
    const { signal, ...params } = options;
    return this.created.engine.generateBatch(prompts, this.withDefaults(params), signal === undefined ? {} : { signal });
  }

  /** Aborts what is running, refuses new requests and frees the model's memory. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.created.engine.close();
    // the aborted streams' last deltas go out on this turn; the runner's buffers go after them
    await new Promise((resolve) => setImmediate(resolve));
    this.created.runner.dispose();
  }

  private withDefaults(params: SamplingParamsInput): SamplingParamsInput {
    const d = this.defaults;
    return {
      ...params,
      temperature: params.temperature ?? d.temperature,
      topP: params.topP ?? d.topP,
      topK: params.topK ?? d.topK,
      repetitionPenalty: params.repetitionPenalty ?? d.repetitionPenalty,
    };
  }
}

/** Loads a model folder or engine artifact (default: the embedded fortune model) and starts its engine on the CPU. */
export async function createEngine(options: EngineOptions = {}): Promise<KilnEngine> {
  const created = await createCoreEngine({
    modelDir: options.model ?? DEFAULT_MODEL_DIR,
    backend: "cpu",
    ...(options.maxModelLen === undefined ? {} : { maxModelLen: options.maxModelLen }),
    ...(options.maxNumSeqs === undefined ? {} : { maxNumSeqs: options.maxNumSeqs }),
    ...(options.maxNumBatchedTokens === undefined ? {} : { maxNumBatchedTokens: options.maxNumBatchedTokens }),
    ...(options.kvCacheBytes === undefined ? {} : { kvCacheBytes: options.kvCacheBytes }),
    ...(options.blockSize === undefined ? {} : { blockSize: options.blockSize }),
    ...(options.verify === true ? { load: { verify: true } } : {}),
  });
  return new KilnEngine(created);
}

export interface CompileOptions {
  /** the Hugging Face model folder to compile */
  readonly model: string;
  /** the artifact folder to write */
  readonly output: string;
  /** "cpu" (default) or "cuda:sm_XX" */
  readonly target?: string;
  /** weight storage, "f32", "bf16" or "f16" (default: the checkpoint's) */
  readonly dtype?: string;
  readonly maxModelLen?: number;
  /** sequences per step; sets the CUDA-graph capture sizes (default 256) */
  readonly maxNumSeqs?: number;
  /** replace an existing artifact folder */
  readonly force?: boolean;
}

/** `kiln compile`: writes an engine artifact that `createEngine({ model })` and `serve` load without tracing. */
export function compile(options: CompileOptions): Promise<ArtifactSummary> {
  return compileArtifact({
    modelDir: options.model,
    outDir: options.output,
    target: parseTarget(options.target ?? "cpu"),
    ...(options.dtype === undefined ? {} : { dtype: parseDtype(options.dtype) }),
    ...(options.maxModelLen === undefined ? {} : { maxModelLen: options.maxModelLen }),
    ...(options.maxNumSeqs === undefined ? {} : { maxNumSeqs: options.maxNumSeqs }),
    force: options.force === true,
  });
}

export interface ServeOptions extends EngineOptions {
  /** an engine to serve instead of loading `model`; it stays open when the server closes */
  readonly engine?: KilnEngine;
  /** default 127.0.0.1 */
  readonly host?: string;
  /** default 8000; 0 picks a free port (see `port` on the result) */
  readonly port?: number;
  /** require `Authorization: Bearer <key>` (every route but /health, /version and /metrics) */
  readonly apiKey?: string;
  /** the model name clients send (default: the model folder's name) */
  readonly servedModelName?: string;
  readonly cors?: CorsOptions;
  /** fastify's log level, or false for none (default) */
  readonly logLevel?: "fatal" | "error" | "warn" | "info" | "debug" | false;
}

export interface KilnServer {
  /** the API's base URL, e.g. http://127.0.0.1:8000/v1 */
  readonly url: string;
  readonly port: number;
  readonly engine: KilnEngine;
  /** Stops accepting, ends open connections, and closes the engine when `serve` loaded it. */
  close(): Promise<void>;
}

/** `kiln serve` in-process: the OpenAI-compatible server over a model (or a given engine). */
export async function serve(options: ServeOptions = {}): Promise<KilnServer> {
  const owned = options.engine === undefined;
  const engine = options.engine ?? (await createEngine(options));
  const host = options.host ?? "127.0.0.1";
  // loaded here: a program that only generates never loads fastify and the routes
  const { buildServer } = await import("./server/app.ts");
  const app = buildServer({
    engine: engine.created.engine,
    tokenizer: engine.tokenizer,
    servedModelName: options.servedModelName ?? basename(engine.model),
    maxModelLen: engine.maxModelLen,
    defaults: engine.defaults,
    apiKey: options.apiKey,
    ...(options.cors === undefined ? {} : { cors: options.cors }),
    logger: options.logLevel === undefined || options.logLevel === false ? false : { level: options.logLevel },
  });
  try {
    await app.listen({ host, port: options.port ?? 8000 });
  } catch (cause) {
    if (owned) await engine.close();
    throw new KilnError("LISTEN_FAILED", `cannot listen on ${host}:${options.port ?? 8000}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
  const addr = app.server.address();
  const port = typeof addr === "object" && addr !== null ? addr.port : (options.port ?? 8000);
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/v1`,
    port,
    engine,
    close: () =>
      (closing ??= (async () => {
        // streams still open would hold app.close() until they end: the owned engine aborts them first
        if (owned) engine.created.engine.close();
        app.server.closeAllConnections();
        await app.close();
        if (owned) await engine.close();
      })()),
  };
}
