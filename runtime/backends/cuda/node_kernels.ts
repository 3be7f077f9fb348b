/**
 * How the IR nodes the compiled program leaves to the runtime run on the GPU: GEMMs (cuBLASLt,
 * or the GEMV for a few rows) and the custom ops (paged attention, MoE, the state-space mixers),
 * each with its hand-written kernel and launch shape. Every other node runs inside a fused kernel
 * of the program (runtime/backends/cuda/fused_plan.ts). One exhaustive switch over node kinds, so a new
 * kind does not compile until it says where it runs.
 */
import { assertNever, numel, type Graph, type Node, type NodeOf, type SymbolicDim, type ValueId } from "../../../compiler/ir.ts";
import { stateName } from "../state_layers.ts";
import type { CudaBackend } from "./backend.ts";
import type { DevicePtr } from "./device.ts";
import { ROUND_KERNELS } from "./device_dtype.ts";
import type { KernelName } from "./kernel_catalog.ts";
import { strideGrid } from "./kernels.ts";
import type { DeviceStatePool } from "./state_pool.ts";
import type { PackedStep } from "./step_inputs.ts";
import { isHalf, type FloatDtype, type KvDtype } from "../../../compiler/dtype.ts";

/** The paged attention kernel's limit on head size. */
export const MAX_HEAD_DIM = 256;
/** "no sliding window" for the kernel: a window wider than any position */
const NO_WINDOW = 2 ** 30;
/** the per-tensor K and V scale of an fp8 (e4m3) cache: 1, as vLLM's default when a checkpoint has none */
export const FP8_KV_SCALE = 1;
export const MAX_ATTENTION_SPLITS = 32;
/** query heads of one KV head that a paged-attention block serves (KILN_ATTN_GROUP) */
export const ATTENTION_GROUP = 4;


/** The paged-attention grid's x extent: each KV head's query heads in groups of ATTENTION_GROUP. */
export function attentionHeadBlocks(numHeads: number, numKvHeads: number): number {
  return numKvHeads * Math.ceil(numHeads / numKvHeads / ATTENTION_GROUP);
}
/** The experts kernels' routing limits (kernels/cuda/moe_experts.cu). */
export const MOE_MAX_EXPERTS = 256;
export const MOE_MAX_TOPK = 32;
/**
 * Linears with at most this many rows (T or S at run time: decode steps of up to 8 sequences)
 * run as GEMVs (kernels/cuda/gemv.cu), the rest through cuBLASLt. Also the GEMV kernel's limit.
 */
export const GEMV_MAX_ROWS = 8;
const GEMV_WARPS_PER_BLOCK = 8;

/** The paged-attention entry points by the cache's storage and softcap. */
export const ATTENTION_KERNELS = {
  f32: { plain: "kiln_paged_attention", softcap: "kiln_paged_attention_softcap" },
  bf16: { plain: "kiln_paged_attention_bf16", softcap: "kiln_paged_attention_softcap_bf16" },
  f16: { plain: "kiln_paged_attention_f16", softcap: "kiln_paged_attention_softcap_f16" },
  // the fp8 entry points take the layer's kScale and vScale after the shared arguments
  fp8: { plain: "kiln_paged_attention_fp8", softcap: "kiln_paged_attention_softcap_fp8" },
} as const satisfies Record<KvDtype, Record<"plain" | "softcap", KernelName>>;

const GEMV_KERNELS = { f32: "kiln_gemv_f32", bf16: "kiln_gemv_bf16", f16: "kiln_gemv_f16" } as const satisfies Record<FloatDtype, KernelName>;
/** The experts kernels by the storage of the expert weights (w13 and w2 share it: both are weight matrices). */
const MOE_KERNELS = {
  f32: { act: "kiln_moe_act", down: "kiln_moe_down" },
  bf16: { act: "kiln_moe_act_bf16", down: "kiln_moe_down_bf16" },
  f16: { act: "kiln_moe_act_f16", down: "kiln_moe_down_f16" },
} as const satisfies Record<FloatDtype, { act: KernelName; down: KernelName }>;

/**
 * The GEMV's launch for out[M, N] = x[M, K] · W[N, K]ᵀ. A warp takes C = 8 / R columns (R = M
 * rounded up to a power of two); `split` warps share them (their K range interleaved in 16-byte
 * chunks), doubled from 1 while the warps would not fill every multiprocessor (32 resident warps
 * each) and each warp would keep at least 256 elements of K; 8 / split warp groups per 256-thread
 * block.
 */
