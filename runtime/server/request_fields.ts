/**
 * How a request's fields are read, as vLLM reads them: a field the server does not know is
 * dropped with one logged warning per field name (clients send `store`, `metadata`,
 * `service_tier`, … freely), but a field that asks for something the server cannot honour yet
 * is refused by name, so a client that asked for JSON or a tool call never gets plain text
 * back as if it had been obeyed.
 */
import { z } from "zod";
import { ApiError, fromZodError } from "./api_error.ts";

/** Fields whose meaning is a constraint on the output; ignoring them would answer a different request. */
const CONSTRAINTS = ["functions", "function_call"] as const;

/** The top-level field names a schema knows (every branch of a union). */
function knownFields(schema: z.ZodType): ReadonlySet<string> {
  if (schema instanceof z.ZodObject) return new Set(Object.keys(schema.shape));
  if (schema instanceof z.ZodUnion) return new Set(schema.options.flatMap((o) => [...knownFields(o as z.ZodType)]));
  return new Set();
}

/** Remembers which unknown field names were already reported, so each is logged once. */
export class UnknownFieldLog {
  private readonly seen = new Set<string>();
  constructor(private readonly warn: (message: string) => void) {}

  report(fields: readonly string[], route: string): void {
    for (const f of fields) {
      if (this.seen.has(f)) continue;
      this.seen.add(f);
      this.warn(`ignoring the unknown request field '${f}' (first seen on ${route}; later ones are not reported)`);
    }
  }
}

/** Validates a body against its schema; unknown fields are dropped and reported, constraint fields refused. */
export function readBody<S extends z.ZodType>(schema: S, body: unknown, log: UnknownFieldLog, route: string): z.infer<S> {
  const raw: unknown = body ?? {};
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    const fields = Object.keys(raw);
    const refused = fields.find((f) => (CONSTRAINTS as readonly string[]).includes(f));
    if (refused !== undefined) throw unsupported(refused, `'${refused}' (legacy function calling) is not supported; use tools`);
    const known = knownFields(schema);
    log.report(
      fields.filter((f) => !known.has(f)),
      route,
    );
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw fromZodError(r.error);
  return r.data;
}

export function unsupported(param: string, message: string): ApiError {
  return ApiError.badRequest(message, param, "unsupported");
}

interface OutputShape {
  readonly tools?: readonly unknown[] | null | undefined;
  readonly tool_choice?: unknown;
}

/** Completions have no tool calling (chat does, tool_choice.ts): tools pass only in their no-op forms. */
export function refuseUnsupportedOutput(body: OutputShape): void {
  if ((body.tools?.length ?? 0) > 0) throw unsupported("tools", "tool calling is served on /v1/chat/completions, not here: send no tools (or an empty list)");
  const choice = body.tool_choice;
  if (choice !== undefined && choice !== null && choice !== "none" && choice !== "auto") {
    throw unsupported("tool_choice", "tool_choice must be 'none' or 'auto' here: tool calling is served on /v1/chat/completions");
  }
}
