/**
 * Reads a checkpoint's tensor names and shapes as kiln's generic decoder-only shape, or says why
 * it is not one:
 *
 *   <root>.<embed>                              token embedding [V, H]
 *   <root>.<positions>                          learned positions [P, H] (absent: rotary)
 *   <root>.<layers>.{i}.<input norm>            norm before attention
 *   <root>.<layers>.{i}.<attn>.{q,k,v | qkv}    projections, optional bias, optional per-head q/k norm
 *   <root>.<layers>.{i}.<attn>.<o>              output projection
 *   <root>.<layers>.{i}.<pre-MLP norm>          norm before the MLP
 *   <root>.<layers>.{i}[.<mlp>].{gate,up,down | gate_up,down | up,down}
 *   <root>.<final norm>, lm_head (absent: tied)
 *
 * The spellings each role may take are data (`SPELLINGS`); every tensor must be claimed by a role
 * and every layer must hold the same tensors as layer 0, or the checkpoint does not fit.
 */
import type { CheckpointShape } from "./checkpoint_shape.ts";
import { describeShape } from "./checkpoint_shape.ts";

/** The names each role is known under, first match wins. "" for the MLP: projections sit on the layer itself (OPT). */
export const SPELLINGS = {
  embed: ["embed_tokens", "wte", "embeddings", "word_embeddings", "tok_embeddings"],
  learnedPositions: ["embed_positions", "wpe", "position_embeddings"],
  finalNorm: ["norm", "final_layer_norm", "ln_f", "norm_f", "final_layernorm"],
  attention: ["self_attn", "attn", "attention"],
  q: ["q_proj", "wq"],
  k: ["k_proj", "wk"],
  v: ["v_proj", "wv"],
  qkv: ["qkv_proj", "c_attn"],
  o: ["o_proj", "out_proj", "wo", "dense", "c_proj"],
  qNorm: ["q_norm", "q_layernorm"],
  kNorm: ["k_norm", "k_layernorm"],
  mlp: ["mlp", "feed_forward", ""],
  gate: ["gate_proj", "w1"],
  up: ["up_proj", "w3"],
  down: ["down_proj", "w2"],
  gateUp: ["gate_up_proj"],
  plainUp: ["up_proj", "fc1", "c_fc"],
  plainDown: ["down_proj", "fc2", "c_proj"],
  inputNorm: ["input_layernorm", "self_attn_layer_norm", "ln_1", "attention_norm"],
  preMlpNorm: ["post_attention_layernorm", "final_layer_norm", "ln_2", "ffn_norm"],
  /** sandwich norms (Gemma 2/3): each sublayer's output is normalized again; then post_attention_layernorm is one of them */
  sandwichPreMlp: ["pre_feedforward_layernorm"],
  sandwichPostAttn: ["post_attention_layernorm"],
  sandwichPostMlp: ["post_feedforward_layernorm"],
} as const;

/** Checkpoint buffers that are not weights (HF's cached rotary frequencies). */
const BUFFERS = /(?:^|\.)rotary_emb\.inv_freq$/;
const LAYER_NAME = /^(?:(.*)\.)?(layers|h|blocks)\.(\d{1,9})\.(.+)$/;

/** A linear layer in the checkpoint: its name under its parent, weight [out, in], whether it has a bias. */
export interface ProjSlot {
  readonly name: string;
  readonly shape: readonly number[];
  readonly bias: boolean;
}

/** A norm in the checkpoint: its name under its parent, its size, whether it has a bias. */
export interface NormSlot {
  readonly name: string;
  readonly size: number;
  readonly bias: boolean;
}

export type QkvLayout =
  | { readonly kind: "split"; readonly q: ProjSlot; readonly k: ProjSlot; readonly v: ProjSlot }
  | { readonly kind: "fused"; readonly qkv: ProjSlot };

export type MlpLayout =
  | { readonly kind: "gated"; readonly gate: ProjSlot; readonly up: ProjSlot; readonly down: ProjSlot }
  | { readonly kind: "gated_fused"; readonly gateUp: ProjSlot; readonly down: ProjSlot }
  | { readonly kind: "plain"; readonly up: ProjSlot; readonly down: ProjSlot };