export function gemvLaunch(M: number, N: number, K: number, multiprocessors: number): { grid: [number, number, number]; block: [number, number, number]; split: number } {
  if (!Number.isInteger(M) || M < 1 || M > GEMV_MAX_ROWS) throw new RangeError(`the GEMV takes 1 to ${GEMV_MAX_ROWS} rows, got ${M}`);
  const columnsPerWarp = 8 / 2 ** Math.ceil(Math.log2(M));
  const warpGroups = Math.ceil(N / columnsPerWarp);
  let split = 1;
  while (split < GEMV_WARPS_PER_BLOCK && warpGroups * split < multiprocessors * 32 && K >= 512 * split) split *= 2;
  const columnsPerBlock = columnsPerWarp * (GEMV_WARPS_PER_BLOCK / split);
  return { grid: [Math.ceil(N / columnsPerBlock), 1, 1], block: [32 * GEMV_WARPS_PER_BLOCK, 1, 1], split };
}

/** The short-conv and lightning-attention kernels' limits (kernels/cuda/short_conv.cu, linear_attention.cu). */
export const SHORT_CONV_MAX_KERNEL = 16;
export const LINEAR_ATTENTION_MAX_HEAD_DIM = 256;
/** The Mamba scan kernels' limit on the SSM state size N (kernels/cuda/mamba_scan.cu). */
export const MAMBA_SCAN_MAX_STATE = 256;
/** channels (one warp each) per block of kiln_ssd_scan (KILN_SSD_WARPS) */
export const SSD_SCAN_WARPS = 4;
/** ssd_scan with no upper Δ limit: a finite f32 above any softplus the kernel can produce */
const NO_DT_MAX = 3.4e38;

/** Scratch the experts kernels need for T tokens: routes and the [T, K, I] activations. */
export function moeScratchBytes(n: NodeOf<"moe">, T: number): number {
  return T * n.topK * (2 + n.intermediateSize) * 4;
}

/** When decode-like steps split attention along the keys. */
export interface AttentionTuning {
  /** split only when some query attends at least this many keys */
  readonly minKeysToSplit: number;
  /** aim for this many keys per split */
  readonly keysPerSplit: number;
}

/**
 * A split of 128 keys is one 32-key tile for each of a block's 4 warps. At batch 1 a decode step
 * has only numKvHeads · groupBlocks blocks (8 for Llama-3.2-1B against 132 SMs), so splitting
 * from about 128 keys on, rather than from 512, is what puts the other SMs to work on short and
 * medium contexts; the combine kernel costs one small launch.
 */
export const DEFAULT_ATTENTION_TUNING: AttentionTuning = { minKeysToSplit: 128, keysPerSplit: 128 };

/**
 * Splits along the keys: 1 when the step already has enough (query, head-group) blocks to fill
 * the device or its contexts are short; else enough splits to fill it, at most one per
 * keysPerSplit keys and MAX_ATTENTION_SPLITS. `headBlocks` is attentionHeadBlocks(…).
 */
export function attentionSplits(T: number, headBlocks: number, maxKeys: number, multiprocessors: number, tuning: AttentionTuning): number {
  const blocks = T * headBlocks;
  if (maxKeys < tuning.minKeysToSplit || blocks >= 2 * multiprocessors) return 1;
  const byKeys = Math.ceil(maxKeys / tuning.keysPerSplit);
  const toFill = Math.ceil((2 * multiprocessors) / blocks);
  return Math.max(1, Math.min(MAX_ATTENTION_SPLITS, byKeys, toFill));
}

/**
 * Scratch for an attention layer's split partials [rows, numHeads, MAX_ATTENTION_SPLITS, headDim + 2]
 * f32 in steps of up to T tokens: splits happen only in steps of fewer than 2·SMs blocks.
 */
export function attentionScratchBytes(n: NodeOf<"attention">, T: number, multiprocessors: number): number {
  const rows = Math.min(T, Math.ceil((2 * multiprocessors) / attentionHeadBlocks(n.numHeads, n.numKvHeads)));
  return rows * n.numHeads * MAX_ATTENTION_SPLITS * (n.headDim + 2) * 4;
}

