/**
 * The sparse-MoE half of a generated decoder: which config keys give the experts' count, top-k,
 * width, routing and the layers that hold the block (as models/qwen3_moe.ts reads them), checked
 * against the checkpoint's blocks (moe_layout.ts), and the statements that build the block with
 * the DSL's SparseMoeBlock / FusedMoE. A value neither the config nor the family's conventions
 * state, and config keys that change the routing in ways FusedMoE does not build, become todo()s.
 */
import type { ConfigReader, JsonValue } from "../hf_config.ts";
import type { Conventions } from "./architecture_match.ts";
import type { MoeLayout } from "./moe_layout.ts";

export interface MoeKeys {
  readonly experts: string | undefined;
  readonly topK: string | undefined;
  readonly intermediate: string | undefined;
  readonly normTopk: string | undefined;
  readonly sparseStep: string | undefined;
  readonly mlpOnly: string | undefined;
}

export interface MoePlan {
  readonly layout: MoeLayout;
  readonly keys: MoeKeys;
  /** the family's routing when the config has no norm_topk_prob (its HF config class's default) */
  readonly renormDefault: boolean | undefined;
  readonly family: string;
  /** what FusedMoE (or this plan) does not build for this checkpoint: each becomes a todo() in forward */
  readonly unbuilt: readonly string[];
}

const first = (c: ConfigReader, keys: readonly string[]): string | undefined => keys.find((k) => c.has(k));
const q = (s: string): string => JSON.stringify(s);

/** Routing keys (DeepSeek, GLM-MoE) whose non-neutral values FusedMoE's softmax → top-k does not compute. */
const ROUTING_KEYS: readonly { readonly key: string; readonly neutral: readonly JsonValue[]; readonly why: string }[] = [
  { key: "routed_scaling_factor", neutral: [1], why: "scaled routing weights" },
  { key: "scoring_func", neutral: ["softmax"], why: "a router score other than softmax" },
  { key: "topk_method", neutral: ["greedy"], why: "a top-k other than greedy" },
  { key: "n_group", neutral: [1], why: "group-limited routing" },
  { key: "topk_group", neutral: [1], why: "group-limited routing" },
];

/** The layers the generated code makes sparse: every step-th layer not listed dense (qwen3_moe.ts's rule). */
function sparseByConfig(c: ConfigReader, keys: MoeKeys, numExperts: number, numLayers: number): number[] {
  const step = keys.sparseStep === undefined ? 1 : (c.optInt(keys.sparseStep) ?? 1);
  const dense = keys.mlpOnly === undefined ? [] : (c.optIntList(keys.mlpOnly) ?? []);
  return Array.from({ length: numLayers }, (_, i) => i).filter((i) => numExperts > 0 && !dense.includes(i) && step > 0 && (i + 1) % step === 0);
}

export function planMoe(c: ConfigReader, layout: MoeLayout, conv: Conventions, family: string): MoePlan {
  const keys: MoeKeys = {
    // transformers writes num_experts; Mixtral-style configs num_local_experts
    experts: first(c, ["num_experts", "num_local_experts", "n_routed_experts"]),
    topK: first(c, ["num_experts_per_tok", "num_experts_per_token", "moe_top_k"]),
    intermediate: first(c, ["moe_intermediate_size"]),
    normTopk: first(c, ["norm_topk_prob"]),
    sparseStep: first(c, ["decoder_sparse_step"]),
    mlpOnly: first(c, ["mlp_only_layers"]),
  };
  const unbuilt: string[] = [];
  for (const k of ROUTING_KEYS) {
    const v = c.raw[k.key];
    if (v !== undefined && v !== null && !k.neutral.includes(v)) unbuilt.push(`config key ${k.key} = ${JSON.stringify(v)} means ${k.why}`);
  }
  const act = c.raw["hidden_act"];
  if (typeof act === "string" && act !== "silu" && act !== "swish") unbuilt.push(`the experts' activation ${act} (FusedMoE's experts are down(silu(gate) * up))`);
  const numExperts = keys.experts === undefined ? layout.numExperts : (c.optInt(keys.experts) ?? layout.numExperts);
  if (numExperts !== layout.numExperts) unbuilt.push(`config key ${keys.experts ?? "num_experts"} is ${numExperts}; the checkpoint's blocks hold ${layout.numExperts} experts`);
  const moeWidth = keys.intermediate === undefined ? undefined : c.optInt(keys.intermediate);
  if (moeWidth !== undefined && moeWidth !== layout.intermediate) unbuilt.push(`config key ${keys.intermediate ?? ""} is ${moeWidth}; the checkpoint's experts are ${layout.intermediate} wide`);
  const byConfig = sparseByConfig(c, keys, numExperts, layout.numLayers);
  if (byConfig.join() !== layout.sparseLayers.join()) {
    const said = [keys.sparseStep, keys.mlpOnly].filter((k) => k !== undefined).join(" and ") || "no decoder_sparse_step or mlp_only_layers (every layer)";
    unbuilt.push(`which layers hold the sparse block: the checkpoint has it on layers [${layout.sparseLayers.join(", ")}], the config (${said}) on [${byConfig.join(", ")}]`);
  }
  return { layout, keys, renormDefault: conv.topkRenormDefault, family, unbuilt };
}

