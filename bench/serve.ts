/**
 * Serving benchmark in the manner of `vllm bench serve`: N concurrent streaming clients, each
 * sending its requests one after another, against a kiln server (started here on the embedded
 * model unless --url names a running one). Prints time-to-first-token and inter-token latency
 * percentiles and output tokens/s. Figures only; never passes or fails.
 *
 *   npx tsx bench/serve.ts [--clients 16] [--requests 64] [--input 64] [--output 64] [--url http://127.0.0.1:8000]
 */
import { parseArgs } from "node:util";
import { createEngine } from "../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import { Rng } from "../runtime/engine/rng.ts";
import { buildServer } from "../runtime/server/app.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "16" },
    requests: { type: "string", default: "64" },
    input: { type: "string", default: "64" },
    output: { type: "string", default: "64" },
    url: { type: "string" },
    model: { type: "string", default: "fortune-llama" },
  },
});
const clients = Number(values.clients);
const total = Number(values.requests);
const inputLen = Number(values.input);
const outputLen = Number(values.output);

let url = values.url;
let shutdown = async (): Promise<void> => {};
if (url === undefined) {
  const { engine, tokenizer, model } = await createEngine({ modelDir: DEFAULT_MODEL_DIR });
  const app = buildServer({
    engine,
    tokenizer,
    servedModelName: values.model,
    maxModelLen: model.model.maxPositions,
    defaults: loadGenerationConfig(DEFAULT_MODEL_DIR),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  shutdown = async () => {
    await app.close();
    engine.close();
  };
}

const rng = new Rng(0);
const prompts = Array.from({ length: total }, () => Array.from({ length: inputLen }, () => 5 + (rng.nextU32() % 2000)));
const ttfts: number[] = [];
const itls: number[] = [];
let outputTokens = 0;

async function one(prompt: number[]): Promise<void> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: values.model, prompt, max_tokens: outputLen, ignore_eos: true, stream: true, temperature: 0 }),
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let last: number | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const now = performance.now();
      if (last === undefined) ttfts.push(now - t0);
      else itls.push(now - last);
      last = now;
    }
  }
  outputTokens += outputLen;
}

const queue = [...prompts];
const t0 = performance.now();
await Promise.all(
  Array.from({ length: clients }, async () => {
    for (let p = queue.shift(); p !== undefined; p = queue.shift()) await one(p);
  }),
);
const seconds = (performance.now() - t0) / 1000;
await shutdown();

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};
console.log(`server ${url}, ${clients} clients, ${total} requests, input ${inputLen}, output ${outputLen} tokens (ignore_eos)`);
console.log(`duration ${seconds.toFixed(2)} s, ${(total / seconds).toFixed(2)} requests/s, output ${(outputTokens / seconds).toFixed(0)} tokens/s`);
console.log(`TTFT ms  p50 ${pct(ttfts, 0.5).toFixed(1)}  p90 ${pct(ttfts, 0.9).toFixed(1)}  p99 ${pct(ttfts, 0.99).toFixed(1)}`);
console.log(`ITL  ms  p50 ${pct(itls, 0.5).toFixed(2)}  p90 ${pct(itls, 0.9).toFixed(2)}  p99 ${pct(itls, 0.99).toFixed(2)}`);
