/**
 * Reads a checkpoint's sparse mixture-of-experts blocks, the shape kiln builds with FusedMoE
 * (models/dsl/fused_moe.ts):
 *
 *   <layers>.{i}.<block>.<router>.weight                 router [E, H], no bias
 *   <layers>.{i}.<block>.experts.{e}.{gate,up,down}.weight   gate/up [I, H], down [H, I], no biases
 *
 * with the same E experts and width I in every sparse layer. The rest of each layer is read by
 * decoder_layout.ts, which knows no experts: every sparse block is folded into a stand-in gated
 * MLP (a dense layer's MLP tensors when the stack has one, so that layers stay alike; else the
 * experts' shapes), so attention and norms are matched by the same rules as a dense decoder.
 * Anything else in a block (shared experts, router biases, experts stored fused) is named, so
 * that `kiln new-model` can say which MoE piece it does not build.
 */
import type { CheckpointShape } from "./checkpoint_shape.ts";
import { describeShape } from "./checkpoint_shape.ts";

/** Where the block may sit under a layer, and the router's name in it (Qwen/Mixtral: gate; Jamba: router). */
const BLOCKS = ["mlp", "block_sparse_moe", "feed_forward", "moe"] as const;
const ROUTERS = ["gate", "router"] as const;
/** Per-expert projection names: gate, up, down (Qwen/OLMoE spelling, then Mixtral's w1/w3/w2). */
const EXPERT_SPELLINGS = [
  { gate: "gate_proj", up: "up_proj", down: "down_proj" },
  { gate: "w1", up: "w3", down: "w2" },
] as const;
/** Block tensors kiln's FusedMoE has no place for, by what they are. */
const KNOWN_EXTRAS: readonly { readonly pattern: RegExp; readonly what: string }[] = [
  { pattern: /^shared_experts?(?:_gate)?\./, what: "shared experts" },
  { pattern: /^(?:gate|router)\.(?:e_score_correction_bias|expert_bias)$/, what: "a router score-correction bias" },
  { pattern: /^(?:gate|router)\.bias$/, what: "a router bias" },
  { pattern: /^experts\.\d+\.\w+\.bias$/, what: "expert biases" },
  { pattern: /^experts\.(?:gate_up_proj|down_proj)/, what: "experts stored fused ([E, …] tensors, not experts.N.*)" },
];

