/**
 * Reading the state-space models' configs: HF's "auto" step-size rank, the time-step limit (with
 * its `{"__float__": "Infinity"}` upper end), Jamba's and Bamba's layer layouts, and refusals.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseBambaConfig } from "../../models/bamba.ts";
import { timeStepLimit } from "../../models/dsl/mamba.ts";
import { parseJambaConfig } from "../../models/jamba.ts";
import { parseMamba2Config, parseMambaConfig } from "../../models/mamba.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { ConfigReader, loadConfigJson, type JsonObject } from "../../models/hf_config.ts";
import { fixture } from "../fixture_copy.ts";

function edited(name: string, edit: (c: Record<string, unknown>) => void): ConfigReader {
  const raw = JSON.parse(readFileSync(join(fixture(name), "config.json"), "utf8")) as Record<string, unknown>;
  edit(raw);
  return new ConfigReader(raw as JsonObject, `${name}/config.json`);
}

describe("state-space model configs", () => {
  it("mamba: sizes from the fixture, and time_step_rank 'auto' is ceil(hidden / 16)", () => {
    const c = parseMambaConfig(loadConfigJson(fixture("mamba")));
    expect(c.mixer).toMatchObject({ hiddenSize: 64, intermediateSize: 128, stateSize: 16, convKernel: 4, dtRank: 4, convBias: true, projBias: false });
    expect(c.tieWordEmbeddings).toBe(true);
    expect(parseMambaConfig(edited("mamba", (r) => void (r["time_step_rank"] = "auto"))).mixer.dtRank).toBe(4);
    const wider = edited("mamba", (r) => {
      r["time_step_rank"] = "auto";
      r["hidden_size"] = 100;
    });
    expect(parseMambaConfig(wider).mixer.dtRank).toBe(7);
  });

  it("mamba2: heads, groups and an unbounded time-step limit; heads that do not tile the expansion are refused", () => {
    const c = parseMamba2Config(loadConfigJson(fixture("mamba2")));
    expect(c.mixer).toMatchObject({ numHeads: 8, headDim: 16, numGroups: 1, stateSize: 16, dtMin: 0, dtMax: undefined });
    try {
      parseMamba2Config(edited("mamba2", (r) => void (r["num_heads"] = 6)));
      expect.unreachable();
    } catch (e) {
      expect(isKilnError(e, "CONFIG_INVALID")).toBe(true);
      expect(String(e)).toMatch(/num_heads 6 × head_dim 16 differs from expand 2 × hidden_size 64/);
    }
  });

  it("time_step_limit: a finite upper end clamps; a negative lower end is no clamp at all", () => {
    expect(timeStepLimit(undefined)).toEqual({ dtMin: 0, dtMax: undefined });
    expect(timeStepLimit([0.001, 0.1])).toEqual({ dtMin: 0.001, dtMax: 0.1 });
    expect(timeStepLimit([-1, Infinity])).toEqual({ dtMin: 0, dtMax: undefined });
  });

  it("jamba: attention and expert layers by period and offset, softmax top-k routing without renormalisation", () => {
    const c = parseJambaConfig(loadConfigJson(fixture("jamba")));
    expect(c.attentionLayers).toEqual([false, true, false, true]);
    expect(c.expertLayers).toEqual([false, true, false, true]);
    expect(c.moe).toMatchObject({ numExperts: 4, topK: 2, routing: "softmax_topk", routerName: "router" });
    expect(c.mamba).toMatchObject({ dtRank: 8, innerNormEps: 1e-6 });
    expect(parseJambaConfig(edited("jamba", (r) => void (r["mamba_dt_rank"] = "auto"))).mamba.dtRank).toBe(4);
  });

  it("bamba: attention layers by index, partial rotary, and an out-of-range index refused", () => {
    const c = parseBambaConfig(loadConfigJson(fixture("bamba")));
    expect(c.attentionLayers).toEqual([false, true, false, true]);
    expect(c.rope.partialRotaryFactor).toBe(0.5);
    expect(c.mamba).toMatchObject({ numHeads: 8, headDim: 16, numGroups: 1, stateSize: 16, normEps: 1e-5 });
    expect(() => parseBambaConfig(edited("bamba", (r) => void (r["attn_layer_indices"] = [1, 9])))).toThrow(/"attn_layer_indices\[1\]" must be an integer in \[0, 3\], got 9/);
  });
});
