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

/** OpenAI has no "abort": a request cut short by the server reports as if it hit a length. */
export function openaiFinish(r: FinishReason | undefined): "stop" | "length" | null {
  if (r === undefined) return null;
  return r === "stop" ? "stop" : "length";
}

/** Legacy completions logprobs: parallel arrays, top_logprobs as token → logprob maps. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

export function completionLogprobs(
  ids: readonly number[],
  lps: readonly (PositionLogprobs | undefined)[],
  text: TokenText,
  startOffset: number,
): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = startOffset;
  ids.forEach((id, i) => {
    const lp = lps[i];
    const t = text(id);
    out.tokens.push(t);
    out.text_offset.push(offset);
    offset += t.length;
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
