/**
 * What a grammar costs a decode step: the same requests generated plain and under a JSON schema
 * (structured outputs through xgrammar, masks filled and applied on the host), at batch 1 and
 * batch 32, on the CPU. Prints output tokens/s for both, their ratio, and the host time the
 * constraint adds per token. Figures only; never passes or fails.
 *
 *   npx tsx bench/structured_outputs.ts [--model dir] [--max-tokens 64] [--batches 1,32] [--repeats 3]
 */
import { parseArgs } from "node:util";
import { createEngine } from "../runtime/engine/create_engine.ts";
import type { TokenConstraintFactory } from "../runtime/engine/token_constraint.ts";
import { loadGenerationConfig } from "../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import { StructuredOutputs } from "../runtime/server/structured_output.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    "max-tokens": { type: "string", default: "64" },
    batches: { type: "string", default: "1,32" },
    repeats: { type: "string", default: "3" },
  },
});
const maxTokens = Number(args["max-tokens"]);
const batches = args.batches.split(",").map(Number);
const repeats = Number(args.repeats);

// an array of fortunes never has to end: every sequence can run to max_tokens, as the plain one does
const SCHEMA = {
  type: "array",
  items: {
    type: "object",
    properties: { mood: { enum: ["happy", "sad", "wise"] }, lucky: { type: "integer" }, soon: { type: "boolean" } },
    required: ["mood", "lucky", "soon"],
  },
};

const { engine, tokenizer, runner } = await createEngine({ modelDir: args.model, maxNumSeqs: 64 });
const eos = loadGenerationConfig(args.model).eosTokenIds;
const structured = new StructuredOutputs(tokenizer, runner.vocabSize, eos);
const t0 = performance.now();
const constraint = await structured.constraint({ kind: "json_schema", schema: SCHEMA, anyWhitespace: false });
const compileMs = performance.now() - t0;

/** Output tokens and wall time of one batch. */
async function run(batch: number, seed: number, c: TokenConstraintFactory | undefined): Promise<{ tokens: number; ms: number }> {
  const start = performance.now();
  const streams = Array.from({ length: batch }, (_, i) =>
    engine.generate({
      prompt: `Fortune ${i}:`,
      params: { maxTokens, temperature: 1, seed: seed * 1000 + i, ignoreEos: true },
      ...(c === undefined ? {} : { constraint: c }),
    }),
  );
  let tokens = 0;
  await Promise.all(
    streams.map(async (s) => {
      for await (const d of s) tokens += d.tokenIds.length;
    }),
  );
  return { tokens, ms: performance.now() - start };
}

process.stdout.write(`model ${args.model}, ${maxTokens} tokens per request, schema compiled in ${compileMs.toFixed(1)} ms (xgrammar load included)\n`);
process.stdout.write("batch | plain tok/s | json_schema tok/s | ratio | added host µs/token\n");
for (const batch of batches) {
  await run(batch, 99, undefined); // warm-up
  await run(batch, 99, constraint);
  const plain = { tokens: 0, ms: 0 };
  const constrained = { tokens: 0, ms: 0 };
  for (let r = 0; r < repeats; r++) {
    const p = await run(batch, r, undefined);
    const c = await run(batch, r, constraint);
    plain.tokens += p.tokens;
    plain.ms += p.ms;
    constrained.tokens += c.tokens;
    constrained.ms += c.ms;
  }
  const pRate = (plain.tokens / plain.ms) * 1000;
  const cRate = (constrained.tokens / constrained.ms) * 1000;
  const added = (constrained.ms / constrained.tokens - plain.ms / plain.tokens) * 1000;
  process.stdout.write(`${batch} | ${pRate.toFixed(0)} | ${cRate.toFixed(0)} | ${(cRate / pRate).toFixed(2)} | ${added.toFixed(1)}\n`);
}
engine.close();
await structured.close();
