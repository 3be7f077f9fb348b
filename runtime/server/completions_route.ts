/** POST /v1/completions: text completions, whole or streamed. */
import type { FastifyInstance } from "fastify";
import type { PositionLogprobs } from "../engine/logprobs.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { admit, checkModel, tokenText, type ServerContext } from "./context.ts";
import { readBody, refuseUnsupportedOutput, unsupported } from "./request_fields.ts";
import { IncrementalDetokenizer } from "../io/detokenizer.ts";
import type { CompletionDelta } from "../engine/request_output.ts";
import {
  completionLogprobs,
  openaiFinish,
  promptLogprobsOut,
  responseId,
  textOffsets,
  unixNow,
  type CompletionLogprobs,
  type PromptLogprobsOut,
} from "./openai_format.ts";
import { RequestRunner } from "./request_runner.ts";
import { completionParams } from "./request_params.ts";
import { CompletionRequest } from "./schemas.ts";
import { SseWriter } from "./sse.ts";
import { requestedGrammar } from "./structured_output.ts";

interface Choice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  finish_reason: ReturnType<typeof openaiFinish>;
  stop_reason: string | number | null;
  prompt_logprobs?: PromptLogprobsOut | null;
}

/** One choice as it accumulates: its text, tokens, logprobs and where each token starts. */
interface ChoiceState {
  text: string;
  ids: number[];
  lps: PositionLogprobs[];
  offsets: number[];
  tokens: number;
  finish?: Choice["finish_reason"];
  stop?: string | number;
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
    const body = readBody(CompletionRequest, request.body, ctx.unknownFields, "/v1/completions");
    refuseUnsupportedOutput(body);
    // the message editor plugins match on to fall back from fill-in-the-middle
    if (body.suffix != null && body.suffix !== "") throw unsupported("suffix", "suffix is not currently supported");
    checkModel(ctx, body.model);
    admit(ctx, promptCount(body.prompt));
    const inputs = await prompts(ctx, body.prompt);
    const ids = inputs.map((p) => p.ids);
    for (const p of ids) {
      for (const t of p) if (t >= ctx.tokenizer.vocabSize) throw ApiError.badRequest(`token id ${t} is outside the vocabulary`, "prompt");
    }
    const n = body.n ?? 1;
    const params = ids.map((p) => completionParams(body, p.length, ctx.maxModelLen, ctx.defaults));
    // max_tokens 0 (with echo): the engine runs one token for the prompt's logprobs; it is dropped
    const promptOnly = body.max_tokens === 0;
    const grammar = requestedGrammar(body, ctx.compactJson);
    const constraint = grammar === undefined ? undefined : await ctx.structured.constraint(grammar);
    const id = responseId("cmpl");
    const runner = new RequestRunner(ctx.engine, ctx.metrics);
    runner.start(ids, params, `${id}-${request.id}`, constraint);
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) runner.abort();
    });
    const text = tokenText(ctx);
    const wantLogprobs = body.logprobs != null;
    const created = unixNow();
    const base = { id, object: "text_completion", created, model: ctx.servedModelName };

    const states = new Map<number, ChoiceState>();
    const stateOf = (index: number): ChoiceState => {
      let st = states.get(index);
      if (!st) states.set(index, (st = { text: "", ids: [], lps: [], offsets: [], tokens: 0 }));
      return st;
    };
    const promptLps = new Map<number, readonly (PositionLogprobs | undefined)[]>();
    /** echo: the prompt's text (and its logprobs when asked) precede the completion */
    const echo = (prompt: number): { text: string; lps: CompletionLogprobs | null } => {
      const promptIds = ids[prompt]!;
      const t = inputs[prompt]!.text ?? ctx.tokenizer.decode(promptIds, { skipSpecialTokens: true });
      if (!wantLogprobs) return { text: t, lps: null };
      const offsets = textOffsets(new IncrementalDetokenizer(ctx.tokenizer, { skipSpecialTokens: true }), promptIds, 0, t.length);
      return { text: t, lps: completionLogprobs(promptIds, promptLps.get(prompt) ?? [], text, offsets) };
    };
    const promptLogprobsField = (prompt: number): { prompt_logprobs?: PromptLogprobsOut | null } =>
      body.prompt_logprobs == null ? {} : { prompt_logprobs: promptLogprobsOut(promptLps.get(prompt) ?? [], text) };
    /** takes a delta into its choice; returns the generated text and its logprobs for this delta */
    const take = (prompt: number, delta: CompletionDelta, echoLen: number): { text: string; lps: CompletionLogprobs | null } => {
      const st = stateOf(prompt * n + delta.index);
      if (delta.promptLogprobs) promptLps.set(prompt, delta.promptLogprobs);
      if (delta.finishReason !== undefined) st.finish = openaiFinish(delta.finishReason);
      if (delta.stopReason !== undefined) st.stop = delta.stopReason;
      if (promptOnly) return { text: "", lps: null };
      const offset = echoLen + st.text.length;
      st.text += delta.text;
      st.ids.push(...delta.tokenIds);
      st.tokens += delta.tokenIds.length;
      if (delta.logprobs) st.lps.push(...delta.logprobs);
      const offsets = delta.tokenIds.map(() => offset);
      st.offsets.push(...offsets);
      return { text: delta.text, lps: wantLogprobs ? completionLogprobs(delta.tokenIds, delta.logprobs ?? [], text, offsets) : null };
    };
    const promptTokens = ids.reduce((k, p) => k + p.length, 0);
    const usageNow = () => {
      const completion = [...states.values()].reduce((k, st) => k + st.tokens, 0);
      return { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
    };

    if (body.stream) {
      const sse = new SseWriter(reply.raw);
      reply.hijack();
      sse.open();
      const continuous = body.stream_options?.include_usage === true && body.stream_options.continuous_usage_stats === true;
      const echoed = new Map<number, number>();
      try {
        for await (const { prompt, delta } of runner.deltas()) {
          const index = prompt * n + delta.index;
          if (delta.promptLogprobs) promptLps.set(prompt, delta.promptLogprobs);
          let head: { text: string; lps: CompletionLogprobs | null } = { text: "", lps: null };
          if (body.echo && !echoed.has(index)) {
            head = echo(prompt);
            echoed.set(index, head.text.length);
          }
          const gen = take(prompt, delta, echoed.get(index) ?? 0);
          const chunkText = head.text + gen.text;
          const lps = head.lps && gen.lps ? mergeLogprobs(head.lps, gen.lps) : (head.lps ?? gen.lps);
          const first = head.text !== "" || (body.prompt_logprobs != null && delta.promptLogprobs !== undefined);
          if (chunkText === "" && delta.finishReason === undefined && lps === null && !first) continue;
          const choice: Choice = {
            index,
            text: chunkText,
            logprobs: lps,
            finish_reason: openaiFinish(delta.finishReason),
            stop_reason: delta.stopReason ?? null,
            ...(delta.promptLogprobs ? promptLogprobsField(prompt) : {}),
          };
          sse.send({ ...base, choices: [choice], usage: continuous ? usageNow() : null });
        }
      } catch (e) {
        // the status line is gone: the failure travels as an event, as vLLM sends it
        sse.fail(toApiError(e));
        return;
      }
      if (body.stream_options?.include_usage) sse.send({ ...base, choices: [], usage: usageNow() });
      sse.done();
      return;
    }

    let cached = 0;
    for await (const { prompt, delta } of runner.deltas()) {
      take(prompt, delta, 0);
      if (delta.usage) cached += delta.usage.cachedPromptTokens;
    }
    if (reply.raw.destroyed) return reply;
    const choices: Choice[] = [];
    for (const [index, st] of [...states.entries()].sort(([x], [y]) => x - y)) {
      const prompt = Math.floor(index / n);
      const head = body.echo ? echo(prompt) : { text: "", lps: null };
      const offsets = st.offsets.map((o) => o + head.text.length);
      const gen = wantLogprobs ? completionLogprobs(st.ids, st.lps, text, offsets) : null;
      choices.push({
        index,
        text: head.text + st.text,
        logprobs: head.lps && gen ? mergeLogprobs(head.lps, gen) : (head.lps ?? gen),
        finish_reason: st.finish ?? null,
        stop_reason: st.stop ?? null,
        ...promptLogprobsField(prompt),
      });
    }
    return { ...base, choices, usage: { ...usageNow(), prompt_tokens_details: { cached_tokens: cached } } };
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
