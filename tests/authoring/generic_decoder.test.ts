/**
 * The generic decoder-only fallback: an unregistered causal-LM architecture whose checkpoint and
 * config fit kiln's generic shape runs (and matches the HF reference of the model it really is);
 * one that does not fit is ARCH_UNKNOWN with the reasons.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { runGolden } from "../../cli/golden_check.ts";
import { loadConfigJson } from "../../models/hf_config.ts";
import { readCheckpointShape } from "../../models/authoring/checkpoint_shape.ts";
import { matchGenericDecoder } from "../../models/authoring/generic_decoder.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import type { KilnError } from "../../runtime/engine/errors.ts";
import { copyFixture, editConfig, fixture } from "../fixture_copy.ts";
import { expectGoldenParity } from "../models/golden_support.ts";

function renamed(name: string, arch: string, edit?: (c: Record<string, unknown>) => void): string {
  const dir = copyFixture(name);
  editConfig(dir, (c) => {
    c["architectures"] = [arch];
    edit?.(c);
  });
  return dir;
}

async function refusal(dir: string): Promise<KilnError> {
  const e: unknown = await loadModel(dir).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toMatchObject({ code: "ARCH_UNKNOWN" });
  return e as KilnError;
}

const notices = (spy: { mock: { calls: unknown[][] } }): string[] =>
  spy.mock.calls.map((c) => String(c[0])).filter((s) => s.includes("generic decoder-only implementation"));

describe("the generic decoder-only fallback", () => {
  afterEach(() => void vi.restoreAllMocks());

  it("runs a renamed Llama and passes the llama golden, saying once that it is the generic implementation", async () => {
    const spy = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const dir = renamed("llama", "MyLlamaForCausalLM");
    await expectGoldenParity(dir);
    const { summary } = await runGolden(dir, { tolerance: 1e-4 });
    expect(summary.arch).toBe("MyLlamaForCausalLM");
    const said = notices(spy);
    expect(said.length).toBeGreaterThanOrEqual(1);
    expect(said[0]).toMatch(/^kiln: MyLlamaForCausalLM is not registered; running it with kiln's generic decoder-only implementation \(2 × \[rms norm, attention \(rotary, GQA 4\/2\), rms norm, gated MLP\]/);
    expect(said[0]!.trim().split("\n")).toHaveLength(1);
  });

  // q/k/v biases and a tied head (qwen2), per-head q/k norms (qwen3), sliding windows (mistral)
  for (const name of ["qwen2", "qwen3", "mistral-swa"]) {
    it(`runs a renamed ${name} and passes its golden`, async () => {
      vi.spyOn(process.stderr, "write").mockImplementation(() => true);
      await expectGoldenParity(renamed(name, `Generic${name.replace(/\W/g, "")}ForCausalLM`));
    });
  }

  it("refuses a renamed Mamba with ARCH_UNKNOWN, naming the tensors and keys that do not fit", async () => {
    const e = await refusal(renamed("mamba", "MySsmForCausalLM"));
    expect(e.message).toContain("MySsmForCausalLM");
    expect(e.message).toContain("generic decoder-only implementation");
    expect(e.message).toContain("no attention projections");
    expect(e.message).toMatch(/mixer\.A_log \[128, 16\]/);
    expect(e.message).toContain("no registered model"); // the registry's own message comes first
  });

  it("refuses Gemma's sandwich norms and soft-caps, and GPT-2's Conv1D layout, with reasons", async () => {
    const gemma = await refusal(renamed("gemma2", "MyGemmaForCausalLM"));
    expect(gemma.message).toContain("(post_attention_layernorm, post_feedforward_layernorm): sandwich norms are not the generic shape");
    expect(gemma.message).toContain("attn_logit_softcapping = 50");
    // GPT-2's Conv1D weights are stored [in, out]: with its sizes stated the generic way, the shapes disagree
    const gpt2 = await refusal(renamed("gpt2", "MyGpt2LMHeadModel", (c) => Object.assign(c, { hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, max_position_embeddings: 512 })));
    expect(gpt2.message).toContain("attention c_attn.weight is [64, 192]; the config implies [192, 64]");
  });

  it("refuses what the config leaves unstated instead of guessing it", async () => {
    const e = await refusal(renamed("llama", "MyLlamaForCausalLM", (c) => delete c["rope_parameters"]));
    expect(e.message).toContain("the positions are not stated");
    const eps = await refusal(renamed("llama", "MyLlamaForCausalLM", (c) => delete c["rms_norm_eps"]));
    expect(eps.message).toContain("the norm's epsilon is not stated");
  });

  it("does not fall back for names that are not causal-LM heads", async () => {
    const e = await refusal(renamed("llama", "MyLlamaModel"));
    expect(e.message).not.toContain("generic");
  });

  it("decides fit from tensors: every fixture of the generic shape matches, the others do not", () => {
    const fits = (name: string): boolean => matchGenericDecoder(loadConfigJson(fixture(name)), readCheckpointShape(fixture(name))).ok;
    for (const name of ["llama", "llama-bf16", "qwen2", "qwen3", "mistral-swa", "fortune-llama"]) expect(fits(name), name).toBe(true);
    for (const name of ["mamba", "mamba2", "jamba", "bamba", "lfm2", "minimax", "qwen3-moe", "gemma2", "gemma3", "gpt2"]) expect(fits(name), name).toBe(false);
  });
});
