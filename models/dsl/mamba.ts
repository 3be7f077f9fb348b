/**
 * Mamba mixers: the selective state-space layers of Mamba-1 (also Jamba's) and Mamba-2 (also
 * Bamba's), built from ordinary nodes around two stateful custom ops. A mixer is mamba-like:
 * each sequence keeps two fixed-size states, updated in place at every step (vLLM's
 * get_state_shape):
 *
 *   `<prefix>.conv1d` "conv"  [L − 1, convDim]   the causal conv's last L − 1 inputs
 *   `<prefix>`        "ssm"   [I, N]  (Mamba-1)  or [H, P, N] (Mamba-2)
 *
 * Mamba-1:  x, z = in_proj(h)                          // [T, I] each
 *           u = silu(conv1d(x))
 *           dt, B, C = x_proj(u)                       // [T, R], [T, N], [T, N]
 *           (Jamba: dt, B, C each RMS-normalized)
 *           y = selective_scan(u, dt_proj(dt), A_log, B, C, D, z)
 *           out_proj(y)
 *
 * Mamba-2:  z, xBC, dt = in_proj(h)                    // [T, I], [T, I + 2GN], [T, H]
 *           x, B, C = silu(conv1d(xBC))
 *           y = ssd_scan(x, dt, dt_bias, A_log, B, C, D)
 *           out_proj(norm(y · silu(z)))               // gated RMS norm over the whole row
 *
 * The checkpoint names are HF's (`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`,
 * `dt_bias`, `norm`, `out_proj`). Tensor-parallel size 1 only: in_proj's concatenated outputs
 * would need per-part sharding, as vLLM's MambaMixer2 does, before they can be split across ranks.
 */
import type { StateTensorSpec } from "../../compiler/ir.ts";
import type { Tensor } from "../../compiler/trace.ts";
import { KilnError } from "../../runtime/engine/errors.ts";
import { HEADS, WIDTH } from "../config_limits.ts";
import type { ConfigReader } from "../hf_config.ts";
import { ColumnParallelLinear, ReplicatedLinear, RowParallelLinear } from "./linear.ts";
import { Module, type ModelContext } from "./module.ts";
import { RMSNorm } from "./norm.ts";
import type { Parameter } from "./parameter.ts";
import { CausalShortConv } from "./short_conv.ts";

function singleRank(prefix: string, ctx: ModelContext): void {
  if (ctx.parallel.tpSize !== 1) {
    throw new KilnError("INVALID_ARGUMENT", `${prefix}: mamba layers run at tensor-parallel size 1 (asked for ${ctx.parallel.tpSize})`);
  }
}

export interface MambaMixerOptions {
  readonly hiddenSize: number;
  /** I = expand · hidden */
  readonly intermediateSize: number;
  /** N */
  readonly stateSize: number;
  /** L */
  readonly convKernel: number;
  /** R, the rank of the step-size projection */
  readonly dtRank: number;
  readonly convBias: boolean;
  /** bias on in_proj and out_proj */
  readonly projBias: boolean;
  /** Jamba: RMS norms on dt, B and C (dt_layernorm, b_layernorm, c_layernorm) with this eps */
  readonly innerNormEps?: number;
}

/** Mamba-1's mixer (HF MambaMixer, JambaMambaMixer). */
export class MambaMixer extends Module {
  readonly inProj: ColumnParallelLinear;
  readonly conv1d: CausalShortConv;
  readonly xProj: ReplicatedLinear;
  readonly dtProj: ColumnParallelLinear;
  readonly aLog: Parameter;
  readonly d: Parameter;
  readonly outProj: RowParallelLinear;
  readonly dtLayernorm: RMSNorm | undefined;
  readonly bLayernorm: RMSNorm | undefined;
  readonly cLayernorm: RMSNorm | undefined;