export interface KvPoolLayer {
  readonly k: DevicePtr;
  readonly v: DevicePtr;
}

/** What one step's launches read: device pointers of values and inputs, sizes, scratch. */
export interface StepFrame {
  readonly sizes: Readonly<Record<SymbolicDim, number>>;
  readonly packed: PackedStep;
  /** device address of the packed step inputs */
  readonly inputs: DevicePtr;
  /** attention partials: [T, numHeads, MAX_ATTENTION_SPLITS, headDim + 2] f32 for the widest layer */
  readonly scratch: DevicePtr;
  /** room for the largest GEMM input as 16-bit floats */
  readonly cast: DevicePtr;
  ptr(id: ValueId): DevicePtr;
}

export class NodeKernels {
  /**
   * KV layers whose step k/v a fused kernel of the compiled program writes (with the rotary, when
   * there is one) before attention runs: every layer, as the fusion pass puts each attention's KV
   * write in a kernel (compiler/passes/fusion_graph.ts); attention only reads the cache, and
   * the executor refuses a program that leaves a layer unwritten.
   */
  readonly kvWrittenByFusedKernels = new Set<string>();
  constructor(
    private readonly backend: CudaBackend,
    private readonly graph: Graph,
    private readonly kvPool: ReadonlyMap<string, KvPoolLayer>,
    private readonly blockSize: number,
    private readonly tuning: AttentionTuning,
    /** how a parameter is held on the device */
    private readonly dtypeOf: (param: ValueId) => FloatDtype,
    /** mamba-like layers' per-sequence state and each lightning layer's decays exp(−slope) [heads] */
    private readonly mixers: { readonly pool: DeviceStatePool | undefined; readonly decays: ReadonlyMap<ValueId, DevicePtr> },
    /** linears of at most this many rows run as GEMVs; 0 sends every linear to cuBLASLt */
    private readonly gemvMaxRows: number = GEMV_MAX_ROWS,
    private readonly kvDtype: KvDtype = "f32",
  ) {
    if (!Number.isInteger(gemvMaxRows) || gemvMaxRows < 0 || gemvMaxRows > GEMV_MAX_ROWS) {
      throw new RangeError(`gemvMaxRows must be an integer in [0, ${GEMV_MAX_ROWS}], got ${gemvMaxRows}`);
    }
  }

  private shapeOf(id: ValueId): Node["shape"] {
    const n = this.graph.nodes[id];
    if (n === undefined) throw new Error(`no value ${id}`);
    return n.shape;
  }

  run(n: Node, f: StepFrame): void {
    const k = this.backend.kernels;
    const rows = numel(n.shape.slice(0, -1), f.sizes);
    const count = numel(n.shape, f.sizes);
    const last = (shape: Node["shape"]): number => numel(shape.slice(-1), f.sizes);
    if (count === 0) return;
    switch (n.kind) {
      case "linear": {
        const N = last(n.shape);
        const K = last(this.shapeOf(n.x));
        if (rows <= this.gemvMaxRows) return this.gemv(n, f, rows, N, K);
        // the bias (f32) comes in through cuBLASLt's bias epilogue where it has one for the shape
        const bias = n.bias === undefined ? undefined : f.ptr(n.bias);
        let added: boolean;
        const wDtype = this.dtypeOf(n.weight);
        if (isHalf(wDtype)) {
          // bf16 × bf16 (or f16 × f16) → fp32: the activations are rounded to the weights' format first
          k.launch(ROUND_KERNELS[wDtype], strideGrid(rows * K), [256, 1, 1], [f.cast, f.ptr(n.x), rows * K]);
          added = this.backend.blas.matmul(wDtype, f.ptr(n.id), f.cast, f.ptr(n.weight), rows, N, K, bias);
        } else {
          added = this.backend.blas.matmul("f32", f.ptr(n.id), f.ptr(n.x), f.ptr(n.weight), rows, N, K, bias);
        }
        // shapes cuBLASLt has no bias-epilogue algorithm for: the bias [N] added over the rows, in place
        if (bias !== undefined && !added) k.launch("kiln_add", strideGrid(count), [256, 1, 1], [f.ptr(n.id), f.ptr(n.id), bias, count, N]);
        return;
      }
      case "attention":
        return this.attention(n, f);
      case "moe":
        return this.moe(n, f, rows, last(n.shape));
      case "short_conv":
        return this.shortConv(n, f);
      case "linear_attention":
        return this.linearAttention(n, f);
      case "selective_scan":
        return this.selectiveScan(n, f);
      case "ssd_scan":
        return this.ssdScan(n, f);
      case "input":
      case "param":
      case "embedding":
      case "rms_norm":
      case "layer_norm":
      case "binary":
      case "unary":
      case "scale":
      case "slice":
      case "gather_rows":
      case "rope":
        throw new Error(`${n.kind} node ${n.id} runs inside a fused kernel of the compiled program, not on its own`);
      default:
        return assertNever(n, "node kind");
    }
  }

