/** Test support: an engine over the embedded fortune model and a server around it. */
import type { FastifyInstance } from "fastify";
import { createEngine, type CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../../runtime/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../../runtime/model_loader.ts";
import { buildServer, type ServerOptions } from "../../runtime/server/app.ts";

export const MODEL = "fortune-llama";

export async function fortuneServer(
  extra: Partial<Omit<ServerOptions, "engine" | "tokenizer">> = {},
): Promise<{ app: FastifyInstance; created: CreatedEngine }> {
  const created = await createEngine({ modelDir: DEFAULT_MODEL_DIR, kvCacheBytes: 64 * 2 ** 20 });
  const app = buildServer({
    engine: created.engine,
    tokenizer: created.tokenizer,
    servedModelName: MODEL,
    maxModelLen: created.model.model.maxPositions,
    defaults: loadGenerationConfig(DEFAULT_MODEL_DIR),
    ...extra,
  });
  return { app, created };
}

/** Reads one metric's value from the Prometheus text. */
export function metricValue(text: string, name: string, labels = ""): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(labels)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}
