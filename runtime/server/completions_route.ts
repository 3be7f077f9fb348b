/** POST /v1/completions: text completions, whole or streamed. */
import type { FastifyInstance } from "fastify";
import type { PositionLogprobs } from "../engine/logprobs.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, parseBody, tokenText, type ServerContext } from "./context.ts";
import { completionLogprobs, openaiFinish, openaiUsage, responseId, unixNow, type CompletionLogprobs } from "./openai_format.ts";
import { RequestRunner } from "./request_runner.ts";
import { completionParams } from "./request_params.ts";
import { CompletionRequest } from "./schemas.ts";
import { SseWriter } from "./sse.ts";

interface Choice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  finish_reason: "stop" | "length" | null;
  stop_reason: string | number | null;
}

interface PromptInput {
  readonly ids: number[];
  /** the text as the client sent it (echo returns it unchanged) */
  readonly text: string | undefined;
}

/** The request's prompts: token-id prompts as given, text prompts tokenized (bounded, off the loop when long). */
async function prompts(ctx: ServerContext, p: CompletionRequest["prompt"]): Promise<PromptInput[]> {
  const items: (string | number[])[] = typeof p === "string" ? [p] : p.length > 0 && typeof p[0] === "number" ? [p as number[]] : (p as (string | number[])[]);
  const texts = items.filter((x): x is string => typeof x === "string");
  const encoded = await ctx.prompts.encodeMany(texts, { addSpecialTokens: true, param: "prompt" });
  let next = 0;
  return items.map((x) => (typeof x === "string" ? { ids: encoded[next++]!, text: x } : { ids: x, text: undefined }));
}

/** How many prompts the request holds, before anything is tokenized. */
function promptCount(p: CompletionRequest["prompt"]): number {
  return typeof p === "string" || (p.length > 0 && typeof p[0] === "number") ? 1 : p.length;
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post("/v1/completions", async (request, reply) => {
    const body = parseBody(CompletionRequest, request.body);
    checkModel(ctx, body.model);
    admit(ctx, promptCount(body.prompt));
    const inputs = await prompts(ctx, body.prompt);
    const ids = inputs.map((p) => p.ids);
    for (const p of ids) {
      for (const t of p) if (t >= ctx.tokenizer.vocabSize) throw ApiError.badRequest(`token id ${t} is outside the vocabulary`, "prompt");
    }
    const n = body.n ?? 1;
    const params = ids.map((p) => completionParams(body, p.length, ctx.maxModelLen, ctx.defaults));
    const id = responseId("cmpl");
    const runner = new RequestRunner(ctx.engine, ctx.metrics);
    runner.start(ids, params, `${id}-${request.id}`);
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) runner.abort();
    });
    const text = tokenText(ctx);
    const wantLogprobs = body.logprobs != null;
    const created = unixNow();
    const base = { id, object: "text_completion", created, model: ctx.servedModelName };

    // echo: the prompt's text (and its logprobs when asked) precede the completion
    const echoed = new Set<number>();
    const echo = (prompt: number, promptLps: readonly (PositionLogprobs | undefined)[] | undefined): { text: string; lps: CompletionLogprobs | null } => {
      const promptIds = ids[prompt]!;
      const t = inputs[prompt]!.text ?? ctx.tokenizer.decode(promptIds, { skipSpecialTokens: true });
      return { text: t, lps: wantLogprobs ? completionLogprobs(promptIds, promptLps ?? [], text, 0) : null };
    };

    if (body.stream) {
      const sse = new SseWriter(reply.raw);
      reply.hijack();
      sse.open();
      const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
      const offsets = new Map<number, number>();
      const promptLps = new Map<number, readonly (PositionLogprobs | undefined)[]>();
      try {
        for await (const { prompt, delta } of runner.deltas()) {
          const index = prompt * n + delta.index;
          if (delta.promptLogprobs) promptLps.set(prompt, delta.promptLogprobs);
          let chunkText = delta.text;
          let lps: CompletionLogprobs | null = null;
          if (body.echo && !echoed.has(index)) {
            echoed.add(index);
            const e = echo(prompt, promptLps.get(prompt));
            chunkText = e.text + chunkText;
            if (e.lps) lps = e.lps;
            offsets.set(index, e.text.length);
          }
          if (wantLogprobs) {
            const gen = completionLogprobs(delta.tokenIds, delta.logprobs ?? [], text, offsets.get(index) ?? 0);
            lps = lps ? mergeLogprobs(lps, gen) : gen;
            offsets.set(index, (offsets.get(index) ?? 0) + gen.tokens.join("").length);
          }
          if (delta.usage) {
            usage.prompt_tokens += delta.usage.promptTokens;
            usage.completion_tokens += delta.usage.completionTokens;
            usage.total_tokens += delta.usage.totalTokens;
          }
          if (chunkText === "" && delta.finishReason === undefined && lps === null) continue;
          const choice: Choice = {
            index,
            text: chunkText,
            logprobs: lps,
            finish_reason: openaiFinish(delta.finishReason),
            stop_reason: delta.stopReason ?? null,
          };
          sse.send({ ...base, choices: [choice], usage: null });
        }
      } catch (e) {
        // the status line is gone: the failure travels as an event, as vLLM sends it
        sse.fail(toApiError(e));
        return;
      }
      if (body.stream_options?.include_usage) sse.send({ ...base, choices: [], usage });
      sse.done();
      return;
    }

    const choices: Choice[] = [];
    const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, prompt_tokens_details: { cached_tokens: 0 } };
    const acc = new Map<number, { text: string; ids: number[]; lps: PositionLogprobs[]; finish?: Choice["finish_reason"]; stop?: string | number }>();
    const promptLps = new Map<number, readonly (PositionLogprobs | undefined)[]>();
    for await (const { prompt, delta } of runner.deltas()) {
      const index = prompt * n + delta.index;
      let a = acc.get(index);
      if (!a) acc.set(index, (a = { text: "", ids: [], lps: [] }));
      a.text += delta.text;
      a.ids.push(...delta.tokenIds);
      if (delta.logprobs) a.lps.push(...delta.logprobs);
      if (delta.promptLogprobs) promptLps.set(prompt, delta.promptLogprobs);
      if (delta.finishReason !== undefined) a.finish = openaiFinish(delta.finishReason);
      if (delta.stopReason !== undefined) a.stop = delta.stopReason;
      if (delta.usage) {
        const u = openaiUsage(delta.usage);
        usage.prompt_tokens += u.prompt_tokens;
        usage.completion_tokens += u.completion_tokens;
        usage.total_tokens += u.total_tokens;
        usage.prompt_tokens_details.cached_tokens += u.prompt_tokens_details?.cached_tokens ?? 0;
      }
    }
    if (reply.raw.destroyed) return reply;
    for (const [index, a] of [...acc.entries()].sort(([x], [y]) => x - y)) {
      const prompt = Math.floor(index / n);
      let t = a.text;
      let lps: CompletionLogprobs | null = null;
      let offset = 0;
      if (body.echo) {
        const e = echo(prompt, promptLps.get(prompt));
        t = e.text + t;
        lps = e.lps;
        offset = e.text.length;
      }
      if (wantLogprobs) {
        const gen = completionLogprobs(a.ids, a.lps, text, offset);
        lps = lps ? mergeLogprobs(lps, gen) : gen;
      }
      choices.push({ index, text: t, logprobs: lps, finish_reason: a.finish ?? null, stop_reason: a.stop ?? null });
    }
    return { ...base, choices, usage };
  });
}

function mergeLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}
