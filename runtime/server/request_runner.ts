/**
 * Starts a route's engine requests and watches them: one abort controller per HTTP request
 * (a client that disconnects aborts its engine requests and frees their blocks), metrics fed
 * as deltas arrive, and several prompts' streams merged in arrival order.
 */
import type { Engine, RequestStream } from "../engine/engine.ts";
import type { CompletionDelta } from "../engine/request_output.ts";
import type { SamplingParamsInput } from "../engine/sampling_params.ts";
import type { TokenConstraintFactory } from "../engine/token_constraint.ts";
import type { ServerMetrics } from "./metrics.ts";

export interface TaggedDelta {
  /** which prompt of the HTTP request */
  readonly prompt: number;
  readonly delta: CompletionDelta;
}

export class RequestRunner {
  readonly controller = new AbortController();
  readonly streams: RequestStream[] = [];
  private readonly lastTokenAt = new Map<string, number>();

  constructor(
    private readonly engine: Engine,
    private readonly metrics: ServerMetrics,
  ) {}

  start(prompts: readonly (readonly number[])[], params: readonly SamplingParamsInput[], idPrefix: string, constraint?: TokenConstraintFactory): void {
    try {
      prompts.forEach((prompt, i) => {
        this.streams.push(
          this.engine.generate({
            prompt,
            params: params[i]!,
            requestId: prompts.length === 1 ? idPrefix : `${idPrefix}-${i}`,
            signal: this.controller.signal,
            ...(constraint === undefined ? {} : { constraint }),
          }),
        );
      });
    } catch (e) {
      this.controller.abort();
      throw e;
    }
  }

  abort(): void {
    this.controller.abort();
  }

  /** Every delta of every prompt, as they come. */
  async *deltas(): AsyncGenerator<TaggedDelta> {
    const iters = this.streams.map((s) => s[Symbol.asyncIterator]());
    const pending = new Map<number, Promise<{ i: number; r: IteratorResult<CompletionDelta> }>>();
    const pull = (i: number): void => {
      pending.set(i, iters[i]!.next().then((r) => ({ i, r })));
    };
    iters.forEach((_, i) => pull(i));
    try {
      while (pending.size > 0) {
        const { i, r } = await Promise.race(pending.values());
        if (r.done) {
          pending.delete(i);
          continue;
        }
        this.observe(r.value);
        pull(i);
        yield { prompt: i, delta: r.value };
      }
    } finally {
      // one prompt failed or the consumer left: the request's other prompts stop too
      if (pending.size > 0) {
        this.controller.abort();
        for (const p of pending.values()) p.catch(() => {});
      }
    }
  }

  private observe(d: CompletionDelta): void {
    const m = this.metrics;
    const label = m.modelLabel;
    const now = performance.now();
    if (d.tokenIds.length > 0) {
      const key = `${d.requestId}/${d.index}`;
      const last = this.lastTokenAt.get(key);
      if (last !== undefined) m.itl.observe(label, (now - last) / 1000 / d.tokenIds.length);
      this.lastTokenAt.set(key, now);
    }
    if (d.finishReason !== undefined) m.success.inc({ ...label, finished_reason: d.finishReason });
    if (d.usage) {
      m.promptTokens.inc(label, d.usage.promptTokens);
      m.generationTokens.inc(label, d.usage.completionTokens);
    }
    const t = d.metrics;
    if (t) {
      if (t.firstTokenTime !== undefined) m.ttft.observe(label, (t.firstTokenTime - t.arrivalTime) / 1000);
      if (t.firstScheduledTime !== undefined) m.queueTime.observe(label, (t.firstScheduledTime - t.arrivalTime) / 1000);
      m.e2e.observe(label, (t.finishedTime - t.arrivalTime) / 1000);
    }
  }
}
