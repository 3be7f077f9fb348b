/**
 * What a request gives back: a stream of deltas, one per completion per step that produced a
 * token (or ended it), and, collected, the finished result. Times are epoch milliseconds
 * (performance.timeOrigin + performance.now(), sub-millisecond).
 */
import type { PositionLogprobs } from "./logprobs.ts";
import type { FinishReason } from "./sequence.ts";

export interface Usage {
  readonly promptTokens: number;
  /** over all n completions */
  readonly completionTokens: number;
  readonly totalTokens: number;
  /** prompt tokens served from the prefix cache */
  readonly cachedPromptTokens: number;
}

export interface RequestMetrics {
  readonly arrivalTime: number;
  readonly firstScheduledTime: number | undefined;
  readonly firstTokenTime: number | undefined;
  readonly finishedTime: number;
  /** times the request's sequences were preempted */
  readonly numPreemptions: number;
}

export interface CompletionDelta {
  readonly requestId: string;
  /** which of the request's n completions */
  readonly index: number;
  /** ids sampled since the previous delta of this completion (a stop token included) */
  readonly tokenIds: readonly number[];
  /** text since the previous delta; may be "" while a character or a possible stop string is pending */
  readonly text: string;
  /** one entry per id in tokenIds, when the request asked for logprobs */
  readonly logprobs?: readonly PositionLogprobs[];
  /** on the first delta of completion 0, when asked: [promptTokens], entry 0 undefined */
  readonly promptLogprobs?: readonly (PositionLogprobs | undefined)[];
  /** set on the completion's last delta */
  readonly finishReason?: FinishReason;
  /** the stop string or stop token id that ended it */
  readonly stopReason?: string | number;
  /** on the request's last delta (all completions done) */
  readonly usage?: Usage;
  readonly metrics?: RequestMetrics;
}

export interface CompletionResult {
  readonly index: number;
  readonly tokenIds: readonly number[];
  readonly text: string;
  readonly finishReason: FinishReason;
  readonly stopReason: string | number | undefined;
  readonly logprobs: readonly PositionLogprobs[] | undefined;
}

export interface RequestResult {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly promptLogprobs: readonly (PositionLogprobs | undefined)[] | undefined;
  /** by index */
  readonly completions: readonly CompletionResult[];
  readonly usage: Usage;
  readonly metrics: RequestMetrics;
}

/** Drains a request's stream into its result. */
export async function collectResult(
  stream: AsyncIterable<CompletionDelta>,
  requestId: string,
  promptTokenIds: readonly number[],
): Promise<RequestResult> {
  const parts = new Map<number, { tokenIds: number[]; text: string; logprobs: PositionLogprobs[] | undefined; finishReason?: FinishReason; stopReason?: string | number }>();
  let promptLogprobs: readonly (PositionLogprobs | undefined)[] | undefined;
  let usage: Usage | undefined;
  let metrics: RequestMetrics | undefined;
  for await (const d of stream) {
    let part = parts.get(d.index);
    if (!part) parts.set(d.index, (part = { tokenIds: [], text: "", logprobs: undefined }));
    part.tokenIds.push(...d.tokenIds);
    part.text += d.text;
    if (d.logprobs) (part.logprobs ??= []).push(...d.logprobs);
    if (d.finishReason !== undefined) part.finishReason = d.finishReason;
    if (d.stopReason !== undefined) part.stopReason = d.stopReason;
    if (d.promptLogprobs) promptLogprobs = d.promptLogprobs;
    if (d.usage) usage = d.usage;
    if (d.metrics) metrics = d.metrics;
  }
  if (usage === undefined || metrics === undefined) throw new Error(`request ${requestId} ended without its final delta`);
  const completions = [...parts.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, p]): CompletionResult => {
      if (p.finishReason === undefined) throw new Error(`completion ${index} of request ${requestId} has no finish reason`);
      return { index, tokenIds: p.tokenIds, text: p.text, finishReason: p.finishReason, stopReason: p.stopReason, logprobs: p.logprobs };
    });
  return { requestId, promptTokenIds, promptLogprobs, completions, usage, metrics };
}
