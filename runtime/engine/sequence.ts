/**
 * One sequence being generated: its tokens (prompt then output), how many of them have K/V in
 * the cache, its KV blocks and state slot, and what sampling it needs. A request with n > 1 has n
 * sequences over the same prompt. The scheduler moves it waiting → running (→ preempted →
 * running …) → finished; everything here is plain data plus small derived getters.
 */
import { Rng } from "./rng.ts";
import type { TokenConstraint } from "./token_constraint.ts";
import type { BlockHash } from "./prefix_hash.ts";
import type { SamplingParams } from "./sampling_params.ts";

export type SequenceStatus = "waiting" | "running" | "preempted" | "finished";

/** OpenAI's finish reasons plus vLLM's "abort". */
export type FinishReason = "stop" | "length" | "abort";

export interface SequenceInit {
  readonly requestId: string;
  /** which of the request's n completions */
  readonly index: number;
  readonly promptTokenIds: readonly number[];
  readonly params: SamplingParams;
  /** lower runs first under the priority policy (vLLM's convention) */
  readonly priority: number;
  /** global admission order: the FCFS key and the priority tie-break */
  readonly arrivalOrder: number;
  readonly eosTokenIds: readonly number[];
  /** the generator's seed (the request's seed + index, or a random one) */
  readonly seed: number;
  readonly cacheSalt: string | undefined;
  /** for n > 1: the first sibling, whose prompt blocks the others wait to share */
  readonly leader: Sequence | undefined;
  /** a structured-output constraint of this sequence's own */
  readonly constraint?: TokenConstraint | undefined;
}

export class Sequence {
  readonly id: string;
  readonly requestId: string;
  readonly index: number;
  readonly params: SamplingParams;
  readonly priority: number;
  readonly arrivalOrder: number;
  readonly cacheSalt: string | undefined;
  readonly leader: Sequence | undefined;
  /** prompt then output: [numTokens] */
  readonly tokens: number[];
  readonly numPromptTokens: number;
  /** EOS (unless ignoreEos) and the request's stop ids */
  readonly stopTokenIds: ReadonlySet<number>;
  readonly rng: Rng;
  readonly constraint: TokenConstraint | undefined;
  /** output token → occurrences (frequency / presence penalties) */
  readonly outputCounts = new Map<number, number>();

  status: SequenceStatus = "waiting";
  finishReason: FinishReason | undefined;
  /** the stop string or stop token id that ended it (EOS leaves it undefined, as vLLM) */
  stopReason: string | number | undefined;
  /** tokens whose K/V is in the cache (or whose state is folded into the state slot) */
  numComputed = 0;
  /** KV blocks of logical indices numSkippedBlocks.. (leading blocks freed outside a sliding window) */
  blocks: number[] = [];
  numSkippedBlocks = 0;
  /** chained hashes of the full blocks of `tokens` (filled only with prefix caching) */
  readonly blockHashes: BlockHash[] = [];
  /** logical blocks already offered to the prefix cache */
  numCacheCheckedBlocks = 0;
  stateSlot: number | undefined;
  numPreemptions = 0;
  /** prompt tokens served from the prefix cache on first admission */
  numCachedPromptTokens = 0;
  /** prompt logprobs still to compute (only on the first pass over the prompt) */
  promptLogprobsPending: boolean;

  private promptSet: Set<number> | undefined;

  constructor(init: SequenceInit) {
    this.requestId = init.requestId;
    this.index = init.index;
    this.id = init.params.n > 1 ? `${init.requestId}#${init.index}` : init.requestId;
    this.params = init.params;
    this.priority = init.priority;
    this.arrivalOrder = init.arrivalOrder;
    this.cacheSalt = init.cacheSalt;
    this.leader = init.leader;
    this.tokens = [...init.promptTokenIds];
    this.numPromptTokens = init.promptTokenIds.length;
    this.stopTokenIds = new Set([...(init.params.ignoreEos ? [] : init.eosTokenIds), ...init.params.stopTokenIds]);
    this.rng = new Rng(init.seed);
    this.constraint = init.constraint;
    // siblings share the prompt: only the first computes its logprobs
    this.promptLogprobsPending = init.params.promptLogprobs !== undefined && init.index === 0;
  }

  get numTokens(): number {
    return this.tokens.length;
  }

  get numOutputTokens(): number {
    return this.tokens.length - this.numPromptTokens;
  }

  get outputTokenIds(): number[] {
    return this.tokens.slice(this.numPromptTokens);
  }

  get isFinished(): boolean {
    return this.status === "finished";
  }

  /** the prompt's distinct tokens (repetition penalty), built on first use */
  promptTokens(): ReadonlySet<number> {
    this.promptSet ??= new Set(this.tokens.slice(0, this.numPromptTokens));
    return this.promptSet;
  }

  appendToken(id: number): void {
    this.tokens.push(id);
    this.outputCounts.set(id, (this.outputCounts.get(id) ?? 0) + 1);
  }

  /** Number of logical blocks the sequence holds (freed leading ones included). */
  get numLogicalBlocks(): number {
    return this.numSkippedBlocks + this.blocks.length;
  }

  /**
   * The table the attention kernel reads, one entry per logical block. Entries of blocks freed
   * outside the sliding window are never read (every key there is out of the window), so they
   * repeat the first live block to keep the table a plain id list.
   */
  kernelBlockTable(): number[] {
    if (this.numSkippedBlocks === 0) return this.blocks;
    const first = this.blocks[0];
    if (first === undefined) throw new Error(`sequence ${this.id} has no live KV block`);
    return [...new Array<number>(this.numSkippedBlocks).fill(first), ...this.blocks];
  }
}
