/**
 * The synchronous heart of the engine (vLLM V1's EngineCore): requests in, one step at a time
 * out. A step is schedule → run the model on the scheduled chunks → commit what was computed →
 * sample for every sequence whose chunk reached its last token → finish sequences that hit a
 * stop token or a length limit. When the runner samples on the device (StepRunner.launchSample) and
 * no sequence of the step wants logprobs, the logits stay there and only token ids come back.
 * Text (detokenization, stop strings) is the caller's side
 * (engine.ts); it ends sequences that hit a stop string through finishSequence.
 */
import type { SeqChunk } from "../backends/kv_cache.ts";
import { samplingRow, type DeviceSamplingRow } from "./device_sampling.ts";
import { KilnError } from "./errors.ts";
import { BlockManager } from "./block_manager.ts";
import { resolveEngineConfig, type EngineCoreOptions } from "./engine_config.ts";
import { positionLogprobs, type PositionLogprobs } from "./logprobs.ts";
import { sampleToken } from "./sampler.ts";
import type { TokenConstraintFactory } from "./token_constraint.ts";
import type { SamplingParams } from "./sampling_params.ts";
import { Scheduler, type ScheduledChunk, type SchedulerStep } from "./scheduler.ts";
import { Sequence, type FinishReason } from "./sequence.ts";
import { logitRows, type StepRunner } from "./step_runner.ts";

export type { EngineCoreOptions } from "./engine_config.ts";

export interface CoreRequest {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly params: SamplingParams;
  readonly priority: number;
  readonly cacheSalt: string | undefined;
  /** structured outputs: each sequence gets its own constraint */
  readonly constraint?: TokenConstraintFactory | undefined;
}

/** One sampled token of one sequence. */
export interface SequenceUpdate {
  readonly seq: Sequence;
  readonly tokenId: number;
  readonly logprobs: PositionLogprobs | undefined;
  /** with the first token of a request that asked for them: [numPromptTokens], entry 0 undefined */
  readonly promptLogprobs: readonly (PositionLogprobs | undefined)[] | undefined;
  /** the sequence ended on this token (stop token or length) */
  readonly finishReason: FinishReason | undefined;
  readonly stoppedByToken: boolean;
}

/** A step queued on the device whose sampled tokens are not collected yet. */
export interface PendingStep {
  readonly scheduled: SchedulerStep;
  /** the sequences of the step's logits rows, in row order */
  readonly sampled: readonly Sequence[];
  readonly collect: () => Int32Array;
}

/** A request that failed on its own during a step; its sequences are already finished. */
export interface RequestFailure {
  readonly requestId: string;
  readonly error: unknown;
}

export interface StepResult {
  readonly scheduled: SchedulerStep;
  readonly updates: readonly SequenceUpdate[];
  /** requests that failed alone (a row that could not be sampled); the rest of the batch goes on */
  readonly failures: readonly RequestFailure[];
}

export interface CoreStats {
  readonly numRunning: number;
  readonly numWaiting: number;
  readonly numBlocks: number;
  readonly numFreeBlocks: number;
  /** fraction of KV blocks held by live sequences */
  readonly kvUsage: number;
  /** prompt tokens looked up in / found in the prefix cache */
  readonly prefixCacheQueries: number;
  readonly prefixCacheHits: number;
  readonly numPreemptions: number;
  /** prompt tokens of requests whose prefill completed */
  readonly promptTokens: number;
  readonly generationTokens: number;
  /** tokens run through the model (recomputation included) */
  readonly computedTokens: number;
  readonly steps: number;
}

export class EngineCore {
  readonly scheduler: Scheduler;
  readonly blocks: BlockManager;
  readonly maxModelLen: number;
  private readonly eosTokenIds: readonly number[];
  private readonly requests = new Map<string, Sequence[]>();
  private readonly promptLogprobs = new Map<Sequence, (PositionLogprobs | undefined)[]>();
  private arrivals = 0;
  private promptTokens = 0;
  private generationTokens = 0;
  private computedTokens = 0;
  private steps = 0;

  constructor(
    readonly runner: StepRunner,
    opts: EngineCoreOptions,
  ) {
    const config = resolveEngineConfig(opts, runner.numBlocks, runner.blockSize);
    this.maxModelLen = config.maxModelLen;
    this.eosTokenIds = opts.eosTokenIds ?? [];
    this.blocks = new BlockManager(runner.numBlocks, runner.blockSize, config.enablePrefixCaching);
    this.scheduler = new Scheduler(config.scheduler, this.blocks, runner.statePool);
  }

