/**
 * Sparse mixture of experts as one fused op (vLLM's FusedMoE). The experts' weights are stacked
 * into two parameters under the experts' prefix (e.g. `model.layers.0.mlp.experts`):
 *
 *   w13_weight [E, 2I, H]   per expert: gate_proj rows [0, I), up_proj rows [I, 2I)
 *   w2_weight  [E, H, I]    per expert: down_proj
 *
 * filled from the checkpoint's per-expert tensors through a stacked-parameter map
 * (`FusedMoE.expertParamsMapping`) with shard ids "<expert>:gate|up|down". The router is a
 * separate module (`MoeRouter`, named by its own prefix: `mlp.gate`, `feed_forward.router`),
 * passed to `forward`:
 *
 *   out [T, H] = moe(x [T, H], router [E, H], w13, w2)
 *
 * Tensor parallelism splits every expert's intermediate size I across ranks, as vLLM does.
 */
import type { MoeActivation, MoeRouting } from "../../compiler/ir.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { EXPERTS } from "../config_limits.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import type { ConfigReader } from "../hf_config.ts";
import type { StackedParam } from "./load_weights.ts";
import { Module, type ModelContext } from "./module.ts";
import type { Parameter, WeightLoader } from "./parameter.ts";
import { QuantizedLinearWeights, quantizedFormatFor } from "./quantization/linear_method.ts";
import type { LinearGeometry } from "./quantization/packed_parameter.ts";

export interface FusedMoEOptions {
  readonly numExperts: number;
  readonly topK: number;
  readonly hiddenSize: number;
  /** each expert's intermediate size, before tensor-parallel splitting */
  readonly intermediateSize: number;
  readonly routing: MoeRouting;
  /** default silu */
  readonly activation?: MoeActivation;
}

/** Checkpoint names of one expert's three projections. */
export interface ExpertNames {
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

/** Qwen-MoE, Jamba, OLMoE: experts.N.{gate,up,down}_proj */
export const GATE_UP_DOWN_PROJ: ExpertNames = { gate: "gate_proj", up: "up_proj", down: "down_proj" };
/** Mixtral, MiniMax: experts.N.{w1,w3,w2} (w1 the gate, w3 the up projection) */
export const MIXTRAL_EXPERT_NAMES: ExpertNames = { gate: "w1", up: "w3", down: "w2" };

/** The router's weight [E, H]; kept in f32 whatever the experts' storage, as routing is sensitive to rounding. */
export class MoeRouter extends Module {
  readonly weight: Parameter;
  constructor(
    prefix: string,
    readonly hiddenSize: number,
    readonly numExperts: number,
  ) {
    super(prefix);
    this.weight = this.param("weight", [numExperts, hiddenSize]);
  }

  /** its parameter node in the graph being traced */
  tensor(x: Tensor): Tensor {
    return this.use(x.graph, this.weight);
  }
}

/**
 * The experts each token is routed to (`key`, else `fallback` when the architecture has a default),
 * checked where read: at least one, and no more than the `numExperts` there are (none when 0).
 */
export function parseTopK(c: ConfigReader, key: string, numExperts: number, fallback?: number): number {
  const topK = fallback === undefined ? c.int(key, EXPERTS) : (c.optInt(key, EXPERTS) ?? fallback);
  if (numExperts > 0 && topK > numExperts) throw c.error(key, `is ${topK}, more than the ${numExperts} experts`);
  return topK;
}

function parseShard(shard: string | undefined, numExperts: number): { expert: number; which: keyof ExpertNames } | undefined {
  const m = shard === undefined ? null : /^(\d+):(gate|up|down)$/.exec(shard);
  if (!m) return undefined;
  const expert = Number(m[1]);
  const which = m[2] === "gate" ? "gate" : m[2] === "up" ? "up" : "down";
  return expert < numExperts ? { expert, which } : undefined;
}

export class FusedMoE extends Module {
  readonly w13: Parameter;
  readonly w2: Parameter;
  /** set when the experts are quantized: their packed tensors, dequantized into w13 / w2 after loading */
  readonly quant13: QuantizedLinearWeights | undefined;
  readonly quant2: QuantizedLinearWeights | undefined;
  readonly numExperts: number;
  readonly topK: number;
  readonly hiddenSize: number;
  /** this rank's part of each expert's intermediate size */
  readonly intermediatePerRank: number;
  readonly routing: MoeRouting;
  readonly activation: MoeActivation;