/** Statements of the config reader that come before its `return`. */
export function moeConfigLines(m: MoePlan): string[] {
  const k = m.keys;
  return [
    `// ${m.layout.block}: a sparse block of experts on the layers the config selects, a dense MLP on the others`,
    `const numExperts = ${k.experts === undefined ? `${m.layout.numExperts} /* the checkpoint's experts; the config states no count */` : `c.int(${q(k.experts)})`};`,
    `const sparseStep = ${k.sparseStep === undefined ? "1 /* no decoder_sparse_step: every layer */" : `c.optInt(${q(k.sparseStep)}) ?? 1`};`,
    `const mlpOnly: readonly number[] = ${k.mlpOnly === undefined ? "[] /* no mlp_only_layers */" : `c.optIntList(${q(k.mlpOnly)}) ?? []`};`,
  ];
}

/** Fields of the config reader's returned object, given the todo() spelling of decoder_code.ts. */
export function moeConfigFields(m: MoePlan, todoCall: (what: string) => string): string[] {
  const k = m.keys;
  const l = m.layout;
  const renorm = '"softmax_topk_renorm"';
  const plain = '"softmax_topk"';
  const routing =
    k.normTopk !== undefined
      ? `(c.optBool(${q(k.normTopk)}) ?? false) ? ${renorm} : ${plain}`
      : m.renormDefault !== undefined
        ? `${m.renormDefault ? renorm : plain} /* ${m.family}'s default: its configs may leave norm_topk_prob out */`
        : todoCall("the config states no norm_topk_prob: say whether the top-k routing weights are divided by their sum");
  const opts = [
    "numExperts",
    `topK: ${k.topK === undefined ? todoCall("the config states no experts-per-token count (num_experts_per_tok)") : `c.int(${q(k.topK)})`}`,
    "hiddenSize",
    `intermediateSize: ${k.intermediate === undefined ? `${l.intermediate} /* the checkpoint's expert width; the config states none */` : `c.int(${q(k.intermediate)})`}`,
    `routing: ${routing}`,
  ];
  if (l.router !== "gate") opts.push(`routerName: ${q(l.router)}`);
  if (l.experts !== "experts") opts.push(`expertsName: ${q(l.experts)}`);
  return [`moe: {\n${opts.join(",\n")},\n}`, "sparseLayers: Array.from({ length: numLayers }, (_, i) => numExperts > 0 && !mlpOnly.includes(i) && (i + 1) % sparseStep === 0)"];
}

/** The per-expert stacked map that fills each block's w13 / w2 from experts.N.{gate,up,down}. */
export function expertMapExpr(m: MoePlan): string {
  const n = m.layout.expertNames;
  const names = n.gate === "gate_proj" && n.up === "up_proj" && n.down === "down_proj" ? "" : `, { gate: ${q(n.gate)}, up: ${q(n.up)}, down: ${q(n.down)} }`;
  const experts = m.layout.experts === "experts" ? "" : `, ${q(m.layout.experts)}`;
  return `FusedMoE.expertParamsMapping(this.cfg.moe.numExperts${names}${names === "" && experts !== "" ? ", undefined" : ""}${experts})`;
}
