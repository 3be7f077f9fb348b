/** The small routes: models, health, version, tokenize, detokenize, metrics. */
import type { FastifyInstance } from "fastify";
import { ApiError } from "./api_error.ts";
import { PUBLIC_ROUTE } from "./auth.ts";
import { chatPromptIds } from "./chat_route.ts";
import { checkModel, type ServerContext } from "./context.ts";
import { readBody } from "./request_fields.ts";
import { unixNow } from "./openai_format.ts";
import { DetokenizeRequest, TokenizeRequest } from "./schemas.ts";

export const KILN_VERSION = "0.1.0";

export function registerInfoRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const created = unixNow();
  app.get("/v1/models", async () => ({
    object: "list",
    data: [
      {
        id: ctx.servedModelName,
        object: "model",
        created,
        owned_by: "kiln",
        root: ctx.servedModelName,
        parent: null,
        max_model_len: ctx.maxModelLen,
      },
    ],
  }));

  app.get("/health", PUBLIC_ROUTE, async (_req, reply) => reply.code(200).send());
  app.get("/version", PUBLIC_ROUTE, async () => ({ version: KILN_VERSION }));

  app.post("/tokenize", async (request) => {
    const body = readBody(TokenizeRequest, request.body, ctx.unknownFields, "/tokenize");
    checkModel(ctx, body.model);
    const tokens =
      "prompt" in body
        ? await ctx.prompts.encode(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true, param: "prompt" })
        : await chatPromptIds(ctx, body, body.add_generation_prompt ?? true);
    return { count: tokens.length, max_model_len: ctx.maxModelLen, tokens };
  });

  app.post("/detokenize", async (request) => {
    const body = readBody(DetokenizeRequest, request.body, ctx.unknownFields, "/detokenize");
    checkModel(ctx, body.model);
    // no sequence the model can hold is longer; a bound keeps decoding off the loop short
    if (body.tokens.length > ctx.maxModelLen) throw ApiError.badRequest(`at most ${ctx.maxModelLen} tokens (the context window)`, "tokens", "too_many_tokens");
    for (const t of body.tokens) if (t >= ctx.tokenizer.vocabSize) throw ApiError.badRequest(`token id ${t} is outside the vocabulary`, "tokens");
    return { prompt: ctx.tokenizer.decode(body.tokens, { skipSpecialTokens: false }) };
  });

  // engine counters are cumulative; the Prometheus counters advance by what changed since the last scrape
  const seen = { queries: 0, hits: 0, preemptions: 0 };
  app.get("/metrics", PUBLIC_ROUTE, async (_req, reply) => {
    const s = ctx.engine.stats();
    const m = ctx.metrics;
    m.prefixQueries.inc(m.modelLabel, s.prefixCacheQueries - seen.queries);
    m.prefixHits.inc(m.modelLabel, s.prefixCacheHits - seen.hits);
    m.preemptions.inc(m.modelLabel, s.numPreemptions - seen.preemptions);
    seen.queries = s.prefixCacheQueries;
    seen.hits = s.prefixCacheHits;
    seen.preemptions = s.numPreemptions;
    reply.header("content-type", m.registry.contentType);
    return m.registry.metrics();
  });
}
