/**
 * The engine's public face: requests in as prompts (text or token ids) with sampling params,
 * deltas out as async iterators; the core steps on setImmediate, so Node's event loop gets a
 * turn between steps and never waits longer than one step. When the runner samples on the device,
 * a step is queued there and collected on the next turn, and the next step is queued before the
 * collected tokens reach their consumers: detokenizing and writing them to sockets overlaps the
 * device's work. Text, stop strings and per-request timing live here; scheduling, KV blocks and
 * sampling in the core.
 *
 *   const stream = engine.generate({ prompt: "You will", params: { maxTokens: 16 }, signal });
 *   for await (const d of stream) process.stdout.write(d.text);
 */
import type { TokenDecoder } from "../io/detokenizer.ts";
import { KilnError } from "./errors.ts";
import { CompletionText } from "./completion_text.ts";
import { DeltaStream } from "./delta_stream.ts";
import { EngineCore, type CoreStats, type EngineCoreOptions, type PendingStep, type SequenceUpdate, type StepResult } from "./engine_core.ts";
import { collectResult, type CompletionDelta, type RequestMetrics, type RequestResult, type Usage } from "./request_output.ts";
import { resolveSamplingParams, type SamplingParamsInput } from "./sampling_params.ts";
import type { FinishReason, Sequence } from "./sequence.ts";
import type { StepRunner } from "./step_runner.ts";
import type { TokenConstraintFactory } from "./token_constraint.ts";

export interface EngineTokenizer extends TokenDecoder {
  encode(text: string, options?: { readonly addSpecialTokens?: boolean }): number[];
}

export interface EngineOptions extends EngineCoreOptions {
  /** needed for text prompts, text output and stop strings; without it deltas carry ids only */
  readonly tokenizer?: EngineTokenizer;
  /** the most logprobs / promptLogprobs a request may ask for (default 20, as vLLM) */
  readonly maxLogprobs?: number;
  /**
   * stream a step's outputs while the device runs the next step (default true; false, as vLLM's
   * disable_async_output_proc, collects each step where it begins)
   */
  readonly overlapOutput?: boolean;
}

/** A prompt: text (tokenized with the model's special tokens) or token ids. */
export type Prompt = string | readonly number[];

export interface GenerateRequest {
  readonly prompt: Prompt;
  readonly params?: SamplingParamsInput;
  /** default: "req-<n>" */
  readonly requestId?: string;
  /** lower runs first under the priority policy (default 0) */
  readonly priority?: number;
  /** aborting ends the request at once: its blocks return and its stream ends with finishReason "abort" */
  readonly signal?: AbortSignal;
  /** requests with different salts never share prefix-cache blocks */
  readonly cacheSalt?: string;
  /** structured outputs: a constraint for each of the request's sequences */
  readonly constraint?: TokenConstraintFactory;
}

export interface RequestStream extends AsyncIterableIterator<CompletionDelta> {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
}

export interface EngineStats extends CoreStats {
  /** requests not yet finished */
  readonly numRequests: number;
  readonly numFinishedRequests: number;
  readonly numAbortedRequests: number;
  /** requests that ended with an error of their own while others went on */
  readonly numFailedRequests: number;
}

interface LiveRequest {
  readonly id: string;
  readonly promptTokenIds: readonly number[];
  readonly seqs: readonly Sequence[];
  readonly texts: readonly CompletionText[];
  /** completions whose last delta went out */
  readonly reported: boolean[];
  readonly stream: DeltaStream<CompletionDelta>;
  readonly arrivalTime: number;
  firstScheduledTime: number | undefined;
  firstTokenTime: number | undefined;
  detach: () => void;
}

const epochMs = (): number => performance.timeOrigin + performance.now();

export class Engine {
  readonly core: EngineCore;
  private readonly tokenizer: EngineTokenizer | undefined;
  private readonly maxLogprobs: number;
  private readonly live = new Map<string, LiveRequest>();
  private loopPending = false;
  private readonly overlapOutput: boolean;
  /** a step is queued on the device and not collected yet: no other may begin */
  private stepOnDevice = false;
  private closed = false;
  private nextId = 0;
  private numFinished = 0;
  private numAborted = 0;
  private numFailed = 0;

  constructor(
    readonly runner: StepRunner,
    options: EngineOptions,
  ) {
    this.core = new EngineCore(runner, options);
    this.tokenizer = options.tokenizer;
    this.maxLogprobs = options.maxLogprobs ?? 20;
    this.overlapOutput = options.overlapOutput !== false;
  }

