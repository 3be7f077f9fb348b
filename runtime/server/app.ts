/**
 * The OpenAI-compatible HTTP server: fastify with the API routes, the API key on every route but
 * /health, /version and /metrics, the limits a server facing the network needs (body size, time to
 * receive a request and its headers, concurrent connections, prompt length before tokenizing), and
 * every failure answered with an OpenAI-style error body.
 */
import { randomUUID } from "node:crypto";
import cors from "@fastify/cors";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import type { Engine } from "../engine/engine.ts";
import type { GenerationDefaults } from "../io/generation_config.ts";
import type { KilnTokenizer } from "../io/tokenizer.ts";
import { ApiError, toApiError } from "./api_error.ts";
import { apiKeyCheck } from "./auth.ts";
import { registerChat } from "./chat_route.ts";
import { clientErrorHandler, DEFAULT_LINGER, frameworkErrorHandler } from "./client_errors.ts";
import { registerCompletions } from "./completions_route.ts";
import type { ServerContext } from "./context.ts";
import { registerInfoRoutes } from "./info_routes.ts";
import { registerResponses } from "./responses_route.ts";
import { ServerMetrics } from "./metrics.ts";
import { defaultMaxPromptChars, PromptTokenizer } from "./prompt_tokenizer.ts";
import { UnknownFieldLog } from "./request_fields.ts";
import { StructuredOutputs } from "./structured_output.ts";
import { TOOL_PARSERS, type ToolParserName } from "./tool_parsers/registry.ts";
import type { ToolParser } from "./tool_parsers/tool_parser.ts";
import { DEFAULT_CORS, DEFAULT_LIMITS, type CorsOptions } from "./server_defaults.ts";

export { DEFAULT_CORS, DEFAULT_LIMITS, type CorsOptions } from "./server_defaults.ts";

export interface ServerLimits {
  /** running + queued requests before 503 (default 1024) */
  readonly maxPendingRequests?: number;
  /** request body limit in bytes (default 4 MiB) */
  readonly bodyLimit?: number;
  /** ms to receive a whole request, headers and body (default 30 s; a slow upload gets 408) */
  readonly requestTimeoutMs?: number;
  /** ms to receive a request's headers (default 10 s) */
  readonly headersTimeoutMs?: number;
  /** open connections; more are refused at accept (default 1024) */
  readonly maxConnections?: number;
  /** characters of prompt text a request may carry, checked before tokenizing (default: see maxPromptChars) */
  readonly maxPromptChars?: number;
}

/** Cross-origin access for browser apps, as vLLM's --allowed-origins / -methods / -headers / --allow-credentials. */
export interface ServerOptions extends ServerLimits {
  readonly engine: Engine;
  readonly tokenizer: KilnTokenizer;
  readonly servedModelName: string;
  readonly maxModelLen: number;
  readonly defaults: GenerationDefaults;
  readonly apiKey?: string | undefined;
  readonly cors?: CorsOptions;
  /** structured JSON outputs without free whitespace (vLLM's disable_any_whitespace; default false) */
  readonly compactJson?: boolean;
  /** "auto" tool choice: the model's text is read for calls by `toolCallParser` (vLLM's --enable-auto-tool-choice) */
  readonly enableAutoToolChoice?: boolean;
  readonly toolCallParser?: ToolParserName | undefined;
  readonly logger?: FastifyServerOptions["logger"];
}


/** The parser "auto" tool choice uses; both flags are needed, as in vLLM. */
function autoToolParser(opts: ServerOptions): ToolParser | undefined {
  if (opts.enableAutoToolChoice !== true || opts.toolCallParser === undefined) return undefined;
  return TOOL_PARSERS[opts.toolCallParser];
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_LIMITS.requestTimeoutMs;
  const headersTimeoutMs = Math.min(opts.headersTimeoutMs ?? DEFAULT_LIMITS.headersTimeoutMs, requestTimeoutMs);
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? DEFAULT_LIMITS.bodyLimit,
    requestTimeout: requestTimeoutMs,
    // Node checks its timeouts on this interval (30 s by default), which would let a trickling
    // client hold a connection long past the limit
    http: { headersTimeout: headersTimeoutMs, connectionsCheckingInterval: Math.max(250, Math.min(1000, headersTimeoutMs / 4)) },
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && given.length > 0 && given.length <= 128 ? given : randomUUID();
    },
    requestIdHeader: false,
    clientErrorHandler: clientErrorHandler(DEFAULT_LINGER),
    frameworkErrors: frameworkErrorHandler,
  });
  app.server.maxConnections = opts.maxConnections ?? DEFAULT_LIMITS.maxConnections;
  const engine = opts.engine;
  const metrics = new ServerMetrics(opts.servedModelName, () => {
    const s = engine.stats();
    return { running: s.numRunning, waiting: s.numWaiting, kvCacheUsage: s.kvUsage };
  });
  const prompts = new PromptTokenizer(opts.tokenizer, opts.maxPromptChars ?? defaultMaxPromptChars(opts.tokenizer, opts.maxModelLen));
  const ctx: ServerContext = {
    engine,
    tokenizer: opts.tokenizer,
    prompts,
    compactJson: opts.compactJson === true,
    autoToolParser: autoToolParser(opts),
    unknownFields: new UnknownFieldLog((message) => app.log.warn(message)),
    structured: new StructuredOutputs(
      opts.tokenizer,
      engine.runner.vocabSize,
      opts.defaults.eosTokenIds.length > 0 ? opts.defaults.eosTokenIds : opts.tokenizer.eosTokenId === undefined ? [] : [opts.tokenizer.eosTokenId],
    ),
    servedModelName: opts.servedModelName,
    maxModelLen: opts.maxModelLen,
    defaults: opts.defaults,
    metrics,
    maxPendingRequests: opts.maxPendingRequests ?? DEFAULT_LIMITS.maxPendingRequests,
  };

  const c = opts.cors ?? DEFAULT_CORS;
  const any = (xs: readonly string[]): boolean => xs.includes("*");
  void app.register(cors, {
    origin: any(c.origins) ? (c.credentials ? true : "*") : [...c.origins],
    methods: any(c.methods) ? "*" : [...c.methods],
    // leaving allowedHeaders out reflects what the preflight asks for, which "*" means
    ...(any(c.headers) ? {} : { allowedHeaders: [...c.headers] }),
    credentials: c.credentials,
    // a preflight answers 204 before any route or key check runs
    strictPreflight: false,
  });

  const checkKey = apiKeyCheck(opts.apiKey);
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    checkKey(request);
  });
  app.addHook("onClose", async () => {
    await prompts.close();
    await ctx.structured.close();
  });

  app.setErrorHandler((error, request, reply) => {
    let api: ApiError;
    const status = (error as { statusCode?: unknown }).statusCode;
    const code = (error as { code?: unknown }).code;
    if (error instanceof ApiError) api = error;
    else if (typeof status === "number" && status >= 400 && status < 500) {
      api = new ApiError(status, (error as Error).message, "invalid_request_error", null, typeof code === "string" ? code : null);
    } else {
      api = toApiError(error);
      if (api.status >= 500) request.log.error({ err: error }, "request failed");
    }
    if (api.status === 503) reply.header("retry-after", "1");
    if (code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      // keep the connection: Node then reads and drops the rest of the upload (bounded by the
      // request timeout), so a client still sending reads the 413 instead of a reset
      reply.removeHeader("connection");
    }
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
  registerResponses(app, ctx);
  return app;
}
