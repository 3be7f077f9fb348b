/**
 * Server-sent events as OpenAI streams them: `data: <json>\n\n` per chunk, then `data: [DONE]`.
 */
import type { ServerResponse } from "node:http";
import type { ApiError } from "./api_error.ts";

export class SseWriter {
  constructor(private readonly res: ServerResponse) {}

  open(headers: Record<string, string> = {}): void {
    this.res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
      ...headers,
    });
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  send(data: unknown): void {
    if (!this.closed) this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** A typed event, as the Responses API streams them: `event: <type>`, then its data. */
  event(type: string, data: unknown): void {
    if (!this.closed) this.res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Ends the stream without [DONE] (a Responses stream ends on its last typed event). */
  end(): void {
    if (!this.closed) this.res.end();
  }

  /** A failure after the stream began: one error event in OpenAI's shape, then the end. */
  fail(error: ApiError): void {
    this.send(error.body());
    this.done();
  }

  done(): void {
    if (this.closed) return;
    this.res.write("data: [DONE]\n\n");
    this.res.end();
  }
}