  /**
   * A linear of few rows as one GEMV launch, bias fused. With 16-bit weights the kernel rounds x
   * to their format as it reads it, so it computes from the same inputs as the cast + GEMM path.
   */
  private gemv(n: NodeOf<"linear">, f: StepFrame, M: number, N: number, K: number): void {
    const { grid, block, split } = gemvLaunch(M, N, K, this.backend.device.info.multiprocessors);
    const name = GEMV_KERNELS[this.dtypeOf(n.weight)];
    const bias = n.bias === undefined ? f.ptr(n.weight) : f.ptr(n.bias);
    this.backend.kernels.launch(name, grid, block, [f.ptr(n.id), f.ptr(n.x), f.ptr(n.weight), bias, n.bias === undefined ? 0 : 1, M, N, K, split]);
  }

  /** routes into the scratch ([T, K] experts, [T, K] weights, [T, K, I] h), then the experts */
  private moe(n: NodeOf<"moe">, f: StepFrame, T: number, H: number): void {
    const k = this.backend.kernels;
    const [E, K, I] = [n.numExperts, n.topK, n.intermediateSize];
    const experts = f.scratch;
    const weights = experts + BigInt(T * K * 4);
    const h = weights + BigInt(T * K * 4);
    k.launch("kiln_moe_route", [T, 1, 1], [128, 1, 1], [experts, weights, f.ptr(n.x), f.ptr(n.router), T, H, E, K, n.routing === "softmax_topk_renorm" ? 1 : 0]);
    const wDtype = this.dtypeOf(n.w13);
    if (this.dtypeOf(n.w2) !== wDtype) throw new Error(`moe weights stored as ${wDtype} and ${this.dtypeOf(n.w2)}`);
    const kernels = MOE_KERNELS[wDtype];
    k.launch(kernels.act, [T * K, 1, 1], [128, 1, 1], [h, f.ptr(n.x), f.ptr(n.w13), experts, T, H, I, K]);
    k.launch(kernels.down, [T, 1, 1], [128, 1, 1], [f.ptr(n.id), h, f.ptr(n.w2), experts, weights, T, H, I, K]);
  }

  private stateOf(key: string, tensor: string, f: StepFrame): { state: DevicePtr; qsl: DevicePtr; slots: DevicePtr } {
    const pool = this.mixers.pool;
    if (pool === undefined) throw new Error(`no device state pool for '${key}'`);
    const { layout } = f.packed;
    return { state: pool.buffer(stateName(key, tensor)), qsl: f.inputs + BigInt(layout.queryStartLoc * 4), slots: f.inputs + BigInt(layout.stateSlots * 4) };
  }

  private shortConv(n: NodeOf<"short_conv">, f: StepFrame): void {
    const { state, qsl, slots } = this.stateOf(n.stateKey, "conv", f);
    const S = f.packed.numSeqs;
    const D = numel(n.shape.slice(-1), f.sizes);
    const bias = n.bias === undefined ? f.ptr(n.weight) : f.ptr(n.bias);
    this.backend.kernels.launch("kiln_short_conv", [S, Math.ceil(D / 128), 1], [128, 1, 1], [
      f.ptr(n.id),
      f.ptr(n.x),
      f.ptr(n.weight),
      bias,
      n.bias === undefined ? 0 : 1,
      state,
      qsl,
      slots,
      S,
      D,
      n.kernelSize,
    ]);
  }

