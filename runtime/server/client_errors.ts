/**
 * Failures below the routes, answered in the OpenAI error shape like everything else: a request
 * the HTTP parser refuses (headers too large → 431, a request that took too long to arrive →
 * 408, malformed → 400) and a URL the router cannot decode (`/%ff` → 400).
 *
 * A client refused while it is still sending (a 1 MB header, an oversize body) reads its answer
 * only if the server keeps reading: closing at once resets the connection and the client sees
 * EPIPE instead of the status. So the socket is closed the way nginx's lingering close does it:
 * the answer is written, the write side ends, and what still arrives is read and dropped for a
 * bounded time and number of bytes before the socket is destroyed.
 */
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "./api_error.ts";

/** How long, and how much, a refused client may go on sending before the socket is destroyed. */
export interface Linger {
  readonly ms: number;
  readonly maxBytes: number;
}

export const DEFAULT_LINGER: Linger = { ms: 2_000, maxBytes: 64 * 2 ** 20 };

/** Reads and drops what the client still sends, then destroys the socket. */
export function lingeringClose(socket: Duplex, linger: Linger): void {
  let seen = 0;
  const done = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(done, linger.ms);
  timer.unref();
  socket.on("data", (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > linger.maxBytes) done();
  });
  socket.on("end", done);
  socket.on("error", done);
  socket.on("close", () => clearTimeout(timer));
  socket.resume();
}

interface ConnectionError extends Error {
  readonly code?: string;
}

/** The status and error of a request the HTTP parser refused. */
function parserRefusal(err: ConnectionError): ApiError {
  switch (err.code) {
    case "HPE_HEADER_OVERFLOW":
      return new ApiError(431, "The request's headers are too large.", "invalid_request_error", null, "headers_too_large");
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return new ApiError(408, "The request did not arrive in time (see --request-timeout).", "invalid_request_error", null, "request_timeout");
    default:
      return new ApiError(400, "The request is not valid HTTP.", "invalid_request_error", null, "bad_request");
  }
}

/** fastify's clientErrorHandler: the refusal in the OpenAI shape, then a lingering close. */
export function clientErrorHandler(linger: Linger): (err: ConnectionError, socket: Duplex) => void {
  return (err, socket) => {
    if (err.code === "ECONNRESET" || socket.destroyed) return;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const api = parserRefusal(err);
    const body = JSON.stringify(api.body());
    socket.end(
      `HTTP/1.1 ${api.status} ${STATUS_CODES[api.status] ?? "Error"}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    lingeringClose(socket, linger);
  };
}

/** fastify's frameworkErrors: a URL the router cannot decode, and the like, as a 400. */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  const message = error.code === "FST_ERR_BAD_URL" ? "The request's URL is not valid (a malformed percent-encoding)." : error.message;
  void reply.code(status).send(new ApiError(status, message, "invalid_request_error", null, "bad_url").body());
}
