/**
 * Engine outputs → OpenAI response objects (completions and chat, whole and streamed chunks).
 * Pure functions; the routes decide what to send when.
 */
import { randomUUID } from "node:crypto";
import type { PositionLogprobs } from "../engine/logprobs.ts";
import type { Usage } from "../engine/request_output.ts";
import type { FinishReason } from "../engine/sequence.ts";

/** How token ids become display strings (decoded token text, as vLLM returns them). */
export type TokenText = (id: number) => string;

export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

export function openaiUsage(u: Usage): OpenAIUsage {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.totalTokens,
    prompt_tokens_details: { cached_tokens: u.cachedPromptTokens },
  };
}

/**
 * A request the server cut short (shutdown past the grace period) reports "abort", as vLLM's
 * does, so a client can tell a truncated answer from one that hit its length.
 */
export function openaiFinish(r: FinishReason | undefined): "stop" | "length" | "abort" | null {
  return r ?? null;
}

/** Legacy completions logprobs: parallel arrays, top_logprobs as token → logprob maps. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** `offsets[i]`: where token i's text starts in the choice's text (monotonic; see textOffsets). */
export function completionLogprobs(
  ids: readonly number[],
  lps: readonly (PositionLogprobs | undefined)[],
  text: TokenText,
  offsets: readonly number[],
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  ids.forEach((id, i) => {
    const lp = lps[i];
    const t = text(id);
    out.tokens.push(t);
    out.text_offset.push(offsets[i]!);
    out.token_logprobs.push(lp ? lp.chosen.logprob : null);
    if (!lp) {
      out.top_logprobs.push(null);
      return;
    }
    const top: Record<string, number> = {};
    for (const e of lp.top) top[text(e.tokenId)] = e.logprob;
    top[t] ??= lp.chosen.logprob;
    out.top_logprobs.push(top);
  });
  return out;
}

/**
 * Where each token's text starts when the ids are decoded in order from `start`: the length of
 * the text before it, as an incremental decode produces it (a token that completes no character
 * starts where the text stands), capped at `limit` (the text actually returned).
 */
export function textOffsets(decoder: IncrementalDecoder, ids: readonly number[], start: number, limit = Infinity): number[] {
  let at = start;
  return ids.map((id) => {
    const offset = Math.min(at, limit);
    at += decoder.push(id).length;
    return offset;
  });
}

export interface IncrementalDecoder {
  push(id: number): string;
}

/** vLLM's prompt_logprobs: per prompt token (the first has none) the actual token and the top N by id. */
export type PromptLogprobsOut = (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];

export function promptLogprobsOut(lps: readonly (PositionLogprobs | undefined)[], text: TokenText): PromptLogprobsOut {
  return lps.map((lp) => {
    if (!lp) return null;
    const out: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    for (const e of [lp.chosen, ...lp.top]) out[String(e.tokenId)] ??= { logprob: e.logprob, rank: e.rank, decoded_token: text(e.tokenId) };
    return out;
  });
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(ids: readonly number[], lps: readonly PositionLogprobs[], text: TokenText): { content: ChatTokenLogprob[] } {
  const bytes = (s: string): number[] => [...Buffer.from(s, "utf8")];
  return {
    content: ids.map((id, i) => {
      const lp = lps[i];
      const t = text(id);
      return {
        token: t,
        logprob: lp ? lp.chosen.logprob : 0,
        bytes: bytes(t),
        top_logprobs: (lp?.top ?? []).map((e) => {
          const s = text(e.tokenId);
          return { token: s, logprob: e.logprob, bytes: bytes(s) };
        }),
      };
    }),
  };
}

/** Response ids like OpenAI's: a prefix and a random suffix. */
export function responseId(prefix: "cmpl" | "chatcmpl"): string {
  return `${prefix}-${randomUUID().replaceAll("-", "")}`;
}

export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}