  constructor(prefix: string, opts: FusedMoEOptions, ctx: ModelContext) {
    super(prefix);
    const { numExperts: E, topK, hiddenSize: H, intermediateSize } = opts;
    const { tpSize, tpRank } = ctx.parallel;
    if (!(Number.isInteger(topK) && topK >= 1 && topK <= E)) {
      throw new KilnError("CONFIG_INVALID", `${prefix}: top-k ${topK} must be between 1 and the ${E} experts`);
    }
    if (intermediateSize % tpSize !== 0) {
      throw new KilnError("INVALID_ARGUMENT", `${prefix}: expert intermediate size ${intermediateSize} is not divisible by tensor-parallel size ${tpSize}`);
    }
    const I = intermediateSize / tpSize;
    this.numExperts = E;
    this.topK = topK;
    this.hiddenSize = H;
    this.intermediatePerRank = I;
    this.routing = opts.routing;
    this.activation = opts.activation ?? "silu";

    const shardOf = (p: Parameter, src: { readonly name: string }, shard: string | undefined): { expert: number; which: keyof ExpertNames } => {
      const s = parseShard(shard, E);
      if (!s) throw new KilnError("TENSOR_UNUSED", `tensor '${src.name}' maps to '${p.name}' without a valid expert shard id (${shard})`);
      return s;
    };
    // gate and up: [I_full, H] narrowed to this rank's rows, into rows of [H]
    const load13: WeightLoader = (p, src, shard) => {
      const { expert, which } = shardOf(p, src, shard);
      if (which === "down") throw new KilnError("TENSOR_UNUSED", `tensor '${src.name}' is a down projection but maps to '${p.name}'`);
      const rowStart = expert * 2 * I + (which === "up" ? I : 0);
      p.fill(src, { rowStart, rows: I, rowShape: [H] }, { dim: 0, start: tpRank * I, size: I }, shard!);
    };
    // down: [H, I_full] narrowed to this rank's columns, into rows of [I]
    const load2: WeightLoader = (p, src, shard) => {
      const { expert, which } = shardOf(p, src, shard);
      if (which !== "down") throw new KilnError("TENSOR_UNUSED", `tensor '${src.name}' is a ${which} projection but maps to '${p.name}'`);
      p.fill(src, { rowStart: expert * H, rows: H, rowShape: [I] }, { dim: 1, start: tpRank * I, size: I }, shard!);
    };
    const experts = Array.from({ length: E }, (_, e) => e);
    // Quantized experts: every expert's projection is a linear layer stacked along the output,
    // w13 as [E·2I, H] (shard e:gate at rows e·2I, e:up at e·2I + I) and w2 as [E·H, I] with the
    // intermediate (input) narrowed to this rank; the checkpoint's experts.N.gate_proj.qweight
    // stacks into experts.w13_qweight through the same expert map.
    const iFull = intermediateSize;
    const geometry13: LinearGeometry = {
      prefix,
      outPerRank: E * 2 * I,
      inPerRank: H,
      fullIn: H,
      inStart: 0,
      shards: experts.flatMap((e) => [
        { id: `${e}:gate`, dstStart: e * 2 * I, rows: I, srcStart: tpRank * I, srcRows: iFull },
        { id: `${e}:up`, dstStart: e * 2 * I + I, rows: I, srcStart: tpRank * I, srcRows: iFull },
      ]),
    };
    const geometry2: LinearGeometry = {
      prefix,
      outPerRank: E * H,
      inPerRank: I,
      fullIn: iFull,
      inStart: tpRank * I,
      shards: experts.map((e) => ({ id: `${e}:down`, dstStart: e * H, rows: H, srcStart: 0, srcRows: H })),
    };
    const format13 = quantizedFormatFor(ctx.quantization, geometry13);
    const format2 = quantizedFormatFor(ctx.quantization, geometry2);
    this.quant13 = format13 && new QuantizedLinearWeights(format13, geometry13, ctx.weightStorage, { tensorPrefix: "w13_", weightShape: [E, 2 * I, H] });
    this.quant2 = format2 && new QuantizedLinearWeights(format2, geometry2, ctx.weightStorage, { tensorPrefix: "w2_", weightShape: [E, H, I] });
    this.w13 = this.quant13?.weight ?? this.param("w13_weight", [E, 2 * I, H], ctx.weightStorage, load13, experts.flatMap((e) => [`${e}:gate`, `${e}:up`]));
    this.w2 = this.quant2?.weight ?? this.param("w2_weight", [E, H, I], ctx.weightStorage, load2, experts.map((e) => `${e}:down`));
  }

