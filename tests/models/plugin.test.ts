/**
 * Out-of-tree models: a plugin module outside the source tree registers a model written with
 * kiln's DSL, by class or by a lazy "path:Export" spec, and it runs — here a compact Llama
 * re-implementation checked against the HF reference of the llama fixture.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { runGolden } from "../../cli/golden_check.ts";
import { defaultRegistry, loadPlugins } from "../../models/registry.ts";
import { copyFixture, editConfig } from "../fixture_copy.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DSL = pathToFileURL(join(ROOT, "models/dsl/index.ts")).href;

/** A Llama written from scratch against the public DSL, as a plugin author would. */
const MODEL_SOURCE = `
import { Module, VocabParallelEmbedding, ParallelLMHead, RMSNorm, QKVParallelLinear, RowParallelLinear,
  MergedColumnParallelLinear, RotaryEmbedding, Attention, LLAMA_STACKED, loadWeights, parseRope } from ${JSON.stringify(DSL)};

class Block extends Module {
  constructor(prefix, c, ctx) {
    super(prefix);
    const H = c.int("hidden_size"), nh = c.int("num_attention_heads"), nkv = c.int("num_key_value_heads");
    const D = c.optInt("head_dim") ?? H / nh, I = c.int("intermediate_size"), eps = c.float("rms_norm_eps");
    this.dims = [nh * D, nkv * D, nkv * D, I, nh, nkv];
    this.ln1 = new RMSNorm(this.join("input_layernorm"), H, eps);
    this.ln2 = new RMSNorm(this.join("post_attention_layernorm"), H, eps);
    this.qkv = new QKVParallelLinear(this.join("self_attn.qkv_proj"), H, D, nh, nkv, ctx);
    this.o = new RowParallelLinear(this.join("self_attn.o_proj"), nh * D, H, ctx);
    this.rope = new RotaryEmbedding(D, D, parseRope(c));
    this.attn = new Attention(this.join("self_attn.attn"), nh, D, D ** -0.5, nkv);
    this.gateUp = new MergedColumnParallelLinear(this.join("mlp.gate_up_proj"), H, [I, I], ctx);
    this.down = new RowParallelLinear(this.join("mlp.down_proj"), I, H, ctx);
  }
  forward(pos, h) {
    const [qn, kn, vn, I, nh, nkv] = this.dims;
    const [q, k, v] = this.qkv.forward(this.ln1.forward(h)).split([qn, kn, vn]);
    h = h.add(this.o.forward(this.attn.forward(this.rope.apply(q, pos, nh), this.rope.apply(k, pos, nkv), v)));
    const [g, u] = this.gateUp.forward(this.ln2.forward(h)).split([I, I]);
    return h.add(this.down.forward(g.silu().mul(u)));
  }
}

export class TinyLlamaForCausalLM extends Module {
  constructor({ config: c, ctx }) {
    super("");
    this.vocabSize = c.int("vocab_size");
    this.maxPositions = c.int("max_position_embeddings");
    this.embed = new VocabParallelEmbedding("model.embed_tokens", this.vocabSize, c.int("hidden_size"), ctx);
    this.blocks = Array.from({ length: c.int("num_hidden_layers") }, (_, i) => new Block("model.layers." + i, c, ctx));
    this.norm = new RMSNorm("model.norm", c.int("hidden_size"), c.float("rms_norm_eps"));
    this.head = new ParallelLMHead("lm_head", this.vocabSize, c.int("hidden_size"), ctx);
  }
  forward({ inputIds, positions, logitsIndices }) {
    let h = this.embed.forward(inputIds);
    for (const b of this.blocks) h = b.forward(positions, h);
    return this.head.logits(this.norm.forward(h.gatherRows(logitsIndices)));
  }
  loadWeights(source) {
    return loadWeights(this, source, { stacked: LLAMA_STACKED });
  }
}
`;

function writePlugin(): { dir: string; plugin: string } {
  const dir = mkdtempSync(join(tmpdir(), "kiln-plugin-"));
  writeFileSync(join(dir, "tiny_llama.mjs"), MODEL_SOURCE);
  const plugin = join(dir, "plugin.mjs");
  writeFileSync(
    plugin,
    `import { registerModel } from ${JSON.stringify(DSL)};\n` +
      `export function register() { registerModel("TinyLlamaForCausalLM", ${JSON.stringify(join(dir, "tiny_llama.mjs") + ":TinyLlamaForCausalLM")}); }\n`,
  );
  return { dir, plugin };
}

function tinyLlamaCheckpoint(): string {
  const dir = copyFixture("llama");
  editConfig(dir, (c) => (c["architectures"] = ["TinyLlamaForCausalLM"]));
  return dir;
}

describe("out-of-tree models", () => {
  it("a plugin registers a lazily imported model that matches the HF reference", async () => {
    const { plugin } = writePlugin();
    expect(defaultRegistry.has("TinyLlamaForCausalLM")).toBe(false);
    await loadPlugins([plugin]);
    expect(defaultRegistry.has("TinyLlamaForCausalLM")).toBe(true);
    const { summary } = await runGolden(tinyLlamaCheckpoint(), { tolerance: 1e-4 });
    expect(summary.arch).toBe("TinyLlamaForCausalLM");
    expect(summary.ok).toBe(true);
  });

  it("the CLI loads plugins from KILN_PLUGINS and from --plugin", () => {
    const { plugin } = writePlugin();
    const dir = tinyLlamaCheckpoint();
    for (const [args, env] of [
      [["golden", dir], { KILN_PLUGINS: plugin }],
      [["--plugin", plugin, "golden", dir], {}],
    ] as const) {
      const out = execFileSync(process.execPath, ["--import", "tsx", "cli/kiln.ts", ...args], {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, ...env },
      });
      const last = JSON.parse(out.trim().split("\n").pop()!) as { summary: { ok: boolean; arch: string } };
      expect(last.summary).toMatchObject({ ok: true, arch: "TinyLlamaForCausalLM" });
    }
  });

  it("a plugin whose register() registers nothing is a typed error, not a silent no-op", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kiln-plugin-empty-"));
    writeFileSync(join(dir, "empty.mjs"), "export function register() {}\n");
    await expect(loadPlugins([join(dir, "empty.mjs")])).rejects.toMatchObject({ code: "PLUGIN_INVALID", message: expect.stringMatching(/registered no architecture/) });
  });

  it("a bad plugin spec is a typed error", async () => {
    await expect(loadPlugins(["/nonexistent/plugin.mjs"])).rejects.toMatchObject({ code: "PLUGIN_INVALID" });
    expect(() => defaultRegistry.register("X", "no-colon-here")).toThrow(/module-path:ExportName/);
  });
});