export interface ExpertSpelling {
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

export interface MoeLayout {
  /** the block's name under a layer ("mlp") */
  readonly block: string;
  readonly router: string;
  readonly experts: string;
  readonly expertNames: ExpertSpelling;
  readonly numExperts: number;
  /** each expert's width I */
  readonly intermediate: number;
  /** indices of the layers holding the block; the others hold a dense MLP */
  readonly sparseLayers: readonly number[];
  readonly numLayers: number;
}

export type MoeMatch =
  | { readonly kind: "none" }
  | { readonly kind: "sparse"; readonly moe: MoeLayout; readonly folded: CheckpointShape }
  | { readonly kind: "unhandled"; readonly pieces: readonly string[] };

const LAYER_NAME = /^((?:.*\.)?(?:layers|h|blocks))\.(\d{1,9})\.(.+)$/;

interface LayerTensors {
  readonly stack: string;
  readonly tensors: Map<string, readonly number[]>;
}

function layersOf(tensors: CheckpointShape): Map<number, LayerTensors> {
  const layers = new Map<number, LayerTensors>();
  for (const [name, shape] of tensors) {
    const m = LAYER_NAME.exec(name);
    if (m === null || m[1] === undefined || m[2] === undefined || m[3] === undefined) continue;
    const i = Number(m[2]);
    const layer = layers.get(i) ?? { stack: m[1], tensors: new Map<string, readonly number[]>() };
    layer.tensors.set(m[3], shape);
    layers.set(i, layer);
  }
  return layers;
}

/** The block name whose `experts.` tensors a layer holds, if any. */
function blockOf(layer: LayerTensors): string | undefined {
  return BLOCKS.find((b) => [...layer.tensors.keys()].some((n) => n.startsWith(`${b}.experts.`)));
}

export function matchMoeLayout(tensors: CheckpointShape): MoeMatch {
  const layers = layersOf(tensors);
  const sparse = [...layers].filter(([, l]) => blockOf(l) !== undefined).sort(([a], [b]) => a - b);
  const [firstSparse] = sparse;
  if (firstSparse === undefined) return { kind: "none" };
  const pieces: string[] = [];
  const block = blockOf(firstSparse[1]) ?? "mlp";
  const inBlock = (l: LayerTensors): Map<string, readonly number[]> =>
    new Map([...l.tensors].filter(([n]) => n.startsWith(`${block}.`)).map(([n, s]) => [n.slice(block.length + 1), s]));

  const names0 = inBlock(firstSparse[1]);
  const router = ROUTERS.find((r) => names0.get(`${r}.weight`)?.length === 2);
  const spelling = EXPERT_SPELLINGS.find((s) => names0.has(`experts.0.${s.gate}.weight`) && names0.has(`experts.0.${s.up}.weight`) && names0.has(`experts.0.${s.down}.weight`));
  const numExperts = new Set([...names0.keys()].flatMap((n) => /^experts\.(\d+)\./.exec(n)?.[1] ?? [])).size;
  const [I = 0, H = 0] = spelling === undefined ? [] : (names0.get(`experts.0.${spelling.gate}.weight`) ?? []);
  if (router === undefined) pieces.push(`no router ${block}.{${ROUTERS.join("|")}}.weight [experts, hidden]`);
  if (spelling === undefined) pieces.push(`experts whose projections are not ${EXPERT_SPELLINGS.map((s) => `{${s.gate},${s.up},${s.down}}`).join(" or ")}`);

  // every sparse layer must hold exactly the router and E experts of the same shapes
  const expected = new Map<string, readonly number[]>();
  if (router !== undefined) expected.set(`${router}.weight`, [numExperts, H]);
  if (spelling !== undefined) {
    for (let e = 0; e < numExperts; e++) {
      expected.set(`experts.${e}.${spelling.gate}.weight`, [I, H]);
      expected.set(`experts.${e}.${spelling.up}.weight`, [I, H]);
      expected.set(`experts.${e}.${spelling.down}.weight`, [H, I]);
    }
  }
  // what → the block's tensors (expert index as {i}) that are it
  const extras = new Map<string, Set<string>>();
  for (const [i, l] of sparse) {
    const names = inBlock(l);
    for (const [n, shape] of names) {
      const want = expected.get(n);
      if (want === undefined) {
        const what = KNOWN_EXTRAS.find((k) => k.pattern.test(n))?.what ?? "tensors FusedMoE has no place for";
        extras.set(what, (extras.get(what) ?? new Set<string>()).add(`${block}.${n.replace(/\.\d+\./, ".{i}.")}`));
      } else if (describeShape(want) !== describeShape(shape)) {
        pieces.push(`layer ${i}'s ${block}.${n} is ${describeShape(shape)}; the block implies ${describeShape(want)}`);
      }
    }
    const lacking = [...expected.keys()].filter((n) => !names.has(n));
    if (lacking.length > 0) pieces.push(`layer ${i}'s ${block} lacks ${lacking.map((n) => `${block}.${n}`).join(", ")}`);
  }
  pieces.push(...[...extras].map(([what, names]) => `${what} (${[...names].join(", ")})`));
  if (pieces.length > 0 || router === undefined || spelling === undefined) return { kind: "unhandled", pieces };

  const folded = new Map([...tensors].filter(([name]) => {
    const m = LAYER_NAME.exec(name);
    return !(m?.[2] !== undefined && sparse.some(([i]) => i === Number(m[2])) && m[3]?.startsWith(`${block}.`));
  }));
  // the stand-in: a dense layer's MLP, or a gated MLP of the experts' shapes
  const dense = [...layers].find(([i]) => !sparse.some(([s]) => s === i));
  const standInName = block === "block_sparse_moe" || block === "moe" ? "mlp" : block;
  const standIn = dense === undefined
    ? new Map<string, readonly number[]>([[`${standInName}.${spelling.gate}.weight`, [I, H]], [`${standInName}.${spelling.up}.weight`, [I, H]], [`${standInName}.${spelling.down}.weight`, [H, I]]])
    : new Map([...dense[1].tensors].filter(([n]) => n.startsWith(`${standInName}.`)));
  for (const [i, l] of sparse) for (const [n, s] of standIn) folded.set(`${l.stack}.${i}.${n}`, s);
  return {
    kind: "sparse",
    moe: { block, router, experts: "experts", expertNames: spelling, numExperts, intermediate: I, sparseLayers: sparse.map(([i]) => i), numLayers: layers.size },
    folded,
  };
}
