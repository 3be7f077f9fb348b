/**
 * The statements of a generated decoder model file, from its plan (decoder_plan.ts): the config
 * reader (the config fields the model reads), and the bodies of the attention, MLP, layer, stack
 * and causal-LM classes. model_writer.ts places them with ts-morph; this file only spells them.
 */
import type { DecoderPlan } from "./decoder_plan.ts";
import { moeConfigFields, moeConfigLines } from "./moe_code.ts";

const q = (s: string): string => JSON.stringify(s);

/** `c.int("key")`, or the fallback when the config has no such key. */
function read(key: string | undefined, kind: "int" | "float", fallback: string): string {
  return key === undefined ? fallback : `c.${kind}(${q(key)})`;
}

export const todoCall = (what: string): string => `todo(${q(what)})`;

export function configFields(p: DecoderPlan): [string, string][] {
  const fields: [string, string][] = [
    ["hiddenSize", "number"],
    ["numHeads", "number"],
    ["numKvHeads", "number"],
    ["headDim", "number"],
    ["numLayers", "number"],
    ["vocabSize", "number"],
    ["maxPositions", "number"],
    ["intermediateSize", "number"],
    ["normEps", "number"],
    ["act", "UnaryOp"],
    ["tieWordEmbeddings", "boolean"],
    ["slidingWindows", "readonly (number | undefined)[]"],
  ];
  if (p.rope !== "learned") fields.push(["ropes", "readonly RopeConfig[]"]);
  if (p.conv.queryPreAttnScalar) fields.push(["queryPreAttnScalar", "number"]);
  if (p.conv.softcaps) fields.push(["attnSoftcap", "number | undefined"], ["finalSoftcap", "number | undefined"]);
  if (p.moe) fields.push(["moe", "SparseMoeBlockOptions"], ["sparseLayers", "readonly boolean[]"]);
  return fields;
}

export function readConfigBody(p: DecoderPlan): string[] {
  const k = p.keys;
  const missing = (what: string): string => todoCall(`the config states no ${what}`);
  const lines = [
    `const hiddenSize = ${read(k.hidden, "int", missing("hidden size"))};`,
    `const numHeads = ${read(k.heads, "int", missing("attention head count"))};`,
    `const numLayers = ${read(k.layers, "int", missing("layer count"))};`,
    `const windowOf = c.optInt("sliding_window");`,
  ];
  switch (p.windows) {
    case "layer_types":
      lines.push(`const layerTypes = c.stringList("layer_types");`, `const slidingWindows = layerTypes.map((t) => (t === "sliding_attention" ? windowOf : undefined));`);
      break;
    case "use_sliding_window":
      lines.push(
        `// older Qwen2 spelling: a window only when enabled, from layer max_window_layers on`,
        `const from = c.optInt("max_window_layers") ?? 0;`,
        `const slidingWindows = Array.from({ length: numLayers }, (_, i) => (c.optBool("use_sliding_window") === true && i >= from ? windowOf : undefined));`,
      );
      break;
    case "uniform":
      lines.push(`const slidingWindows = Array.from({ length: numLayers }, () => windowOf);`);
      break;
  }
  const eps = p.keys.eps !== undefined ? `c.float(${q(p.keys.eps)})` : p.conv.epsDefault !== undefined ? `${p.conv.epsDefault} /* ${p.match.family.arch}'s norm default; its configs state none */` : missing("norm epsilon (rms_norm_eps, layer_norm_eps or layer_norm_epsilon)");
  const act = p.keys.act !== undefined ? `parseActivation(c, [${q(p.keys.act)}], "silu")` : p.conv.actDefault !== undefined ? `parseActivation(c, [], ${q(p.conv.actDefault)}) /* ${p.match.family.arch}'s default */` : missing("activation (hidden_act)");
  const intermediate = read(k.intermediate, "int", `${p.intermediateFromTensors} /* the checkpoint's MLP width; the config states none */`);
  const fields = [
    "hiddenSize",
    "numHeads",
    `numKvHeads: ${k.kvHeads === undefined ? "numHeads /* no num_key_value_heads: every head has its own k and v */" : `c.optInt(${q(k.kvHeads)}) ?? numHeads`}`,
    `headDim: ${k.headDim === undefined ? "hiddenSize / numHeads" : `c.optInt(${q(k.headDim)}) ?? hiddenSize / numHeads`}`,
    "numLayers",
    `vocabSize: ${read(k.vocab, "int", missing("vocab_size"))}`,
    `maxPositions: ${read(k.maxPositions, "int", missing("max_position_embeddings"))}`,
    `intermediateSize: ${intermediate}`,
    `normEps: ${eps}`,
    `act: ${act}`,
    `tieWordEmbeddings: c.optBool("tie_word_embeddings") ?? ${String(p.conv.tieDefault)}`,
    "slidingWindows",
  ];
  if (p.rope === "single") fields.push("ropes: Array.from({ length: numLayers }, () => parseRope(c))");
  if (p.rope === "per_layer_type") {
    if (p.windows !== "layer_types") fields.push(`ropes: ${todoCall("rope_parameters is given per layer type, but the config has no layer_types")}`);
    else fields.push("ropes: layerTypes.map((t) => parseRope(c, t))");
  }
  if (p.conv.queryPreAttnScalar) fields.push(`queryPreAttnScalar: c.optFloat("query_pre_attn_scalar") ?? ${todoCall("query_pre_attn_scalar is not stated")}`);
  if (p.conv.softcaps) {
    const cap = (key: string, fallback: number | undefined): string =>
      `${key === "attn_logit_softcapping" ? "attnSoftcap" : "finalSoftcap"}: softcapOf(c, ${q(key)}, ${fallback === undefined ? "undefined" : String(fallback)})`;
    fields.push(cap("attn_logit_softcapping", p.conv.softcaps.attn), cap("final_logit_softcapping", p.conv.softcaps.final));
  }
  if (p.moe) {
    lines.push(...moeConfigLines(p.moe));
    fields.push(...moeConfigFields(p.moe, todoCall));
  }
  return [...lines, `return {\n${fields.join(",\n")},\n};`];
}