  /** Starts a request; throws a KilnError at once for a bad prompt or bad params. */
  generate(request: GenerateRequest): RequestStream {
    if (this.closed) throw new KilnError("ENGINE_CLOSED", "the engine is closed");
    const params = resolveSamplingParams(request.params, { vocabSize: this.runner.vocabSize, maxLogprobs: this.maxLogprobs });
    if (params.stop.length > 0 && this.tokenizer === undefined) {
      throw new KilnError("SAMPLING_PARAMS_INVALID", "stop strings need an engine with a tokenizer");
    }
    const promptTokenIds = this.tokenize(request.prompt);
    const priority = request.priority ?? 0;
    if (!Number.isSafeInteger(priority)) throw new KilnError("INVALID_ARGUMENT", `priority must be an integer, got ${priority}`);
    const id = request.requestId ?? `req-${this.nextId++}`;
    if (this.live.has(id)) throw new KilnError("INVALID_ARGUMENT", `request id '${id}' is already running`);

    const seqs = this.core.addRequest({ requestId: id, promptTokenIds, params, priority, cacheSalt: request.cacheSalt, constraint: request.constraint });
    const stream = new DeltaStream<CompletionDelta>(() => this.abort(id));
    const req: LiveRequest = {
      id,
      promptTokenIds,
      seqs,
      texts: seqs.map(() => new CompletionText(this.tokenizer, promptTokenIds, params)),
      reported: seqs.map(() => false),
      stream,
      arrivalTime: epochMs(),
      firstScheduledTime: undefined,
      firstTokenTime: undefined,
      detach: () => {},
    };
    this.live.set(id, req);
    const signal = request.signal;
    if (signal !== undefined) {
      const onAbort = (): void => void this.abort(id);
      signal.addEventListener("abort", onAbort, { once: true });
      req.detach = () => signal.removeEventListener("abort", onAbort);
      if (signal.aborted) this.abort(id);
    }
    this.wake();
    return Object.assign(stream, { requestId: id, promptTokenIds });
  }

