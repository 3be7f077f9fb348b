/**
 * Config values the OPT, GPT-2 and Gemma loaders cannot honour are refused with CONFIG_INVALID
 * naming the file and field, before any weight is read.
 */
import { describe, expect, it } from "vitest";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { copyFixture, editConfig } from "../fixture_copy.ts";

async function configError(name: string, edit: (c: Record<string, unknown>) => void): Promise<string> {
  const dir = copyFixture(name);
  editConfig(dir, edit);
  try {
    await loadModel(dir);
  } catch (e) {
    if (isKilnError(e, "CONFIG_INVALID")) {
      expect(e.message).toContain(dir);
      return e.message;
    }
    throw e;
  }
  throw new Error("expected loadModel to fail with CONFIG_INVALID");
}

describe("config errors of the learned-position and Gemma models", () => {
  it("opt: the post-norm layout (OPT-350m) is refused, not silently run pre-norm", async () => {
    const m = await configError("opt", (c) => void (c["do_layer_norm_before"] = false));
    expect(m).toContain('"do_layer_norm_before"');
  });

  it("opt: word_embed_proj_dim other than hidden_size (project_in/out) is refused", async () => {
    const m = await configError("opt", (c) => void (c["word_embed_proj_dim"] = 32));
    expect(m).toContain('"word_embed_proj_dim"');
  });

  it("gpt2: an unknown activation names the field and the supported ones", async () => {
    const m = await configError("gpt2", (c) => void (c["activation_function"] = "quick_gelu"));
    expect(m).toContain('"activation_function"');
    expect(m).toContain("gelu_new");
  });

  it("gemma2: a layer type other than sliding/full attention", async () => {
    const m = await configError("gemma2", (c) => void (c["layer_types"] = ["sliding_attention", "full_attention", "conv", "full_attention"]));
    expect(m).toContain('"layer_types"');
    expect(m).toContain("conv");
  });

  it("gemma2: layer_types of the wrong length", async () => {
    const m = await configError("gemma2", (c) => void (c["layer_types"] = ["sliding_attention"]));
    expect(m).toContain("1 entries for 4 layers");
  });

  it("gemma2: a negative soft-cap", async () => {
    const m = await configError("gemma2", (c) => void (c["attn_logit_softcapping"] = -50));
    expect(m).toContain('"attn_logit_softcapping"');
  });

  it("gemma3: bidirectional attention (EmbeddingGemma) is refused", async () => {
    const m = await configError("gemma3", (c) => void (c["use_bidirectional_attention"] = true));
    expect(m).toContain('"use_bidirectional_attention"');
  });

  it("gemma3: per-layer-type rope_parameters without the layer type a layer needs", async () => {
    const m = await configError("gemma3", (c) => {
      const rope = c["rope_parameters"] as Record<string, unknown>;
      c["rope_parameters"] = { full_attention: rope["full_attention"] };
    });
    expect(m).toContain("sliding_attention");
  });

  it("gemma3: a non-positive local rotary base (older spelling)", async () => {
    const m = await configError("gemma3", (c) => {
      delete c["rope_parameters"];
      c["rope_theta"] = 1_000_000;
      c["rope_local_base_freq"] = 0;
    });
    expect(m).toContain('"rope_local_base_freq"');
  });
});
