/**
 * The API key. Every route asks for it unless it is declared public (`config: { public: true }`:
 * /health, /version, /metrics), and the check runs on the route fastify matched, not on the URL
 * as sent: `/%76%31/models`, `/v%31/models` and an absolute-form target (`POST http://x/v1/...`)
 * reach the same handler as `/v1/models`, so they meet the same check. A URL that matches no
 * route needs the key as well (an unauthenticated client learns nothing about the route table).
 * A browser's CORS preflight carries no credentials by design, so it never needs the key; the
 * request it clears does.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { ApiError } from "./api_error.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** answered without the API key */
    readonly public?: boolean;
  }
}

/** Route options of a route anyone may call. */
export const PUBLIC_ROUTE = { config: { public: true } } as const;

/** A checker for `Authorization: Bearer <key>`; undefined key: everything is open. */
export function apiKeyCheck(apiKey: string | undefined): (request: FastifyRequest) => void {
  if (apiKey === undefined) return () => {};
  // compare digests: equal lengths, and the time taken says nothing about the key
  const want = createHash("sha256").update(`Bearer ${apiKey}`).digest();
  return (request) => {
    if (request.routeOptions.config.public === true || isCorsPreflight(request)) return;
    const given = request.headers.authorization;
    const got = createHash("sha256").update(typeof given === "string" ? given : "").digest();
    if (given === undefined || !timingSafeEqual(got, want)) {
      throw new ApiError(401, "Invalid or missing API key (send 'Authorization: Bearer <key>').", "authentication_error", null, "invalid_api_key");
    }
  };
}

/** An OPTIONS request a browser sends before a cross-origin call (it names the method to come). */
export function isCorsPreflight(request: FastifyRequest): boolean {
  return request.method === "OPTIONS" && typeof request.headers["access-control-request-method"] === "string";
}
