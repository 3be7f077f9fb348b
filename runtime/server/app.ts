/**
 * The OpenAI-compatible HTTP server: fastify with the API routes, Bearer-key auth on /v1/*,
 * a body size limit, and every failure answered with an OpenAI-style error body.
 */
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { Engine } from "../engine/engine.ts";
import type { GenerationDefaults } from "../generation_config.ts";
import type { KilnTokenizer } from "../tokenizer.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { registerChat } from "./chat_route.ts";
import { registerCompletions } from "./completions_route.ts";
import type { ServerContext } from "./context.ts";
import { registerInfoRoutes } from "./info_routes.ts";
import { ServerMetrics } from "./metrics.ts";

export interface ServerOptions {
  readonly engine: Engine;
  readonly tokenizer: KilnTokenizer;
  readonly servedModelName: string;
  readonly maxModelLen: number;
  readonly defaults: GenerationDefaults;
  readonly apiKey?: string | undefined;
  /** running + queued requests before 503 (default 1024) */
  readonly maxPendingRequests?: number;
  /** request body limit in bytes (default 4 MiB) */
  readonly bodyLimit?: number;
  readonly logger?: FastifyServerOptions["logger"];
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 4 * 2 ** 20,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && given.length > 0 && given.length <= 128 ? given : randomUUID();
    },
    requestIdHeader: false,
  });
  const engine = opts.engine;
  const metrics = new ServerMetrics(opts.servedModelName, () => {
    const s = engine.stats();
    return { running: s.numRunning, waiting: s.numWaiting, kvCacheUsage: s.kvUsage };
  });
  const ctx: ServerContext = {
    engine,
    tokenizer: opts.tokenizer,
    servedModelName: opts.servedModelName,
    maxModelLen: opts.maxModelLen,
    defaults: opts.defaults,
    metrics,
    maxPendingRequests: opts.maxPendingRequests ?? 1024,
  };

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    if (opts.apiKey === undefined || !request.url.startsWith("/v1/")) return;
    if (request.headers.authorization !== `Bearer ${opts.apiKey}`) {
      throw new ApiError(401, "Invalid or missing API key (send 'Authorization: Bearer <key>').", "authentication_error", null, "invalid_api_key");
    }
  });

  app.setErrorHandler((error, request, reply) => {
    let api: ApiError;
    const status = (error as { statusCode?: unknown }).statusCode;
    if (error instanceof ApiError) api = error;
    else if (typeof status === "number" && status >= 400 && status < 500) {
      api = new ApiError(status, (error as Error).message, "invalid_request_error", null, (error as { code?: string }).code ?? null);
    } else {
      api = toApiError(error);
      if (api.status >= 500) request.log.error({ err: error }, "request failed");
    }
    if (api.status === 503) reply.header("retry-after", "1");
    if (reply.raw.headersSent) {
      reply.raw.end();
      return;
    }
    void reply.code(api.status).send(api.body());
  });

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(new ApiError(404, `no route for ${request.method} ${request.url}`, "NotFoundError").body());
  });

  registerCompletions(app, ctx);
  registerChat(app, ctx);
  registerInfoRoutes(app, ctx);
  return app;
}