  /** Queues a request's n sequences. */
  addRequest(req: CoreRequest): readonly Sequence[] {
    if (this.requests.has(req.requestId)) throw new KilnError("INVALID_ARGUMENT", `request id '${req.requestId}' is already running`);
    const prompt = req.promptTokenIds;
    if (prompt.length === 0) throw new KilnError("INVALID_ARGUMENT", "the prompt is empty");
    if (prompt.length >= this.maxModelLen) {
      throw new KilnError("PROMPT_TOO_LONG", `the prompt has ${prompt.length} tokens; the context window (maxModelLen) is ${this.maxModelLen}`);
    }
    const V = this.runner.vocabSize;
    const badId = prompt.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (badId !== undefined) throw new KilnError("INVALID_ARGUMENT", `prompt token id ${badId} is outside the vocabulary (0..${V - 1})`);

    const seqs: Sequence[] = [];
    for (let index = 0; index < req.params.n; index++) {
      const seq = new Sequence({
        requestId: req.requestId,
        index,
        promptTokenIds: prompt,
        params: req.params,
        priority: req.priority,
        arrivalOrder: this.arrivals++,
        eosTokenIds: this.eosTokenIds,
        // vLLM seeds child i of a seeded request with seed + i
        seed: req.params.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : req.params.seed + index,
        cacheSalt: req.cacheSalt,
        leader: seqs[0],
        constraint: req.constraint?.(),
      });
      seqs.push(seq);
      this.scheduler.add(seq);
    }
    this.requests.set(req.requestId, seqs);
    return seqs;
  }

  /** Ends every unfinished sequence of the request; false when no such request is live. */
  abortRequest(requestId: string): boolean {
    const seqs = this.requests.get(requestId);
    if (!seqs) return false;
    for (const seq of seqs) this.finishSequence(seq, "abort");
    return true;
  }

  /** Ends one sequence (stop string, abort); its blocks, state slot and constraint are released at once. */
  finishSequence(seq: Sequence, reason: FinishReason, stopReason?: string | number): void {
    if (!seq.isFinished) seq.constraint?.dispose();
    this.scheduler.finish(seq, reason, stopReason);
    this.promptLogprobs.delete(seq);
    const seqs = this.requests.get(seq.requestId);
    if (seqs?.every((s) => s.isFinished)) this.requests.delete(seq.requestId);
  }

  get hasUnfinished(): boolean {
    return this.scheduler.hasUnfinished;
  }

  /** Live sequences: those that hold or may hold blocks. */
  liveSequences(): Sequence[] {
    return [...this.requests.values()].flat().filter((s) => !s.isFinished);
  }

  /** Runs one step whole. */
  step(): StepResult {
    const begun = this.beginStep();
    return begun.kind === "done" ? begun.result : this.finishStep(begun.step);
  }

  /**
   * Starts one step. When its tokens are sampled on the device, the step is only queued there and
   * comes back pending: the host is free until finishStep collects it (the engine streams the
   * previous step's outputs meanwhile). Requests aborted in between get no token. Otherwise the
   * step runs whole. No other step may begin before a pending one is finished.
   */
  beginStep(): { readonly kind: "done"; readonly result: StepResult } | { readonly kind: "pending"; readonly step: PendingStep } {
    const scheduled = this.scheduler.schedule();
    if (scheduled.chunks.length === 0) {
      // the pool always fits one sequence, so unfinished work always schedules something
      if (this.hasUnfinished) throw new Error(`the scheduler made no progress with ${this.scheduler.waiting.size} sequences waiting`);
      return { kind: "done", result: { scheduled, updates: [], failures: [] } };
    }
    this.steps++;
    const chunks = scheduled.chunks.map((c) => toSeqChunk(c));
    const pending = this.deviceSampled(scheduled, chunks);
    if (pending !== undefined) return { kind: "pending", step: pending };
    return { kind: "done", result: this.runOnHost(scheduled, chunks) };
  }

