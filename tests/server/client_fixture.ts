/** Test support: the fortune server listening on 127.0.0.1 with an official `openai` client pointed at it. */
import OpenAI from "openai";
import type { FastifyInstance } from "fastify";
import type { ServerOptions } from "../../runtime/server/app.ts";
import { fortuneServer } from "./server_fixture.ts";

export interface ListeningServer {
  readonly app: FastifyInstance;
  readonly client: OpenAI;
  close(): Promise<void>;
}

export async function listeningServer(extra: Partial<Omit<ServerOptions, "engine" | "tokenizer">> = {}, modelDir?: string): Promise<ListeningServer> {
  const s = await fortuneServer(extra, modelDir);
  await s.app.listen({ host: "127.0.0.1", port: 0 });
  const addr = s.app.server.address();
  if (typeof addr !== "object" || !addr) throw new Error("no address");
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${addr.port}/v1`, apiKey: "unused", maxRetries: 0 });
  return {
    app: s.app,
    client,
    close: async () => {
      await s.app.close();
      s.created.engine.close();
    },
  };
}
