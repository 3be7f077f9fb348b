/**
 * Continuous batching, as vLLM V1 schedules: there are no prefill and decode phases, only a
 * token budget per step. Each sequence has numComputed of numTokens tokens in the cache; a step
 * gives each scheduled sequence numTokens - numComputed new tokens (one for a decode; a prompt
 * or a prompt's remainder, chunked to the budget, for a prefill), so prefills and decodes mix.
 *
 * Running sequences go first, in order. When one cannot get blocks, the newest running sequence
 * (fcfs), or the lowest-priority latest one (priority), is preempted by recompute: its blocks
 * and state slot are freed, numComputed drops to 0 and it waits again at the front; when it runs
 * again it recomputes prompt + output so far (often from the prefix cache) and carries on.
 * Waiting sequences are admitted only in steps that preempted nothing, while the budget, the
 * maxNumSeqs limit, the KV pool and the state slots allow.
 */
import type { BlockManager } from "./block_manager.ts";
import type { FinishReason, Sequence } from "./sequence.ts";
import type { StatePool } from "./state_slots.ts";
import { comparePriority, WaitingQueue, type SchedulingPolicy } from "./waiting_queue.ts";

export interface SchedulerConfig {
  /** token budget of one step */
  readonly maxNumBatchedTokens: number;
  /** most sequences running at once */
  readonly maxNumSeqs: number;
  readonly policy: SchedulingPolicy;
  /** split prompts longer than the budget over several steps */
  readonly enableChunkedPrefill: boolean;
  /** every attention layer slides over this many keys: blocks behind it are freed */
  readonly attentionWindow: number | undefined;
}

export interface ScheduledChunk {
  readonly seq: Sequence;
  /** tokens seq.tokens[numComputed, numComputed + numNewTokens) run this step */
  readonly numNewTokens: number;
}

export interface SchedulerStep {
  readonly chunks: readonly ScheduledChunk[];
  /** preempted in this step, newest victim last */
  readonly preempted: readonly Sequence[];
  readonly numBatchedTokens: number;
}

export class Scheduler {
  readonly running: Sequence[] = [];
  readonly waiting: WaitingQueue;
  numPreemptions = 0;

  constructor(
    readonly config: SchedulerConfig,
    readonly blocks: BlockManager,
    readonly states: StatePool | undefined,
  ) {
    this.waiting = new WaitingQueue(config.policy);
  }

  add(seq: Sequence): void {
    seq.status = "waiting";
    this.waiting.add(seq);
  }

  get hasUnfinished(): boolean {
    return this.running.length > 0 || this.waiting.size > 0;
  }

  schedule(): SchedulerStep {
    let budget = this.config.maxNumBatchedTokens;
    const scheduled = new Map<Sequence, number>(); // insertion order = chunk order
    const preempted: Sequence[] = [];

    let i = 0;
    while (i < this.running.length && budget > 0) {
      const seq = this.running[i]!;
      const n = Math.min(seq.numTokens - seq.numComputed, budget);
      let fits = true;
      while (!this.blocks.allocate(seq, seq.numComputed + n)) {
        const victim = this.pickVictim();
        const at = this.running.indexOf(victim);
        const given = scheduled.get(victim);
        if (given !== undefined) {
          scheduled.delete(victim);
          budget += given;
        }
        this.preempt(victim);
        preempted.push(victim);
        if (at < i) i--;
        if (victim === seq) {
          fits = false;
          break;
        }
      }
      if (!fits) break;
      scheduled.set(seq, n);
      budget -= n;
      i++;
    }

    if (preempted.length === 0) budget = this.admitWaiting(budget, scheduled);

    return {
      chunks: [...scheduled].map(([seq, numNewTokens]) => ({ seq, numNewTokens })),
      preempted,
      numBatchedTokens: this.config.maxNumBatchedTokens - budget,
    };
  }

  /** After the step ran: the chunks' tokens are in the cache. */
  commit(step: SchedulerStep): void {
    for (const { seq, numNewTokens } of step.chunks) {
      if (seq.isFinished) continue;
      seq.numComputed += numNewTokens;
      this.blocks.cacheComputed(seq);
      if (this.config.attentionWindow !== undefined) this.blocks.dropOutsideWindow(seq, this.config.attentionWindow);
    }
  }

  /** Ends a sequence in any state (finish, stop string, abort); its blocks and slot go back. */
  finish(seq: Sequence, reason: FinishReason, stopReason?: string | number): void {
    if (seq.isFinished) return;
    if (seq.status === "running") {
      this.running.splice(this.running.indexOf(seq), 1);
      this.release(seq);
    } else {
      this.waiting.remove(seq);
    }
    seq.status = "finished";
    seq.finishReason = reason;
    seq.stopReason = stopReason;
  }

  private admitWaiting(budget: number, scheduled: Map<Sequence, number>): number {
    const held: Sequence[] = [];
    while (budget > 0 && this.running.length < this.config.maxNumSeqs) {
      const seq = this.waiting.peek();
      if (!seq) break;
      if (this.waitsForLeader(seq)) {
        held.push(this.waiting.shift()!);
        continue;
      }
      // a sequence with state, or asking for prompt logprobs, recomputes its whole prompt
      const usesCache = this.states === undefined && !seq.promptLogprobsPending;
      const hit = usesCache ? this.blocks.findCachedPrefix(seq) : [];
      const numCached = hit.length * this.blocks.blockSize;
      let n = seq.numTokens - numCached;
      if (n > budget) {
        if (!this.config.enableChunkedPrefill) break;
        n = budget;
      }
      if (this.states !== undefined && this.states.numFree === 0) break;
      if (!this.blocks.allocate(seq, numCached + n, hit)) break;
      this.waiting.shift();
      if (usesCache) this.blocks.recordLookup(seq.numTokens, numCached);
      if (seq.numPreemptions === 0) seq.numCachedPromptTokens = numCached;
      seq.numComputed = numCached;
      if (this.states !== undefined) {
        const slot = this.states.allocate()!; // numFree > 0 was checked
        this.states.reset(slot);
        seq.stateSlot = slot;
      }
      seq.status = "running";
      this.running.push(seq);
      scheduled.set(seq, n);
      budget -= n;
    }
    this.waiting.putBack(held);
    return budget;
  }

  /**
   * n > 1 siblings wait until their leader's prompt is in the cache, then admit on its blocks
   * (a block is cached only once computed, so admitting them together would compute it n times).
   */
  private waitsForLeader(seq: Sequence): boolean {
    const leader = seq.leader;
    if (leader === undefined || !this.blocks.enablePrefixCaching || this.states !== undefined) return false;
    return !leader.isFinished && leader.numComputed < leader.numPromptTokens;
  }

  private pickVictim(): Sequence {
    if (this.config.policy === "fcfs") return this.running[this.running.length - 1]!;
    let victim = this.running[0]!;
    for (const s of this.running) if (comparePriority(s, victim) >= 0) victim = s;
    return victim;
  }

  private preempt(seq: Sequence): void {
    this.running.splice(this.running.indexOf(seq), 1);
    this.release(seq);
    seq.numComputed = 0;
    seq.status = "preempted";
    seq.numPreemptions++;
    this.numPreemptions++;
    this.waiting.putBack([seq]);
  }

  private release(seq: Sequence): void {
    this.blocks.free(seq);
    if (seq.stateSlot !== undefined) {
      this.states?.free(seq.stateSlot);
      seq.stateSlot = undefined;
    }
  }
}