  /** Collects a pending step's tokens: commit, then each sampled sequence that is still live takes its token. */
  finishStep(p: PendingStep): StepResult {
    const ids = p.collect();
    if (ids.length !== p.sampled.length) throw new Error(`the runner sampled ${ids.length} tokens for ${p.sampled.length} rows`);
    this.scheduler.commit(p.scheduled);
    this.computedTokens += p.scheduled.numBatchedTokens;
    const updates: SequenceUpdate[] = [];
    const failures: RequestFailure[] = [];
    const V = this.runner.vocabSize;
    p.sampled.forEach((seq, r) => {
      if (seq.isFinished) return;
      const id = ids[r]!;
      if (id >= 0 && id < V) updates.push(this.accept(seq, id, undefined));
      else failures.push(this.fail(seq, new KilnError("SAMPLING_FAILED", `the device sampled token id ${id}, outside the vocabulary (0..${V - 1})`)));
    });
    return { scheduled: p.scheduled, updates, failures };
  }

  private runOnHost(scheduled: SchedulerStep, chunks: readonly SeqChunk[]): StepResult {
    const logits = this.runner.execute(chunks);
    const V = this.runner.vocabSize;
    const rows = chunks.reduce((n, c) => n + logitRows(c), 0);
    if (logits.length !== rows * V) throw new Error(`the runner returned ${logits.length} logits for ${rows} rows of ${V}`);
    this.scheduler.commit(scheduled);
    this.computedTokens += scheduled.numBatchedTokens;

    const updates: SequenceUpdate[] = [];
    const failures: RequestFailure[] = [];
    let row = 0;
    scheduled.chunks.forEach((c, k) => {
      const chunk = chunks[k]!;
      const n = logitRows(chunk);
      const rowAt = (r: number): Float32Array => logits.subarray((row + r) * V, (row + r + 1) * V);
      if (chunk.allLogits) this.recordPromptLogprobs(c.seq, chunk.numCached, n, rowAt);
      if (c.seq.numComputed === c.seq.numTokens && !c.seq.isFinished) {
        try {
          updates.push(this.sample(c.seq, rowAt(n - 1)));
        } catch (error) {
          failures.push(this.fail(c.seq, error));
        }
      }
      row += n;
    });
    return { scheduled, updates, failures };
  }

  stats(): CoreStats {
    const cache = this.blocks.prefixCacheStats;
    return {
      numRunning: this.scheduler.running.length,
      numWaiting: this.scheduler.waiting.size,
      numBlocks: this.blocks.numBlocks,
      numFreeBlocks: this.blocks.numFree,
      kvUsage: this.blocks.usage,
      prefixCacheQueries: cache.queries,
      prefixCacheHits: cache.hits,
      numPreemptions: this.scheduler.numPreemptions,
      promptTokens: this.promptTokens,
      generationTokens: this.generationTokens,
      computedTokens: this.computedTokens,
      steps: this.steps,
    };
  }

  /** Block-count conservation and state-slot accounting; throws on a leak (tests call it every step). */
  checkInvariants(): void {
    const live = this.liveSequences();
    this.blocks.checkConservation(live);
    for (const seq of live) {
      if (seq.status !== "running" && seq.blocks.length > 0) throw new Error(`${seq.status} sequence ${seq.id} holds blocks`);
    }
    const pool = this.runner.statePool;
    if (pool !== undefined) {
      const held = live.filter((s) => s.stateSlot !== undefined).length;
      if (held + pool.numFree !== pool.numSlots) throw new Error(`state slots: ${held} held + ${pool.numFree} free ≠ ${pool.numSlots}`);
    }
  }

  /**
   * The step run with sampling on the device, when the runner can and no sequence of the step
   * wants logprobs or prompt logprobs (those need the logits on the host); else undefined, and
   * nothing has run. Each row's uniform comes from its sequence's generator, drawn exactly when
   * sampleToken would draw it, so the tokens are the host path's.
   */
  private deviceSampled(scheduled: SchedulerStep, chunks: readonly SeqChunk[]): PendingStep | undefined {
    const launch = this.runner.launchSample;
    if (launch === undefined) return undefined;
    const sampled: Sequence[] = [];
    for (const [k, c] of scheduled.chunks.entries()) {
      const chunk = chunks[k]!;
      const p = c.seq.params;
      // a constraint the device cannot apply (no bitmask) masks the row on the host
      const hostOnly = c.seq.constraint !== undefined && c.seq.constraint.deviceBitmask === undefined;
      if (p.logprobs !== undefined || p.promptLogprobs !== undefined || chunk.allLogits || hostOnly) return undefined;
      if (logitRows(chunk) === 0) continue;
      // a row whose sequence would not sample after the commit stays on the host path
      if (c.seq.numComputed + c.numNewTokens !== c.seq.numTokens) return undefined;
      sampled.push(c.seq);
    }
    const rows: DeviceSamplingRow[] = sampled.map((seq) => samplingRow(seq));
    return { scheduled, sampled, collect: launch.call(this.runner, chunks, rows) };
  }

