/**
 * kiln check-model's rules: every model file kiln ships passes; seeded mistakes in copies of them
 * are caught, each at its file:line.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkModelFiles } from "../../models/authoring/model_check.ts";
import type { CheckRule, Diagnostic } from "../../models/authoring/model_source.ts";
import { fixture } from "../fixture_copy.ts";
import { ROOT, seededModel } from "./model_source_copy.ts";

/** The 1-based line of the first occurrence of `text` in `file`. */
function lineOf(file: string, text: string): number {
  const i = readFileSync(file, "utf8").split("\n").findIndex((l) => l.includes(text));
  if (i < 0) throw new Error(`${text} not in ${file}`);
  return i + 1;
}

const only = (ds: readonly Diagnostic[], rule: CheckRule): Diagnostic[] => ds.filter((d) => d.rule === rule);

/** Registers the copy's four Llama-family classes, as a plugin would. */
const REGISTER = `
import { registerModel } from ${JSON.stringify(join(ROOT, "models/registry.ts"))};
export function register(): void {
  registerModel("SeededLlamaForCausalLM", LlamaForCausalLM);
  registerModel("SeededMistralForCausalLM", MistralForCausalLM);
  registerModel("SeededQwen2ForCausalLM", Qwen2ForCausalLM);
  registerModel("SeededQwen3ForCausalLM", "./llama_seeded.js:Qwen3ForCausalLM");
}
`;

describe("kiln check-model", () => {
  it("passes every model file kiln ships, and catches each seeded mistake at its line", async () => {
    // kiln's models, and the generic decoder the registry falls back to
    const shipped = [...readdirSync(join(ROOT, "models")).filter((f) => f.endsWith(".ts")).map((f) => join(ROOT, "models", f)), join(ROOT, "models/authoring/generic_decoder.ts")];
    const literalPrefix = seededModel("llama", [['new RMSNorm(this.join("input_layernorm")', 'new RMSNorm("input_layernorm"']], REGISTER);
    const unregistered = seededModel("llama", []);
    const columnToColumn = seededModel(
      "llama",
      [
        ["import { MergedColumnParallelLinear,", "import { ColumnParallelLinear, MergedColumnParallelLinear,"],
        ["  readonly downProj: RowParallelLinear;", "  readonly downProj: ColumnParallelLinear;"],
        ["this.downProj = new RowParallelLinear(", "this.downProj = new ColumnParallelLinear("],
      ],
      REGISTER,
    );
    const jsLoop = seededModel(
      "llama",
      [["      const [gate, up] = this.gateUpProj.forward(x).split([per, per]);", "      let s = 0;\n      for (let i = 0; i < per; i++) s += i * 0.5;\n      const [gate, up] = this.gateUpProj.forward(x).split([per, per / 1 + s * 0]);"]],
      REGISTER,
    );
    // an index loop over the layers builds the graph layer by layer: fine
    const layerLoop = seededModel("opt", [["for (const layer of this.layers) h = layer.forward(h);", "for (let i = 0; i < this.layers.length; i++) h = this.layers[i]!.forward(h);"]]);

    const [ds = [], lit = [], unreg = [], col = [], loop = [], layers = []] = [
      await checkModelFiles(shipped),
      ...(await checkModelFiles([literalPrefix, unregistered, columnToColumn, jsLoop, layerLoop])).map((d) => [d]),
    ].map((x) => x.flat());
    expect(ds, ds.map((d) => `${d.file}:${d.line} ${d.message}`).join("\n")).toEqual([]);

    expect(lit).toHaveLength(1);
    expect(lit[0]).toMatchObject({ rule: "prefix", file: literalPrefix, line: lineOf(literalPrefix, 'new RMSNorm("input_layernorm"') });
    expect(lit[0]!.message).toMatch(/does not compose.*this\.join\("input_layernorm"\)/);

    const reg = only(unreg, "registration");
    expect(reg.map((d) => d.message.split(" ")[2]).sort()).toEqual(["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]);
    expect(reg[0]!.line).toBe(lineOf(unregistered, "export class LlamaForCausalLM"));
    expect(unreg.filter((d) => d.rule !== "registration")).toEqual([]);

    expect(col).toHaveLength(1);
    expect(col[0]).toMatchObject({ rule: "tensor-parallel", line: lineOf(columnToColumn, "return this.downProj.forward(") });
    expect(col[0]!.message).toContain("no RowParallelLinear in between");

    expect(loop).toHaveLength(1);
    expect(loop[0]).toMatchObject({ rule: "forward", line: lineOf(jsLoop, "for (let i = 0; i < per; i++)") });

    expect(only(layers, "forward")).toEqual([]);
  });

  it("with --checkpoint: a misspelled prefix leaves parameters unfilled and tensors unclaimed, cited at its line", async () => {
    const misspelled = seededModel("llama", [['this.join("post_attention_layernorm")', 'this.join("post_attn_layernorm")']], REGISTER);
    const [good = [], bad = []] = [
      ...(await checkModelFiles([join(ROOT, "models/llama.ts")], { checkpoint: fixture("llama") })),
      ...(await checkModelFiles([misspelled], { checkpoint: fixture("llama") })),
    ];
    expect(good).toEqual([]);
    const [unfilled, unclaimed, ...rest] = bad;
    expect(rest).toEqual([]);
    expect(unfilled).toMatchObject({ rule: "checkpoint", line: lineOf(misspelled, 'this.join("post_attn_layernorm")') });
    expect(unfilled!.message).toContain("model.layers.{i}.post_attn_layernorm.weight");
    expect(unclaimed).toMatchObject({ rule: "checkpoint", line: lineOf(misspelled, "  loadWeights(source: WeightSource): LoadReport {") });
    expect(unclaimed!.message).toContain("model.layers.{i}.post_attention_layernorm.weight");
  });
});