  constructor(
    prefix: string,
    readonly opts: MambaMixerOptions,
    ctx: ModelContext,
  ) {
    super(prefix);
    singleRank(prefix, ctx);
    const { hiddenSize: H, intermediateSize: I, stateSize: N, dtRank: R } = opts;
    this.inProj = new ColumnParallelLinear(this.join("in_proj"), H, 2 * I, ctx, { bias: opts.projBias });
    this.conv1d = new CausalShortConv(this.join("conv1d"), I, opts.convKernel, { bias: opts.convBias });
    this.xProj = new ReplicatedLinear(this.join("x_proj"), I, R + 2 * N, ctx);
    this.dtProj = new ColumnParallelLinear(this.join("dt_proj"), R, I, ctx, { bias: true });
    this.aLog = this.param("A_log", [I, N]);
    this.d = this.param("D", [I]);
    this.outProj = new RowParallelLinear(this.join("out_proj"), I, H, ctx, { bias: opts.projBias });
    const eps = opts.innerNormEps;
    this.dtLayernorm = eps === undefined ? undefined : new RMSNorm(this.join("dt_layernorm"), R, eps);
    this.bLayernorm = eps === undefined ? undefined : new RMSNorm(this.join("b_layernorm"), N, eps);
    this.cLayernorm = eps === undefined ? undefined : new RMSNorm(this.join("c_layernorm"), N, eps);
  }

  /** The SSM state of one sequence: "ssm" [I, N], f32 (the conv's state is declared by conv1d). */
  static stateTensors(intermediateSize: number, stateSize: number): StateTensorSpec[] {
    return [{ name: "ssm", shape: [intermediateSize, stateSize], dtype: "f32" }];
  }

  forward(h: Tensor): Tensor {
    const g = h.graph;
    return this.scoped(g, () => {
      const { intermediateSize: I, stateSize: N, dtRank: R } = this.opts;
      const [x, z] = this.inProj.forward(h).split([I, I]);
      const u = this.conv1d.forward(x!).silu();
      let [dt, b, c] = this.xProj.forward(u).split([R, N, N]) as [Tensor, Tensor, Tensor];
      if (this.dtLayernorm && this.bLayernorm && this.cLayernorm) {
        dt = this.dtLayernorm.forward(dt);
        b = this.bLayernorm.forward(b);
        c = this.cLayernorm.forward(c);
      }
      const delta = this.dtProj.forward(dt);
      g.registerStateLayer({ stateKey: this.prefix, tensors: MambaMixer.stateTensors(I, N) });
      const y = g.add({
        kind: "selective_scan",
        u: u.id,
        delta: delta.id,
        aLog: this.use(g, this.aLog).id,
        b: b.id,
        c: c.id,
        d: this.use(g, this.d).id,
        z: z!.id,
        stateKey: this.prefix,
        stateSize: N,
        shape: u.shape,
        dtype: "f32",
      });
      return this.outProj.forward(y);
    });
  }
}

export interface Mamba2MixerOptions {
  readonly hiddenSize: number;
  /** H heads of P channels: I = H · P */
  readonly numHeads: number;
  readonly headDim: number;
  /** G groups of B and C */
  readonly numGroups: number;
  /** N */
  readonly stateSize: number;
  /** L */
  readonly convKernel: number;
  readonly convBias: boolean;
  /** bias on in_proj and out_proj */
  readonly projBias: boolean;
  /** eps of the gated RMS norm */
  readonly normEps: number;
  /** the step size is clamped to [dtMin, dtMax] after softplus (HF time_step_limit) */
  readonly dtMin: number;
  readonly dtMax: number | undefined;
}

/** Mamba-2's mixer (HF Mamba2Mixer, BambaMixer). */
export class Mamba2Mixer extends Module {
  readonly inProj: ColumnParallelLinear;
  readonly conv1d: CausalShortConv;
  readonly dtBias: Parameter;
  readonly aLog: Parameter;
  readonly d: Parameter;
  readonly norm: RMSNorm;
  readonly outProj: RowParallelLinear;
  readonly intermediateSize: number;
  readonly convDim: number;