  private sample(seq: Sequence, row: Float32Array): SequenceUpdate {
    const tokenId = sampleToken(row, seq);
    const logprobs = seq.params.logprobs === undefined ? undefined : positionLogprobs(row, tokenId, seq.params.logprobs);
    return this.accept(seq, tokenId, logprobs);
  }

  /** One sequence could not go on: its whole request ends (its blocks and slots return) with the error. */
  private fail(seq: Sequence, error: unknown): RequestFailure {
    this.abortRequest(seq.requestId);
    return { requestId: seq.requestId, error };
  }

  /** Appends a sampled token and finishes the sequence on a stop token or a length limit. */
  private accept(seq: Sequence, tokenId: number, logprobs: PositionLogprobs | undefined): SequenceUpdate {
    // the sampler drew from the constraint's mask, so a refusal here is a broken constraint
    if (seq.constraint !== undefined && !seq.constraint.acceptToken(tokenId)) {
      throw new KilnError("SAMPLING_FAILED", `the structured-output constraint refused token ${tokenId}, which it had allowed`);
    }
    seq.appendToken(tokenId);
    this.generationTokens++;
    if (seq.index === 0 && seq.numOutputTokens === 1) this.promptTokens += seq.numPromptTokens;

    let promptLogprobs: (PositionLogprobs | undefined)[] | undefined;
    if (seq.promptLogprobsPending) {
      promptLogprobs = this.promptLogprobs.get(seq) ?? [undefined];
      this.promptLogprobs.delete(seq);
      seq.promptLogprobsPending = false;
    }

    const p = seq.params;
    let finishReason: FinishReason | undefined;
    let stopReason: number | undefined;
    const stoppedByToken = seq.numOutputTokens >= p.minTokens && seq.stopTokenIds.has(tokenId);
    if (stoppedByToken) {
      finishReason = "stop";
      // as vLLM: EOS leaves no stop reason, a stop token id is the reason
      const eos = !p.ignoreEos && this.eosTokenIds.includes(tokenId);
      if (!eos) stopReason = tokenId;
    } else if (seq.constraint?.terminated === true) {
      // the constrained text is complete (a grammar that ends without an EOS token)
      finishReason = "stop";
    } else if (seq.numOutputTokens >= p.maxTokens || seq.numTokens >= this.maxModelLen) {
      finishReason = "length";
    }
    if (finishReason !== undefined) this.finishSequence(seq, finishReason, stopReason);
    return { seq, tokenId, logprobs, promptLogprobs, finishReason, stoppedByToken };
  }

  /** Rows of an allLogits chunk: the row at position p predicts prompt token p + 1. */
  private recordPromptLogprobs(seq: Sequence, start: number, n: number, rowAt: (r: number) => Float32Array): void {
    const topN = seq.params.promptLogprobs;
    if (topN === undefined) return;
    let lps = this.promptLogprobs.get(seq);
    if (!lps) this.promptLogprobs.set(seq, (lps = new Array<PositionLogprobs | undefined>(seq.numPromptTokens).fill(undefined)));
    for (let r = 0; r < n; r++) {
      const next = start + r + 1;
      if (next < seq.numPromptTokens) lps[next] = positionLogprobs(rowAt(r), seq.tokens[next]!, topN);
    }
  }
}

function toSeqChunk({ seq, numNewTokens }: ScheduledChunk): SeqChunk {
  const start = seq.numComputed;
  const end = start + numNewTokens;
  const base = { tokens: seq.tokens.slice(start, end), numCached: start, blockTable: seq.kernelBlockTable() };
  const slot = seq.stateSlot === undefined ? {} : { stateSlot: seq.stateSlot };
  if (seq.promptLogprobsPending && start < seq.numPromptTokens) return { ...base, ...slot, allLogits: true };
  return end === seq.numTokens ? { ...base, ...slot } : { ...base, ...slot, noLogits: true };
}
