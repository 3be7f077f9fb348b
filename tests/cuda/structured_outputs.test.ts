// Structured outputs on the emulated CUDA backend: a seeded request under a JSON schema gives the
// tokens it gives on the CPU, batched with an unconstrained one, sampling on the device (the
// grammar's bitmask goes up with the step's sampling params; no logits come down).
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { createEngine, type CreatedEngine } from "../../runtime/engine/create_engine.ts";
import type { TokenConstraintFactory } from "../../runtime/engine/token_constraint.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../../runtime/io/model_loader.ts";
import { StructuredOutputs } from "../../runtime/server/structured_output.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";

const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));

beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: CUBIN_CACHE });
}, 120_000);

afterEach(() => vi.restoreAllMocks());

const SCHEMA = {
  type: "object",
  properties: { mood: { enum: ["happy", "sad", "wise"] }, lucky: { type: "integer" }, soon: { type: "boolean" } },
  required: ["mood", "lucky", "soon"],
};

/** Two seeded constrained requests and one plain one, all at once; token ids in a fixed order. */
async function generate(created: CreatedEngine): Promise<{ constrained: number[][]; plain: number[]; finishes: string[] }> {
  const structured = new StructuredOutputs(created.tokenizer, created.runner.vocabSize, loadGenerationConfig(DEFAULT_MODEL_DIR).eosTokenIds);
  const constraint: TokenConstraintFactory = await structured.constraint({ kind: "json_schema", schema: SCHEMA, anyWhitespace: false });
  const finishes: string[] = [];
  const run = async (prompt: string, seed: number, c: TokenConstraintFactory | undefined): Promise<number[]> => {
    const ids: number[] = [];
    for await (const d of created.engine.generate({ prompt, params: { temperature: 1, seed, maxTokens: 60 }, ...(c === undefined ? {} : { constraint: c }) })) {
      ids.push(...d.tokenIds);
      if (d.finishReason !== undefined && c !== undefined) finishes[seed - 5] = d.finishReason;
    }
    return ids;
  };
  try {
    const [a, b, plain] = await Promise.all([run("Fortune:", 5, constraint), run("Tell me", 6, constraint), run("You will", 7, undefined)]);
    return { constrained: [a, b], plain: plain, finishes };
  } finally {
    created.engine.close();
    await structured.close();
  }
}

describe("structured outputs on the emulated device", () => {
  it("a seeded JSON-schema request gives the CPU's tokens, and they parse", async () => {
    const cpu = await generate(await createEngine({ maxModelLen: 128, kvCacheBytes: 64 * 98304 }));
    const cuda = registerCudaBackend();
    const created = await createEngine({ backend: "cuda", maxModelLen: 128, kvCacheBytes: 64 * 98304 });
    const run = vi.spyOn(CudaExecutor.prototype, "run");
    try {
      const device = await generate(created);
      // every step sampled on the device, masks included
      expect(run).not.toHaveBeenCalled();
      expect(device).toEqual(cpu);
      // a constrained sequence ends with its grammar ("stop") or is cut at maxTokens mid-object
      device.constrained.forEach((ids, k) => {
        if (device.finishes[k] !== "stop") return;
        const parsed = JSON.parse(created.tokenizer.decode(ids, { skipSpecialTokens: true })) as Record<string, unknown>;
        expect(Object.keys(parsed).sort()).toEqual(["lucky", "mood", "soon"]);
      });
      expect(device.finishes).toContain("stop");
    } finally {
      created.runner.dispose();
      cuda.dispose();
    }
  }, 600_000);
});