  /**
   * The stacked-parameter map from per-expert checkpoint tensors to the stacked parameters, for
   * experts living under `<block>.<expertsName>` (vLLM's make_expert_params_mapping).
   */
  static expertParamsMapping(numExperts: number, names: ExpertNames = GATE_UP_DOWN_PROJ, expertsName = "experts"): StackedParam[] {
    const out: StackedParam[] = [];
    for (let e = 0; e < numExperts; e++) {
      out.push({ param: `.${expertsName}.w13_`, checkpoint: `.${expertsName}.${e}.${names.gate}.`, shard: `${e}:gate` });
      out.push({ param: `.${expertsName}.w13_`, checkpoint: `.${expertsName}.${e}.${names.up}.`, shard: `${e}:up` });
      out.push({ param: `.${expertsName}.w2_`, checkpoint: `.${expertsName}.${e}.${names.down}.`, shard: `${e}:down` });
    }
    return out;
  }

  /** x [T, H] → [T, H]: the weighted sum of each token's top-k experts. */
  forward(x: Tensor, router: MoeRouter): Tensor {
    const g = x.graph;
    return this.scoped(g, () => {
      x.expectF32("fused experts input");
      x.expect([x.shape[0]!, this.hiddenSize], "fused experts input");
      if (router.numExperts !== this.numExperts || router.hiddenSize !== this.hiddenSize) {
        g.fail(`router [${router.numExperts}, ${router.hiddenSize}] does not fit ${this.numExperts} experts of hidden size ${this.hiddenSize}`);
      }
      const r = router.tensor(x);
      const w13 = this.use(g, this.w13);
      const w2 = this.use(g, this.w2);
      return g.add({
        kind: "moe",
        x: x.id,
        router: r.id,
        w13: w13.id,
        w2: w2.id,
        numExperts: this.numExperts,
        topK: this.topK,
        intermediateSize: this.intermediatePerRank,
        routing: this.routing,
        activation: this.activation,
        shape: x.shape,
        dtype: "f32",
      });
    });
  }
}

export interface SparseMoeBlockOptions extends FusedMoEOptions {
  /** the router's name under the block (default "gate"; Jamba: "router") */
  readonly routerName?: string;
  /** the experts' name under the block (default "experts") */
  readonly expertsName?: string;
}

/** A router and its experts under one block prefix (`model.layers.3.mlp`): x [T, H] → [T, H]. */
export class SparseMoeBlock extends Module {
  readonly router: MoeRouter;
  readonly experts: FusedMoE;
  constructor(prefix: string, opts: SparseMoeBlockOptions, ctx: ModelContext) {
    super(prefix);
    this.router = new MoeRouter(this.join(opts.routerName ?? "gate"), opts.hiddenSize, opts.numExperts);
    this.experts = new FusedMoE(this.join(opts.expertsName ?? "experts"), opts, ctx);
  }

  forward(x: Tensor): Tensor {
    return this.scoped(x.graph, () => this.experts.forward(x, this.router));
  }
}