  constructor(
    prefix: string,
    readonly opts: Mamba2MixerOptions,
    ctx: ModelContext,
  ) {
    super(prefix);
    singleRank(prefix, ctx);
    const { hiddenSize, numHeads: H, headDim: P, numGroups: G, stateSize: N } = opts;
    if (!(Number.isInteger(G) && G >= 1 && H % G === 0)) {
      throw new KilnError("CONFIG_INVALID", `${prefix}: ${G} groups do not divide ${H} heads`);
    }
    const I = H * P;
    this.intermediateSize = I;
    this.convDim = I + 2 * G * N;
    this.inProj = new ColumnParallelLinear(this.join("in_proj"), hiddenSize, I + this.convDim + H, ctx, { bias: opts.projBias });
    this.conv1d = new CausalShortConv(this.join("conv1d"), this.convDim, opts.convKernel, { bias: opts.convBias });
    this.dtBias = this.param("dt_bias", [H]);
    this.aLog = this.param("A_log", [H]);
    this.d = this.param("D", [H]);
    // HF normalizes the gated output over the whole row (not per group)
    this.norm = new RMSNorm(this.join("norm"), I, opts.normEps);
    this.outProj = new RowParallelLinear(this.join("out_proj"), I, hiddenSize, ctx, { bias: opts.projBias });
  }

  /** The SSM state of one sequence: "ssm" [H, P, N], f32 (the conv's state is declared by conv1d). */
  static stateTensors(numHeads: number, headDim: number, stateSize: number): StateTensorSpec[] {
    return [{ name: "ssm", shape: [numHeads, headDim, stateSize], dtype: "f32" }];
  }

  forward(h: Tensor): Tensor {
    const g = h.graph;
    return this.scoped(g, () => {
      const { numHeads: H, headDim: P, numGroups: G, stateSize: N } = this.opts;
      const I = this.intermediateSize;
      const [z, xBC, dt] = this.inProj.forward(h).split([I, this.convDim, H]) as [Tensor, Tensor, Tensor];
      const [x, b, c] = this.conv1d.forward(xBC).silu().split([I, G * N, G * N]) as [Tensor, Tensor, Tensor];
      g.registerStateLayer({ stateKey: this.prefix, tensors: Mamba2Mixer.stateTensors(H, P, N) });
      const y = g.add({
        kind: "ssd_scan",
        x: x.id,
        dt: dt.id,
        dtBias: this.use(g, this.dtBias).id,
        aLog: this.use(g, this.aLog).id,
        b: b.id,
        c: c.id,
        d: this.use(g, this.d).id,
        stateKey: this.prefix,
        numHeads: H,
        headDim: P,
        numGroups: G,
        stateSize: N,
        dtMin: this.opts.dtMin,
        dtMax: this.opts.dtMax,
        shape: x.shape,
        dtype: "f32",
      });
      return this.outProj.forward(this.norm.forward(y.mul(z.silu())));
    });
  }
}

/** HF's time_step_limit [min, max] (max may be Infinity): the clamp of the step size. */
export function timeStepLimit(limit: readonly number[] | undefined): { dtMin: number; dtMax: number | undefined } {
  if (limit === undefined) return { dtMin: 0, dtMax: undefined };
  const [lo = 0, hi = Infinity] = limit;
  return { dtMin: Math.max(0, lo), dtMax: Number.isFinite(hi) ? hi : undefined };
}

/** The rank R of Mamba-1's step-size projection (`key`): an integer, or "auto" / absent for ceil(hidden / 16). */
export function parseDtRank(c: ConfigReader, key: string, hiddenSize: number): number {
  if (c.raw[key] === "auto") return Math.ceil(hiddenSize / 16);
  return c.optInt(key, WIDTH) ?? Math.ceil(hiddenSize / 16);
}

/** Mamba-2's B/C groups (`key`, default 1): each group serves a whole set of heads. */
export function ssmGroups(c: ConfigReader, key: string, numHeads: number): number {
  const groups = c.optInt(key, HEADS) ?? 1;
  if (numHeads % groups !== 0) throw c.error(key, `is ${groups}, which does not divide the ${numHeads} SSM heads`);
  return groups;
}

/**
 * `time_step_limit` ([min, max] clamp of dt; max may be Infinity) read from a config and checked
 * there: a NaN or inverted range would otherwise reach the kernels as a constant.
 */
export function parseTimeStepLimit(c: ConfigReader, key = "time_step_limit"): { dtMin: number; dtMax: number | undefined } {
  const limit = c.optFloatList(key);
  const [lo = 0, hi = Infinity] = limit ?? [];
  if (limit !== undefined && (limit.length > 2 || !(Number.isFinite(lo) && hi > lo))) {
    throw c.error(key, `must be [min, max] with a finite min below max, got [${limit.join(", ")}]`);
  }
  return timeStepLimit(limit);
}
