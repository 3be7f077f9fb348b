/**
 * The older checkpoint and config spellings real Hub models use load to the same function, against
 * the HF references of the learned-position and Gemma fixtures (float32): OPT and GPT-2 weight
 * names without their prefixes, Gemma 2 without layer_types, Gemma 3 with rope_theta and
 * sliding_window_pattern; and a learned position table's end. (golden.test.ts has every
 * fixture's own parity.)
 */
import { describe, expect, it } from "vitest";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { copyFixture, editConfig, editWeights, fixture } from "../fixture_copy.ts";
import { expectGoldenParity } from "./golden_support.ts";

describe("older spellings load to the same function", () => {
  it("gpt2: names without the transformer. prefix, with the causal-mask buffers (openai-community/gpt2)", async () => {
    const dir = copyFixture("gpt2");
    editWeights(dir, (ts) => [
      ...ts.map((t) => ({ ...t, name: t.name.replace(/^transformer\./, "") })),
      { name: "h.0.attn.bias", dtype: "F32", shape: [1, 1, 4, 4], data: new Float32Array(16) },
      { name: "h.0.attn.masked_bias", dtype: "F32", shape: [], data: new Float32Array(1) },
    ]);
    await expectGoldenParity(dir);
  });

  it("opt: names without the model. prefix (facebook/opt-*)", async () => {
    const dir = copyFixture("opt");
    editWeights(dir, (ts) => ts.map((t) => ({ ...t, name: t.name.replace(/^model\./, "") })));
    await expectGoldenParity(dir);
  });

  it("gemma2: no layer_types (local and global alternate, local first)", async () => {
    const dir = copyFixture("gemma2");
    editConfig(dir, (c) => void delete c["layer_types"]);
    await expectGoldenParity(dir);
  });

  it("gemma3: rope_theta + rope_local_base_freq instead of rope_parameters, sliding_window_pattern instead of layer_types", async () => {
    const dir = copyFixture("gemma3");
    editConfig(dir, (c) => {
      delete c["rope_parameters"];
      delete c["layer_types"];
      delete c["_sliding_window_pattern"];
      c["rope_theta"] = 1_000_000;
      c["rope_local_base_freq"] = 10_000;
      c["rope_scaling"] = null;
      c["sliding_window_pattern"] = 6;
    });
    await expectGoldenParity(dir);
  });

  it("gemma3: local and global rotary bases are not interchangeable (the fixture tells them apart)", async () => {
    const dir = copyFixture("gemma3");
    editConfig(dir, (c) => {
      const rope = c["rope_parameters"] as Record<string, unknown>;
      c["rope_parameters"] = { full_attention: rope["sliding_attention"], sliding_attention: rope["full_attention"] };
    });
    const { summary } = await runGolden(dir, { tolerance: 1e-4 });
    expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-2);
  });
});

describe("learned positions", () => {
  it("a position past the table (gpt2: n_positions 512) is refused, not read out of bounds", async () => {
    const loaded = await loadModel(fixture("gpt2"));
    const blockSize = 16;
    const runner = ModelRunner.forGraph(loaded.graph, loaded.weights, loaded.model.vocabSize, { numBlocks: 34, blockSize });
    const table = Array.from({ length: runner.numBlocks }, (_, i) => i);
    try {
      // positions 510..513: the last two are past the table
      runner.execute([{ tokens: [5, 6, 7, 8], numCached: 510, blockTable: table }]);
      expect.unreachable("positions past the table should be refused");
    } catch (e) {
      expect(isKilnError(e, "INVALID_ARGUMENT"), String(e)).toBe(true);
      expect((e as Error).message).toContain("position table");
    } finally {
      runner.dispose();
    }
  });
});
