/** Test support: an engine over the embedded fortune model and a server around it. */
import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";
import type { FastifyInstance } from "fastify";
import { createEngine, type CreatedEngine } from "../../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../../runtime/io/model_loader.ts";
import { buildServer, type ServerOptions } from "../../runtime/server/app.ts";

export const MODEL = "fortune-llama";

/** `modelDir`: the fortune model's folder, or a copy of it (e.g. with another chat template). */
export async function fortuneServer(
  extra: Partial<Omit<ServerOptions, "engine" | "tokenizer">> = {},
  modelDir: string = DEFAULT_MODEL_DIR,
): Promise<{ app: FastifyInstance; created: CreatedEngine }> {
  const created = await createEngine({ modelDir, kvCacheBytes: 64 * 2 ** 20 });
  const app = buildServer({
    engine: created.engine,
    tokenizer: created.tokenizer,
    servedModelName: MODEL,
    maxModelLen: created.model.model.maxPositions,
    defaults: loadGenerationConfig(modelDir),
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

/** A copy of the fortune model whose chat template is `template` (its byte-level tokenizer can spell any template's text). */
export function fortuneWithTemplate(template: string): string {
  const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "kiln-fortune-"));
  fs.cpSync(DEFAULT_MODEL_DIR, dir, { recursive: true });
  fs.writeFileSync(nodePath.join(dir, "chat_template.jinja"), template);
  return dir;
}
