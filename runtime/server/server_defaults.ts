/**
 * The server's default limits and CORS settings, apart from the server itself so the CLI can show
 * them in its help without loading fastify and the rest of the server.
 */

export interface CorsOptions {
  /** "*" or exact origins such as "https://app.example" */
  readonly origins: readonly string[];
  readonly methods: readonly string[];
  readonly headers: readonly string[];
  readonly credentials: boolean;
}

/** vLLM's defaults: any origin, method and header, no credentials. */
export const DEFAULT_CORS: CorsOptions = { origins: ["*"], methods: ["*"], headers: ["*"], credentials: false };

export const DEFAULT_LIMITS = {
  maxPendingRequests: 1024,
  bodyLimit: 4 * 2 ** 20,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  maxConnections: 1024,
} as const;