export interface DecoderLayout {
  /** the stack's prefix ("model", "model.decoder", "transformer"; "" when names start at the layers) */
  readonly root: string;
  readonly embed: { readonly name: string; readonly shape: readonly number[] };
  readonly positions: { readonly kind: "rotary" } | { readonly kind: "learned"; readonly name: string; readonly rows: number };
  readonly layers: string;
  readonly numLayers: number;
  readonly inputNorm: NormSlot;
  readonly attn: string;
  readonly qkv: QkvLayout;
  readonly o: ProjSlot;
  readonly qkNorm: { readonly q: NormSlot; readonly k: NormSlot } | undefined;
  readonly preMlpNorm: NormSlot;
  /** norms of the attention and MLP outputs before the residual add (Gemma), undefined for the plain pre-norm layer */
  readonly sandwich: { readonly postAttn: NormSlot; readonly postMlp: NormSlot } | undefined;
  readonly mlp: string;
  readonly mlpLayout: MlpLayout;
  readonly finalNorm: NormSlot;
  /** lm_head.weight is stored (else the head must be tied to the embedding) */
  readonly lmHead: boolean;
  /** checkpoint tensors that are buffers, not weights */
  readonly buffers: readonly string[];
}

export type LayoutMatch = { readonly ok: true; readonly layout: DecoderLayout } | { readonly ok: false; readonly reasons: readonly string[] };

export function join(...parts: readonly string[]): string {
  return parts.filter((p) => p !== "").join(".");
}

/** Tensors of one scope (a layer, or the top level), claimed role by role. */
class Claims {
  private readonly claimed = new Set<string>();
  constructor(private readonly tensors: CheckpointShape) {}

  proj(parent: string, names: readonly string[]): ProjSlot | undefined {
    for (const name of names) {
      const w = this.tensors.get(join(parent, name, "weight"));
      if (w?.length !== 2) continue;
      const bias = this.tensors.has(join(parent, name, "bias"));
      this.claim(join(parent, name, "weight"), bias ? join(parent, name, "bias") : undefined);
      return { name, shape: w, bias };
    }
    return undefined;
  }

  norm(parent: string, names: readonly string[]): NormSlot | undefined {
    for (const name of names) {
      const w = this.tensors.get(join(parent, name, "weight"));
      if (w?.length !== 1 || w[0] === undefined) continue;
      const bias = this.tensors.has(join(parent, name, "bias"));
      this.claim(join(parent, name, "weight"), bias ? join(parent, name, "bias") : undefined);
      return { name, size: w[0], bias };
    }
    return undefined;
  }

  has(parent: string, names: readonly string[]): boolean {
    return names.some((n) => this.tensors.has(join(parent, n, "weight")));
  }

  claim(...names: readonly (string | undefined)[]): void {
    for (const n of names) if (n !== undefined) this.claimed.add(n);
  }

  unclaimed(): string[] {
    return [...this.tensors.keys()].filter((n) => !this.claimed.has(n));
  }
}

function matchMlp(c: Claims): { mlp: string; layout: MlpLayout } | undefined {
  for (const mlp of SPELLINGS.mlp) {
    if (c.has(mlp, SPELLINGS.gate) && c.has(mlp, SPELLINGS.up)) {
      const gate = c.proj(mlp, SPELLINGS.gate);
      const up = c.proj(mlp, SPELLINGS.up);
      const down = c.proj(mlp, SPELLINGS.down);
      if (gate && up && down) return { mlp, layout: { kind: "gated", gate, up, down } };
    }
    if (c.has(mlp, SPELLINGS.gateUp)) {
      const gateUp = c.proj(mlp, SPELLINGS.gateUp);
      const down = c.proj(mlp, SPELLINGS.down);
      if (gateUp && down) return { mlp, layout: { kind: "gated_fused", gateUp, down } };
    }
    if (c.has(mlp, SPELLINGS.plainUp) && c.has(mlp, SPELLINGS.plainDown)) {
      const up = c.proj(mlp, SPELLINGS.plainUp);
      const down = c.proj(mlp, SPELLINGS.plainDown);
      if (up && down) return { mlp, layout: { kind: "plain", up, down } };
    }
  }
  return undefined;
}

type LayerMatch = Omit<DecoderLayout, "root" | "embed" | "positions" | "layers" | "numLayers" | "finalNorm" | "lmHead">;

