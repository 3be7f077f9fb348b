/**
 * The queue of sequences waiting to run, in the order the scheduling policy admits them:
 *   fcfs: arrival order, with preempted sequences put back at the front (vLLM prepends them);
 *   priority: by (priority, arrival order), lower first; preempted ones re-enter by their key.
 * Queues stay short (waiting requests), so plain arrays serve.
 */
import type { Sequence } from "./sequence.ts";

export const SCHEDULING_POLICIES = ["fcfs", "priority"] as const;
export type SchedulingPolicy = (typeof SCHEDULING_POLICIES)[number];

export class WaitingQueue {
  private readonly items: Sequence[] = [];

  constructor(readonly policy: SchedulingPolicy) {}

  get size(): number {
    return this.items.length;
  }

  peek(): Sequence | undefined {
    return this.items[0];
  }

  shift(): Sequence | undefined {
    return this.items.shift();
  }

  /** A new arrival. */
  add(seq: Sequence): void {
    if (this.policy === "fcfs") this.items.push(seq);
    else this.insertByKey(seq);
  }

  /** A preempted sequence, or ones taken off the front and put back in order. */
  putBack(seqs: readonly Sequence[]): void {
    if (this.policy === "fcfs") this.items.unshift(...seqs);
    else for (const s of seqs) this.insertByKey(s);
  }

  remove(seq: Sequence): boolean {
    const i = this.items.indexOf(seq);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  [Symbol.iterator](): Iterator<Sequence> {
    return this.items[Symbol.iterator]();
  }

  private insertByKey(seq: Sequence): void {
    let i = this.items.length;
    while (i > 0 && comparePriority(seq, this.items[i - 1]!) < 0) i--;
    this.items.splice(i, 0, seq);
  }
}

/** Negative when a runs before b under the priority policy. */
export function comparePriority(a: Sequence, b: Sequence): number {
  return a.priority - b.priority || a.arrivalOrder - b.arrivalOrder;
}