/** (1 + w) norms for Gemma's conventions */
const normOpts = (p: DecoderPlan): string => (p.conv.normOffset !== 0 ? `, { weightOffset: ${p.conv.normOffset} }` : "");

export function normExpr(p: DecoderPlan, name: string, bias: boolean): string {
  return p.norm === "rms" ? `new RMSNorm(this.join(${q(name)}), cfg.hiddenSize, cfg.normEps${normOpts(p)})` : `new LayerNorm(this.join(${q(name)}), cfg.hiddenSize, cfg.normEps, { bias: ${String(bias)} })`;
}

export function attentionCtor(p: DecoderPlan): string[] {
  const l = p.layout;
  const qkvName = l.qkv.kind === "split" ? "qkv_proj" : l.qkv.qkv.name;
  const qkvBias = l.qkv.kind === "split" ? l.qkv.q.bias : l.qkv.qkv.bias;
  const scale = p.conv.queryPreAttnScalar ? "cfg.queryPreAttnScalar ** -0.5" : "D ** -0.5";
  const lines = [
    "super(prefix);",
    "const D = cfg.headDim;",
    `this.qkvProj = new QKVParallelLinear(this.join(${q(qkvName)}), cfg.hiddenSize, D, cfg.numHeads, cfg.numKvHeads, ctx, { bias: ${String(qkvBias)} });`,
    `this.oProj = new RowParallelLinear(this.join(${q(l.o.name)}), cfg.numHeads * D, cfg.hiddenSize, ctx, { bias: ${String(l.o.bias)} });`,
  ];
  if (l.qkNorm) {
    lines.push(`this.qNorm = new RMSNorm(this.join(${q(l.qkNorm.q.name)}), D, cfg.normEps${normOpts(p)});`, `this.kNorm = new RMSNorm(this.join(${q(l.qkNorm.k.name)}), D, cfg.normEps${normOpts(p)});`);
  }
  if (p.rope !== "learned") lines.push("const rope = cfg.ropes[layer]!;", "this.rotary = new RotaryEmbedding(D, rotaryDimOf(rope, D), rope);");
  const softcap = p.conv.softcaps ? ", softcap: cfg.attnSoftcap" : "";
  lines.push("const { numHeads, numKvHeads } = this.qkvProj.sizes;", `this.attn = new Attention(this.join("attn"), numHeads, D, ${scale}, numKvHeads, { slidingWindow: cfg.slidingWindows[layer]${softcap} });`);
  return lines;
}

export function attentionForward(p: DecoderPlan): string[] {
  const rope = p.rope !== "learned";
  const norm = p.layout.qkNorm !== undefined;
  const lines = ["return this.scoped(x.graph, () => {"];
  if (!rope && !norm) {
    lines.push("// no rotary: positions entered with the embeddings", "const [q, k, v] = this.qkvProj.forwardQkv(x);");
  } else {
    if (rope) lines.push("const { numHeads, numKvHeads } = this.qkvProj.sizes;");
    lines.push("const [q0, k0, v] = this.qkvProj.forwardQkv(x);", "let q = q0;", "let k = k0;");
    if (norm) lines.push("q = this.qNorm.forward(q);", "k = this.kNorm.forward(k);");
    if (rope) lines.push("q = this.rotary.apply(q, positions, numHeads);", "k = this.rotary.apply(k, positions, numKvHeads);");
  }
  lines.push("return this.oProj.forward(this.attn.forward(q, k, v));", "});");
  return lines;
}

export function mlpCtor(p: DecoderPlan): string[] {
  const m = p.layout.mlpLayout;
  switch (m.kind) {
    case "gated":
    case "gated_fused": {
      const bias = m.kind === "gated" ? m.gate.bias : m.gateUp.bias;
      return [
        "super(prefix);",
        `this.gateUpProj = new MergedColumnParallelLinear(this.join("gate_up_proj"), cfg.hiddenSize, [cfg.intermediateSize, cfg.intermediateSize], ctx, { bias: ${String(bias)} });`,
        `this.downProj = new RowParallelLinear(this.join(${q(m.down.name)}), cfg.intermediateSize, cfg.hiddenSize, ctx, { bias: ${String(m.down.bias)} });`,
        "this.act = cfg.act;",
      ];
    }
    case "plain":
      return [
        "super(prefix);",
        `this.upProj = new ColumnParallelLinear(this.join(${q(m.up.name)}), cfg.hiddenSize, cfg.intermediateSize, ctx, { bias: ${String(m.up.bias)} });`,
        `this.downProj = new RowParallelLinear(this.join(${q(m.down.name)}), cfg.intermediateSize, cfg.hiddenSize, ctx, { bias: ${String(m.down.bias)} });`,
        "this.act = cfg.act;",
      ];
  }
}

export function mlpForward(p: DecoderPlan): string[] {
  if (p.layout.mlpLayout.kind === "plain") return ["return this.scoped(x.graph, () => this.downProj.forward(this.upProj.forward(x).unary(this.act)));"];
  return [
    "return this.scoped(x.graph, () => {",
    "const per = this.gateUpProj.sizesPerRank[0]!;",
    "const [gate, up] = this.gateUpProj.forward(x).split([per, per]);",
    "return this.downProj.forward(gate!.unary(this.act).mul(up!));",
    "});",
  ];
}
