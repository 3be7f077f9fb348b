/**
 * Errors as OpenAI clients expect them: an HTTP status and a body
 * `{"error": {"message", "type", "param", "code"}}`.
 */
import type { z } from "zod";
import { isKilnError } from "../engine/errors.ts";

export interface ApiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: string | null;
  };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  static badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
    return new ApiError(400, message, "invalid_request_error", param, code);
  }
}

/** The first problem of a failed schema parse, with the offending field as `param`. */
export function fromZodError(err: z.ZodError): ApiError {
  const issue = err.issues[0];
  if (!issue) return ApiError.badRequest("invalid request body");
  const param = issue.path.join(".") || null;
  return ApiError.badRequest(`${param ?? "body"}: ${issue.message}`, param, "invalid_value");
}

/** Maps any thrown value to an API error; kiln's typed errors keep their code. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (isKilnError(e)) {
    switch (e.code) {
      case "PROMPT_TOO_LONG":
      case "INVALID_ARGUMENT":
      case "SAMPLING_PARAMS_INVALID":
      case "GRAMMAR_INVALID":
      case "KV_EXHAUSTED":
      case "DEPRECATED": // a request using a field or route past its deprecation (docs/deprecation.md)
        return ApiError.badRequest(e.message, null, e.code);
      case "ENGINE_CLOSED":
        return new ApiError(503, e.message, "server_error", null, e.code);
      default:
        return new ApiError(500, e.message, "server_error", null, e.code);
    }
  }
  return new ApiError(500, "internal server error", "server_error");
}