/** Layer 0's tensors (names relative to the layer) as the generic layer, or the reasons they are not. */
function matchLayer(layer: CheckpointShape, reasons: string[]): LayerMatch | undefined {
  const c = new Claims(layer);
  const buffers = [...layer.keys()].filter((n) => BUFFERS.test(n));
  c.claim(...buffers);
  const attn = SPELLINGS.attention.find((a) => c.has(a, [...SPELLINGS.q, ...SPELLINGS.qkv]));
  if (attn === undefined) {
    reasons.push(`layer 0 has no attention projections (looked for {${SPELLINGS.attention.join("|")}}.{${SPELLINGS.q.join("|")}, …} or .${SPELLINGS.qkv.join("|")})`);
  }
  let qkv: QkvLayout | undefined;
  let o: ProjSlot | undefined;
  let qkNorm: LayerMatch["qkNorm"];
  if (attn !== undefined) {
    const fused = c.proj(attn, SPELLINGS.qkv);
    if (fused) qkv = { kind: "fused", qkv: fused };
    else {
      const q = c.proj(attn, SPELLINGS.q);
      const k = c.proj(attn, SPELLINGS.k);
      const v = c.proj(attn, SPELLINGS.v);
      if (q && k && v) qkv = { kind: "split", q, k, v };
      else reasons.push(`layer 0's ${attn} lacks ${[q ? "" : "q", k ? "" : "k", v ? "" : "v"].filter((x) => x).join(", ")} projection weights`);
    }
    o = c.proj(attn, SPELLINGS.o);
    if (!o) reasons.push(`layer 0's ${attn} has no output projection (${SPELLINGS.o.join(" | ")})`);
    const qn = c.norm(attn, SPELLINGS.qNorm);
    const kn = c.norm(attn, SPELLINGS.kNorm);
    if ((qn === undefined) !== (kn === undefined)) reasons.push(`layer 0's ${attn} normalizes only one of q and k`);
    qkNorm = qn && kn ? { q: qn, k: kn } : undefined;
  }
  const mlp = matchMlp(c);
  if (!mlp) reasons.push(`layer 0 has no MLP (gate/up/down, gate_up/down or up|fc1/down|fc2 under ${SPELLINGS.mlp.map((m) => m || "the layer").join(" | ")})`);
  const inputNorm = c.norm("", SPELLINGS.inputNorm);
  let sandwich: LayerMatch["sandwich"];
  let preMlpNorm: NormSlot | undefined;
  if (c.has("", SPELLINGS.sandwichPreMlp) && c.has("", SPELLINGS.sandwichPostMlp)) {
    preMlpNorm = c.norm("", SPELLINGS.sandwichPreMlp);
    const postAttn = c.norm("", SPELLINGS.sandwichPostAttn);
    const postMlp = c.norm("", SPELLINGS.sandwichPostMlp);
    if (postAttn && postMlp) sandwich = { postAttn, postMlp };
  } else preMlpNorm = c.norm("", SPELLINGS.preMlpNorm);
  if (!inputNorm) reasons.push(`layer 0 has no norm before attention (${SPELLINGS.inputNorm.join(" | ")})`);
  if (!preMlpNorm) reasons.push(`layer 0 has no norm before the MLP (${SPELLINGS.preMlpNorm.join(" | ")})`);
  const rest = c.unclaimed();
  if (rest.length > 0) {
    reasons.push(`layer 0 holds tensors no part of the generic layer (norm, attention, norm, MLP) claims: ${rest.map((n) => `${n} ${describeShape(layer.get(n))}`).join(", ")}`);
  }
  if (!qkv || !o || !mlp || !inputNorm || !preMlpNorm || attn === undefined || rest.length > 0) return undefined;
  return { inputNorm, attn, qkv, o, qkNorm, preMlpNorm, sandwich, mlp: mlp.mlp, mlpLayout: mlp.layout, buffers };
}