  private linearAttention(n: NodeOf<"linear_attention">, f: StepFrame): void {
    const { state, qsl, slots } = this.stateOf(n.stateKey, "kv", f);
    const decays = this.mixers.decays.get(n.id);
    if (decays === undefined) throw new Error(`linear attention node ${n.id} has no decays on the device`);
    const S = f.packed.numSeqs;
    const block = Math.ceil(n.headDim / 32) * 32;
    this.backend.kernels.launch("kiln_linear_attention", [S, n.numHeads, 1], [block, 1, 1], [
      f.ptr(n.id),
      f.ptr(n.qkv),
      state,
      decays,
      qsl,
      slots,
      S,
      n.numHeads,
      n.headDim,
    ]);
  }

  /** one thread per (sequence, channel), 128 channels a block */
  private selectiveScan(n: NodeOf<"selective_scan">, f: StepFrame): void {
    const { state, qsl, slots } = this.stateOf(n.stateKey, "ssm", f);
    const S = f.packed.numSeqs;
    const I = numel(n.shape.slice(-1), f.sizes);
    this.backend.kernels.launch("kiln_selective_scan", [S, Math.ceil(I / 128), 1], [128, 1, 1], [
      f.ptr(n.id),
      f.ptr(n.u),
      f.ptr(n.delta),
      f.ptr(n.aLog),
      f.ptr(n.b),
      f.ptr(n.c),
      f.ptr(n.d),
      f.ptr(n.z),
      state,
      qsl,
      slots,
      S,
      I,
      n.stateSize,
    ]);
  }

  /** one thread per (sequence, head, channel); a block covers up to 128 channels of one head */
  private ssdScan(n: NodeOf<"ssd_scan">, f: StepFrame): void {
    const { state, qsl, slots } = this.stateOf(n.stateKey, "ssm", f);
    const S = f.packed.numSeqs;
    this.backend.kernels.launch("kiln_ssd_scan", [S, n.numHeads, Math.ceil(n.headDim / SSD_SCAN_WARPS)], [32 * SSD_SCAN_WARPS, 1, 1], [
      f.ptr(n.id),
      f.ptr(n.x),
      f.ptr(n.dt),
      f.ptr(n.dtBias),
      f.ptr(n.aLog),
      f.ptr(n.b),
      f.ptr(n.c),
      f.ptr(n.d),
      state,
      qsl,
      slots,
      S,
      n.numHeads,
      n.headDim,
      n.numGroups,
      n.stateSize,
      n.dtMin,
      n.dtMax ?? NO_DT_MAX,
    ]);
  }

  private attention(n: NodeOf<"attention">, f: StepFrame): void {
    const k = this.backend.kernels;
    const layer = this.kvPool.get(n.cacheKey);
    if (layer === undefined) throw new Error(`no KV pool for '${n.cacheKey}'`);
    const { packed } = f;
    const T = packed.T;
    const at = (offset: number): DevicePtr => f.inputs + BigInt(offset * 4);
    // the step's k/v are in the cache already: a fused kernel of the program wrote them (kvWrittenByFusedKernels)
    const headBlocks = attentionHeadBlocks(n.numHeads, n.numKvHeads);
    const splits = attentionSplits(T, headBlocks, packed.maxKeys(n.slidingWindow), this.backend.device.info.multiprocessors, this.tuning);
    const variant = n.softcap === undefined ? "plain" : "softcap";
    const args = [
      f.ptr(n.id),
      f.scratch,
      f.ptr(n.q),
      layer.k,
      layer.v,
      at(packed.layout.tokenSeq),
      at(packed.layout.tokenPos),
      at(packed.layout.blockTables),
      packed.maxBlocksPerSeq,
      this.blockSize,
      n.numHeads,
      n.numKvHeads,
      n.headDim,
      n.scale,
      n.slidingWindow ?? NO_WINDOW,
      n.softcap ?? 0, // read only by the _softcap kernel
      splits,
    ] as const;
    // an e4m3 cache holds value / scale; kiln reads no checkpoint scales yet, so both are 1 (as
    // vLLM without k_scale / v_scale tensors)
    if (this.kvDtype === "fp8") k.launch(ATTENTION_KERNELS.fp8[variant], [T, headBlocks, splits], [128, 1, 1], [...args, FP8_KV_SCALE, FP8_KV_SCALE]);
    else k.launch(ATTENTION_KERNELS[this.kvDtype][variant], [T, headBlocks, splits], [128, 1, 1], args);
    if (splits > 1) k.launch("kiln_attention_combine", [T, n.numHeads, 1], [128, 1, 1], [f.ptr(n.id), f.scratch, T, n.numHeads, n.headDim, splits]);
  }
}