  /** Runs every prompt with the same params; results in prompt order. */
  async generateBatch(
    prompts: readonly Prompt[],
    params?: SamplingParamsInput,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<RequestResult[]> {
    const streams: RequestStream[] = [];
    try {
      for (const prompt of prompts) {
        streams.push(this.generate({ prompt, ...(params === undefined ? {} : { params }), ...(options.signal ? { signal: options.signal } : {}) }));
      }
    } catch (e) {
      for (const s of streams) this.abort(s.requestId);
      throw e;
    }
    return Promise.all(streams.map((s) => collectResult(s, s.requestId, s.promptTokenIds)));
  }

  /** Ends a request now; its stream closes with finishReason "abort". False when it is not live. */
  abort(requestId: string): boolean {
    const req = this.live.get(requestId);
    if (!req) return false;
    this.core.abortRequest(requestId);
    const now = epochMs();
    req.seqs.forEach((_, i) => {
      if (!req.reported[i]) this.emit(req, { requestId, index: i, tokenIds: [], text: req.texts[i]!.takeDelta(true), finishReason: "abort" }, now);
    });
    return true;
  }

  /** Aborts everything live and refuses new requests. */
  close(): void {
    this.closed = true;
    for (const id of [...this.live.keys()]) this.abort(id);
  }

  stats(): EngineStats {
    return {
      ...this.core.stats(),
      numRequests: this.live.size,
      numFinishedRequests: this.numFinished,
      numAbortedRequests: this.numAborted,
      numFailedRequests: this.numFailed,
    };
  }

  private tokenize(prompt: Prompt): number[] {
    if (typeof prompt !== "string") return [...prompt];
    if (this.tokenizer === undefined) throw new KilnError("INVALID_ARGUMENT", "a text prompt needs an engine with a tokenizer; pass token ids");
    return this.tokenizer.encode(prompt, { addSpecialTokens: true });
  }

  private wake(): void {
    if (this.loopPending || this.stepOnDevice || !this.core.hasUnfinished) return;
    this.loopPending = true;
    setImmediate(() => {
      this.loopPending = false;
      if (this.core.hasUnfinished) this.runStep();
      this.wake();
    });
  }

  private runStep(): void {
    // a request's queue time ends when the step that first schedules it starts
    const started = epochMs();
    let begun: ReturnType<EngineCore["beginStep"]>;
    try {
      begun = this.core.beginStep();
    } catch (error) {
      this.failAll(error);
      return;
    }
    if (begun.kind === "done") {
      this.complete(begun.result, started);
      return;
    }
    const pending = begun.step;
    if (!this.overlapOutput) {
      this.finish(pending, started);
      return;
    }
    // the step is on the device; the next turn of the event loop collects it
    this.stepOnDevice = true;
    setImmediate(() => this.collect(pending, started));
  }

  /** Collects a pending step and delivers its tokens; false when the runner failed (every request then failed). */
  private finish(step: PendingStep, started: number): boolean {
    let result: StepResult;
    try {
      result = this.core.finishStep(step);
    } catch (error) {
      this.failAll(error);
      return false;
    }
    this.complete(result, started);
    return true;
  }

  /**
   * Collects a step from the device and delivers its tokens, then begins the next step before
   * returning: the consumers of these tokens (promise callbacks, socket writes) run after this
   * callback, while that next step is on the device.
   */
  private collect(step: PendingStep, started: number): void {
    this.stepOnDevice = false;
    if (this.finish(step, started) && this.core.hasUnfinished) this.runStep();
    this.wake();
  }

  /** The runner failed: every live request fails with the error, and the pool is freed. */
  private failAll(error: unknown): void {
    for (const req of [...this.live.values()]) {
      this.core.abortRequest(req.id);
      this.live.delete(req.id);
      req.detach();
      req.stream.fail(error);
    }
  }

  /** One request failed on its own: it ends with the error, and every other request goes on. */
  private failRequest(requestId: string, error: unknown): void {
    const req = this.live.get(requestId);
    if (!req) return;
    this.core.abortRequest(requestId);
    this.live.delete(requestId);
    this.numFailed++;
    req.detach();
    req.stream.fail(error);
  }

  private complete(result: StepResult, started: number): void {
    const now = epochMs();
    for (const { seq } of result.scheduled.chunks) {
      const req = this.live.get(seq.requestId);
      if (req && req.firstScheduledTime === undefined) req.firstScheduledTime = started;
    }
    for (const f of result.failures) this.failRequest(f.requestId, f.error);
    for (const u of result.updates) {
      // a failure while turning one request's token into text (its detokenizer, its stop
      // strings) is that request's alone
      try {
        this.deliver(u, now);
      } catch (error) {
        this.failRequest(u.seq.requestId, error);
      }
    }
  }

  private deliver(u: SequenceUpdate, now: number): void {
    const seq = u.seq;
    const req = this.live.get(seq.requestId);
    if (!req) return;
    req.firstTokenTime ??= now;
    const text = req.texts[seq.index]!;
    let finishReason: FinishReason | undefined = u.finishReason;
    const stop = text.push({
      tokenId: u.tokenId,
      stoppedByToken: u.stoppedByToken,
      last: finishReason !== undefined,
      checkStops: seq.numOutputTokens >= seq.params.minTokens,
    });
    if (stop !== undefined) {
      // a stop string in the text ends the sequence (or renames a length finish on the same token)
      if (seq.isFinished) {
        seq.finishReason = "stop";
        seq.stopReason = stop;
      } else {
        this.core.finishSequence(seq, "stop", stop);
      }
      finishReason = "stop";
    }
    const finished = finishReason !== undefined;
    this.emit(
      req,
      {
        requestId: req.id,
        index: seq.index,
        tokenIds: [u.tokenId],
        text: text.takeDelta(finished),
        ...(u.logprobs === undefined ? {} : { logprobs: [u.logprobs] }),
        ...(u.promptLogprobs === undefined ? {} : { promptLogprobs: u.promptLogprobs }),
        ...(finishReason === undefined ? {} : { finishReason }),
        ...(finished && seq.stopReason !== undefined ? { stopReason: seq.stopReason } : {}),
      },
      now,
    );
  }

  /** Pushes a delta; the one that ends the last completion carries usage and metrics and closes the stream. */
  private emit(req: LiveRequest, delta: CompletionDelta, now: number): void {
    if (delta.finishReason !== undefined) req.reported[delta.index] = true;
    if (!req.reported.every(Boolean)) {
      req.stream.push(delta);
      return;
    }
    const usage: Usage = {
      promptTokens: req.promptTokenIds.length,
      completionTokens: req.seqs.reduce((n, s) => n + s.numOutputTokens, 0),
      totalTokens: req.promptTokenIds.length + req.seqs.reduce((n, s) => n + s.numOutputTokens, 0),
      cachedPromptTokens: req.seqs[0]!.numCachedPromptTokens,
    };
    const metrics: RequestMetrics = {
      arrivalTime: req.arrivalTime,
      firstScheduledTime: req.firstScheduledTime,
      firstTokenTime: req.firstTokenTime,
      finishedTime: now,
      numPreemptions: req.seqs.reduce((n, s) => n + s.numPreemptions, 0),
    };
    if (req.seqs.some((s) => s.finishReason === "abort")) this.numAborted++;
    else this.numFinished++;
    this.live.delete(req.id);
    req.detach();
    req.stream.push({ ...delta, usage, metrics });
    req.stream.end();
  }
}