/** Splits names into the layer stacks' tensors (per index, relative names) and the rest. */
function splitLayers(tensors: CheckpointShape): { stacks: Map<string, Map<number, Map<string, readonly number[]>>>; top: Map<string, readonly number[]> } {
  const stacks = new Map<string, Map<number, Map<string, readonly number[]>>>();
  const top = new Map<string, readonly number[]>();
  for (const [name, shape] of tensors) {
    const m = LAYER_NAME.exec(name);
    if (m === null || m[2] === undefined || m[3] === undefined || m[4] === undefined) {
      top.set(name, shape);
      continue;
    }
    const stack = join(m[1] ?? "", m[2]);
    const layers = stacks.get(stack) ?? new Map<number, Map<string, readonly number[]>>();
    const layer = layers.get(Number(m[3])) ?? new Map<string, readonly number[]>();
    layer.set(m[4], shape);
    layers.set(Number(m[3]), layer);
    stacks.set(stack, layers);
  }
  return { stacks, top };
}

const signature = (layer: ReadonlyMap<string, readonly number[]>): string =>
  [...layer].map(([n, s]) => `${n}${describeShape(s)}`).sort().join(" ");

export function matchDecoderLayout(tensors: CheckpointShape): LayoutMatch {
  const reasons: string[] = [];
  const { stacks, top } = splitLayers(tensors);
  const [first, ...others] = [...stacks.keys()];
  if (first === undefined) return { ok: false, reasons: ["no tensors of the form <prefix>.layers.<i>.… (or .h.<i>, .blocks.<i>): no decoder layers found"] };
  if (others.length > 0) return { ok: false, reasons: [`more than one layer stack (${[first, ...others].join(", ")}); the generic shape has one`] };
  const layers = stacks.get(first)!;
  const numLayers = layers.size;
  const layer0 = layers.get(0);
  for (let i = 0; i < numLayers; i++) {
    const li = layers.get(i);
    if (li === undefined) return { ok: false, reasons: [`layer indices of ${first} are not 0..${numLayers - 1} (layer ${i} is missing)`] };
    if (layer0 && signature(li) !== signature(layer0)) {
      reasons.push(`layer ${i} of ${first} holds different tensors than layer 0 (layers differ in kind: hybrid or MoE stacks are not the generic shape)`);
      break;
    }
  }
  const cut = first.lastIndexOf(".");
  const root = cut < 0 ? "" : first.slice(0, cut);
  const layerMatch = matchLayer(layer0 ?? new Map(), reasons);

  const c = new Claims(top);
  const embedName = SPELLINGS.embed.find((e) => top.get(join(root, e, "weight"))?.length === 2);
  const embedShape = embedName === undefined ? undefined : top.get(join(root, embedName, "weight"));
  if (embedName === undefined || embedShape === undefined) reasons.push(`no token embedding ${root}.{${SPELLINGS.embed.join("|")}}.weight of shape [vocab, hidden]`);
  else c.claim(join(root, embedName, "weight"));
  const posName = SPELLINGS.learnedPositions.find((p) => top.get(join(root, p, "weight"))?.length === 2);
  if (posName !== undefined) c.claim(join(root, posName, "weight"));
  const finalNorm = c.norm(root, SPELLINGS.finalNorm);
  if (!finalNorm) reasons.push(`no final norm ${root}.{${SPELLINGS.finalNorm.join("|")}}.weight`);
  const lmHead = top.get("lm_head.weight")?.length === 2;
  if (lmHead) c.claim("lm_head.weight");
  const topBuffers = [...top.keys()].filter((n) => BUFFERS.test(n));
  c.claim(...topBuffers);
  const rest = c.unclaimed();
  if (rest.length > 0) reasons.push(`tensors outside the layers that the generic shape does not place: ${rest.map((n) => `${n} ${describeShape(top.get(n))}`).join(", ")}`);

  if (reasons.length > 0 || !layerMatch || !embedName || !embedShape || !finalNorm) return { ok: false, reasons };
  const positionRows = posName === undefined ? undefined : top.get(join(root, posName, "weight"))?.[0];
  return {
    ok: true,
    layout: {
      ...layerMatch,
      root,
      embed: { name: embedName, shape: embedShape },
      positions: posName === undefined || positionRows === undefined ? { kind: "rotary" } : { kind: "learned", name: posName, rows: positionRows },
      layers: first.slice(cut + 1),
      numLayers,
      finalNorm,
      lmHead,
      buffers: [...topBuffers, ...layerMatch.buffers],
    },
  };
}
