/**
 * The CUDA backend's executor: a compiled program (compiler/pipeline.ts's `compile`, or an engine
 * artifact's) run on the GPU on one stream, nothing else. The program's fused regions
 * (elementwise chains, norms, rotary with the KV write, the embedding gather) run as its
 * generated CUDA C, one module (the artifact's stored CUBIN when it was built for this device,
 * else compiled by NVRTC); GEMMs (cuBLASLt, or the GEMV for a few rows), attention and the other
 * custom ops run with hand-written kernels, one per IR node (runtime/backends/cuda/node_kernels.ts).
 *
 * Weights are uploaded once, each as the program stores it; each attention layer's KV pool lives
 * in device memory, in the program's KV dtype (f32, bf16 or f16: written rounded to nearest even,
 * read widened to f32 by the attention kernels); activations share one arena sized for the largest step seen
 * so far (grown by doubling), values whose spans over the plan do not overlap sharing bytes
 * (runtime/backends/cuda/activation_plan.ts); a step
 * costs one host→device copy of its packed inputs and one device→host copy of the logits, or,
 * when the engine samples on the device (`sample`), of the S token ids only.
 *
 * Decode steps replay CUDA graphs (captured for the program's capture sizes) and prefill and
 * mixed steps of up to the largest capture size replay graph pieces around the custom ops
 * (runtime/backends/cuda/step_graphs.ts); larger steps run eagerly.
 *
 * Weight precision, as compiled: dtype "f32" keeps every weight in f32 (a bf16 checkpoint is
 * widened on the device, exactly) and runs fp32 GEMMs. "bf16" (or "f16") keeps the GEMM and
 * embedding matrices in that 16-bit format (converted on the device, rounded to nearest even) and
 * runs 16-bit × 16-bit GEMMs with fp32 accumulation and output, rounding each GEMM's input
 * activations to the same format; norms, biases and everything between GEMMs stay f32.
 */
import { numel, type Graph, type ValueId } from "../../../compiler/ir.ts";
import { compile } from "../../../compiler/pipeline.ts";
import { paramDtypes, type Program, type ProgramOptions } from "../../../compiler/program.ts";
import type { WeightData } from "../../../models/dsl/parameter.ts";
import { KilnError } from "../../engine/errors.ts";
import type { StepInputs } from "../kv_cache.ts";
import { headDecays } from "../cpu/linear_attention.ts";
import { packSamplingRows, type DeviceSamplingRow } from "../../engine/device_sampling.ts";
import { DEFAULT_STATE_SLOTS, type CompiledModel, type ExecutorOptions, type KernelOrigin, type StepExecutor } from "../step_executor.ts";
import { DeviceStatePool } from "./state_pool.ts";
import type { CudaBackend } from "./backend.ts";
import type { DevicePtr } from "./device.ts";
import { planProgram, type ExecStep } from "./fused_plan.ts";
import { arenaSizes, planStepUses, type StepUses } from "./activation_plan.ts";
import { allocArena, releaseArena, type Arena } from "./arena.ts";
import { argmaxBlocks, launchArgmax } from "./argmax_plan.ts";
import { stepLauncher, type StepLauncher } from "./step_launch.ts";
import { profileUnits, type StepProfile } from "./step_profile.ts";
import { DEFAULT_CAPTURE_SIZES, pieceSegments } from "./decode_graphs.ts";
import { StepGraphs, type GraphStats } from "./step_graphs.ts";
import { strideGrid } from "./kernels.ts";
import type { KernelName } from "./kernel_catalog.ts";
import { DEFAULT_ATTENTION_TUNING, GEMV_MAX_ROWS, LINEAR_ATTENTION_MAX_HEAD_DIM, MAMBA_SCAN_MAX_STATE, MAX_HEAD_DIM, MOE_MAX_EXPERTS, MOE_MAX_TOPK, NodeKernels, SHORT_CONV_MAX_KERNEL, type AttentionTuning, type KvPoolLayer } from "./node_kernels.ts";
import { packDecodeStep, packStepInputs, type PackedStep } from "./step_inputs.ts";
import { dtypeBytes, isHalf, type FloatDtype, type KvDtype } from "../../../compiler/dtype.ts";


/** kernels converting a checkpoint's weights (f32 or bf16) to another device format, (out, in, n) */
const WEIGHT_CONVERSIONS = {
  f32: { f32: undefined, bf16: "kiln_f32_to_bf16", f16: "kiln_f32_to_f16" },
  bf16: { f32: "kiln_bf16_to_f32", bf16: undefined, f16: "kiln_bf16_to_f16" },
} as const satisfies Record<WeightData["dtype"], Record<FloatDtype, KernelName | undefined>>;

export interface CudaExecutorOptions extends ExecutorOptions {
  readonly attention?: AttentionTuning;
  /** replay CUDA graphs for decode steps, at the program's capture sizes (default true; vLLM's enforce_eager turns them off) */
  readonly cudaGraphs?: boolean;
  /** GEMMs of at most this many rows run as the hand-written GEMV (default GEMV_MAX_ROWS; 0: always cuBLASLt) */
  readonly gemvMaxRows?: number;
  /** sample on the device (`sample`, default true); false leaves sampling to the host */
  readonly deviceSampling?: boolean;
}

/** What the CUDA backend compiles for: the device's sm_XX, the weights' and KV cache's storage, the capture sizes. */
export interface CudaCompileSettings {
  readonly weightDtype?: FloatDtype;
  /** default: as the weights (vLLM's kv_cache_dtype "auto"); fp8 is e4m3 */
  readonly kvCacheDtype?: KvDtype;
  /** default DEFAULT_CAPTURE_SIZES; empty: no CUDA graphs */
  readonly captureSizes?: readonly number[];
}

export function cudaProgramOptions(arch: string, s: CudaCompileSettings): ProgramOptions {
  const dtype: FloatDtype = s.weightDtype ?? "f32";
  return { target: { kind: "cuda", arch }, dtype, kvDtype: s.kvCacheDtype ?? dtype, captureSizes: s.captureSizes ?? DEFAULT_CAPTURE_SIZES };
}

export type { GraphStats } from "./step_graphs.ts";

/** The fewest rows among the embedding tables looked up by the graph input `input` (token ids or positions). */
function tableRows(graph: Graph, input: "input_ids" | "positions"): number | undefined {
  let rows: number | undefined;
  for (const n of graph.nodes) {
    const ids = n.kind === "embedding" ? graph.nodes[n.ids] : undefined;
    if (n.kind !== "embedding" || ids?.kind !== "input" || ids.name !== input) continue;
    const r = graph.nodes[n.table]?.shape[0];
    if (typeof r === "number") rows = rows === undefined ? r : Math.min(rows, r);
  }
  return rows;
}

/** threads per row of kiln_sample_rows (KILN_SAMPLE_THREADS) */
const SAMPLE_THREADS = 256;

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export class CudaExecutor implements StepExecutor {
  private readonly owned: DevicePtr[] = [];
  private ownedBytes = 0;
  private readonly weights = new Map<string, DevicePtr>();
  /** how each parameter is held on the device */
  private readonly dtypes: ReadonlyMap<string, FloatDtype>;
  private readonly nodes: NodeKernels;
  /** rows of the tables the step's token ids and positions index (undefined: nothing indexes by them) */
  private readonly vocab: number | undefined;
  private readonly positionRows: number | undefined;
  private arena: Arena | undefined = undefined;
  /** the decode graphs and graph pieces */
  private readonly graphs: StepGraphs;
  /** steps run without any graph */
  private eagerSteps = 0;
  /** the units one step launches, in order: the compiled program's steps */
  private readonly units: readonly ExecStep[];
  private disposed = false;
  /** per-sequence state of mamba-like layers, in device memory */
  readonly statePool: DeviceStatePool | undefined;
  /** the packed sampling params of a step (grown by doubling) */
  private samplingParams: { readonly ptr: DevicePtr; readonly words: number } | undefined = undefined;
  /** Queues a step sampled on the device; the returned collector waits for its token ids (absent with deviceSampling: false). */
  readonly launchSample: ((step: StepInputs, rows: readonly DeviceSamplingRow[]) => () => Int32Array) | undefined;

  /** the graph the compiled program computes */
  readonly graph: Graph;
  /** the compiled program this executor runs */
  readonly program: Program;
  /** where the program's module came from */
  readonly kernelOrigin: KernelOrigin | undefined;
  private readonly kvPool: ReadonlyMap<string, KvPoolLayer>;
  /** the activations each step of the plan touches, for packing the arenas */
  private readonly uses: StepUses;
  /** how the KV cache is held */
  readonly kvDtype: KvDtype;

  constructor(
    compiled: CompiledModel,
    weights: ReadonlyMap<string, WeightData>,
    private readonly backend: CudaBackend,
    private readonly opts: CudaExecutorOptions,
  ) {
    const { graph, program } = compiled;
    const target = program.options.target;
    if (target.kind !== "cuda") throw new KilnError("INVALID_ARGUMENT", `the CUDA executor cannot run a program compiled for ${target.kind}`);
    const kvDtype: KvDtype = program.options.kvDtype ?? program.options.dtype;
    this.kvDtype = kvDtype;
    this.graph = graph;
    this.program = program;
    this.dtypes = paramDtypes(program);
    const { numBlocks, blockSize } = opts;
    if (!Number.isInteger(numBlocks) || numBlocks < 1 || !Number.isInteger(blockSize) || blockSize < 1) {
      throw new KilnError("INVALID_ARGUMENT", `KV cache needs positive integer block count and size (got ${numBlocks}, ${blockSize})`);
    }
    for (const n of graph.nodes) {
      if (n.kind === "param" && !weights.has(n.name)) throw new KilnError("TENSOR_MISSING", `parameter '${n.name}' has no loaded weight`);
      if (n.kind === "attention" && n.headDim > MAX_HEAD_DIM) {
        throw new KilnError("INVALID_ARGUMENT", `${n.scope}: head size ${n.headDim} exceeds the CUDA attention kernel's ${MAX_HEAD_DIM}`);
      }
      if (n.kind === "moe" && (n.numExperts > MOE_MAX_EXPERTS || n.topK > MOE_MAX_TOPK)) {
        throw new KilnError("INVALID_ARGUMENT", `${n.scope}: the CUDA experts kernels route among at most ${MOE_MAX_EXPERTS} experts, top-${MOE_MAX_TOPK}`);
      }
      if (n.kind === "short_conv" && n.kernelSize > SHORT_CONV_MAX_KERNEL) {
        throw new KilnError("INVALID_ARGUMENT", `${n.scope}: conv kernel size ${n.kernelSize} exceeds the CUDA kernel's ${SHORT_CONV_MAX_KERNEL}`);
      }
      if (n.kind === "linear_attention" && n.headDim > LINEAR_ATTENTION_MAX_HEAD_DIM) {
        throw new KilnError("INVALID_ARGUMENT", `${n.scope}: head size ${n.headDim} exceeds the CUDA lightning kernel's ${LINEAR_ATTENTION_MAX_HEAD_DIM}`);
      }
      if ((n.kind === "selective_scan" || n.kind === "ssd_scan") && n.stateSize > MAMBA_SCAN_MAX_STATE) {
        throw new KilnError("INVALID_ARGUMENT", `${n.scope}: SSM state size ${n.stateSize} exceeds the CUDA scan kernels' ${MAMBA_SCAN_MAX_STATE}`);
      }
    }
    this.launchSample = opts.deviceSampling === false ? undefined : (step, rows) => this.launchSampleRows(step, rows);
    const captureSizes = opts.cudaGraphs === false ? [] : (program.options.captureSizes ?? DEFAULT_CAPTURE_SIZES);
    if (!captureSizes.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new KilnError("INVALID_ARGUMENT", `CUDA-graph capture sizes must be positive integers (got ${captureSizes.join(", ")})`);
    }
    const kvPool = new Map<string, KvPoolLayer>();
    const decays = new Map<ValueId, DevicePtr>();
    try {
      this.uploadWeights(weights);
      const slots = opts.numStateSlots ?? DEFAULT_STATE_SLOTS;
      this.statePool = graph.stateLayers.length === 0 ? undefined : new DeviceStatePool(backend, graph.stateLayers, slots, (b) => this.own(b));
      for (const n of graph.nodes) {
        if (n.kind !== "linear_attention") continue;
        const d = headDecays(n.slopes);
        const p = this.own(d.byteLength);
        backend.device.upload(p, d);
        decays.set(n.id, p);
      }
      // one block more than the engine's pool: the padding rows of decode graphs write there
      for (const spec of graph.kvLayers) {
        const bytes = (numBlocks + 1) * blockSize * spec.numKvHeads * spec.headDim * dtypeBytes(kvDtype);
        const layer = { k: this.own(bytes), v: this.own(bytes) };
        backend.device.zero(layer.k, bytes);
        backend.device.zero(layer.v, bytes);
        kvPool.set(spec.cacheKey, layer);
      }
      backend.device.synchronize();
    } catch (e) {
      this.dispose();
      throw e;
    }
    this.vocab = tableRows(graph, "input_ids");
    this.positionRows = tableRows(graph, "positions");
    const dtypeOf = (id: ValueId): FloatDtype => {
      const n = graph.nodes[id];
      return n?.kind === "param" ? (this.dtypes.get(n.name) ?? "f32") : "f32";
    };
    this.kvPool = kvPool;
    this.nodes = new NodeKernels(
      backend,
      graph,
      kvPool,
      blockSize,
      opts.attention ?? DEFAULT_ATTENTION_TUNING,
      dtypeOf,
      { pool: this.statePool, decays },
      opts.gemvMaxRows ?? GEMV_MAX_ROWS,
      kvDtype,
    );
    try {
      const planned = planProgram(program, backend, compiled.module, this.nodes.kvWrittenByFusedKernels);
      this.kernelOrigin = planned.kernelOrigin;
      this.units = planned.steps;
      // attention only reads the cache: a program must write each layer's step k/v in a fused kernel
      for (const key of kvPool.keys()) {
        if (!this.nodes.kvWrittenByFusedKernels.has(key)) throw new KilnError("INVALID_ARGUMENT", `the compiled program writes no step k/v into the KV cache '${key}'`);
      }
      this.uses = planStepUses(graph, this.units.map((u) => (u.kind === "fused" ? { kind: "fused", buffers: u.kernel.buffers } : u)));
      this.graphs = new StepGraphs(
        {
          device: backend.device,
          segments: pieceSegments(graph, this.units),
          unitCount: this.units.length,
          blockSize,
          numBlocks,
          paddingSlot: this.statePool?.paddingSlot,
          pack: (step, padded) => packStepInputs(step, this.packLimits(padded)),
          packDecode: (step, pad) => packDecodeStep(step, this.packLimits(true), pad),
          eagerArena: (T, S, inputLength) => this.arenaFor(T, S, inputLength),
          allocArena: (T, S, inputLength) => this.allocArena(T, S, inputLength),
          releaseArena: (a) => releaseArena(backend.device, a),
          launcher: (packed, arena, inputs) => this.launcher(packed, arena, inputs),
          logitsAddress: (arena) => this.logitsAddress(arena),
        },
        captureSizes,
      );
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Compiles `graph` for this device with `opts`' storage and capture sizes, and runs that (tests and benchmarks). */
  static fromGraph(graph: Graph, weights: ReadonlyMap<string, WeightData>, backend: CudaBackend, opts: CudaExecutorOptions & CudaCompileSettings): CudaExecutor {
    return new CudaExecutor(compile(graph, cudaProgramOptions(backend.device.info.arch, opts)), weights, backend, opts);
  }

  get numBlocks(): number {
    return this.opts.numBlocks;
  }

  get blockSize(): number {
    return this.opts.blockSize;
  }

  /** Device bytes this executor holds: weights, KV pool, activations. */
  get deviceBytes(): number {
    return this.ownedBytes + (this.arena?.bytes ?? 0) + (this.graphs?.arenaBytes ?? 0) + (this.samplingParams?.words ?? 0) * 4;
  }

  private own(bytes: number): DevicePtr {
    const p = this.backend.device.alloc(bytes);
    this.owned.push(p);
    this.ownedBytes += bytes;
    return p;
  }

  private uploadWeights(weights: ReadonlyMap<string, WeightData>): void {
    const dev = this.backend.device;
    // each weight as the program stores it (set from its buffers in the constructor)
    const target = (name: string): FloatDtype => this.dtypes.get(name) ?? "f32";
    // staging for the weights converted on the device (bf16 → f32, f32 → bf16, ...)
    let stagingBytes = 0;
    for (const [name, w] of weights) if (w.dtype !== target(name)) stagingBytes = Math.max(stagingBytes, w.data.byteLength);
    const staging = stagingBytes > 0 ? dev.alloc(stagingBytes) : undefined;
    try {
      for (const n of this.graph.nodes) {
        if (n.kind !== "param" || this.weights.has(n.name)) continue;
        const w = weights.get(n.name);
        if (w === undefined) continue;
        const to = target(n.name);
        const count = w.data.length;
        const p = this.own(count * dtypeBytes(to));
        const convert = WEIGHT_CONVERSIONS[w.dtype][to];
        if (convert === undefined || staging === undefined) {
          dev.upload(p, w.data);
        } else {
          dev.upload(staging, w.data);
          this.backend.kernels.launch(convert, strideGrid(count), [256, 1, 1], [p, staging, count]);
          dev.synchronize(); // the staging buffer is reused by the next weight
        }
        this.weights.set(n.name, p);
      }
    } finally {
      if (staging !== undefined) dev.free(staging);
    }
  }

  /** Activation buffers for T tokens and S rows, reallocated (doubling) when a step outgrows them. */
  private arenaFor(T: number, S: number, inputLength: number): Arena {
    const a = this.arena;
    if (a && a.T >= T && a.S >= S && a.inputCapacity >= inputLength) return a;
    if (a) this.freeArena(a);
    this.arena = this.allocArena(Math.max(nextPow2(T), a?.T ?? 1), Math.max(nextPow2(S), a?.S ?? 1), Math.max(nextPow2(inputLength), a?.inputCapacity ?? 1));
    return this.arena;
  }

  private allocArena(capT: number, capS: number, inputCapacity: number): Arena {
    const withCast = [...this.dtypes.values()].some(isHalf);
    return allocArena(this.backend.device, arenaSizes(this.graph, this.uses, capT, capS, this.backend.device.info.multiprocessors), { T: capT, S: capS, inputCapacity, withCast });
  }

  /** Frees the eager arena (and the graph pieces captured against it). */
  private freeArena(a: Arena): void {
    this.graphs?.arenaReleased(a);
    releaseArena(this.backend.device, a);
    if (a === this.arena) this.arena = undefined;
  }

  /** Launches of one step's plan: fused kernels, and nodes (GEMMs, custom ops) run on their own. */
  get planSummary(): { readonly fusedKernels: number; readonly nodes: number } {
    const fusedKernels = this.units.filter((s) => s.kind === "fused").length;
    return { fusedKernels, nodes: this.units.length - fusedKernels };
  }

  get graphStats(): GraphStats {
    return this.graphs.stats(this.eagerSteps);
  }

  private packLimits(padded: boolean): Parameters<typeof packStepInputs>[1] {
    // padded graph steps may name the padding block and slot
    const extra = padded ? 1 : 0;
    const slots = this.statePool?.numSlots;
    return {
      vocab: this.vocab,
      positions: this.positionRows,
      numBlocks: this.numBlocks + extra,
      blockSize: this.blockSize,
      numStateSlots: slots === undefined ? undefined : slots + extra,
    };
  }

  /** Queues the whole graph for one step; returns the logits' device address. */
  private forward(step: StepInputs): { packed: PackedStep; arena: Arena; logits: DevicePtr } {
    if (this.disposed) throw new Error("the CUDA executor has been disposed");
    const graphed = this.graphs.forward(step);
    if (graphed !== undefined) return graphed;
    this.eagerSteps++;
    const packed = packStepInputs(step, this.packLimits(false));
    const arena = this.arenaFor(packed.T, packed.S, packed.layout.length);
    this.backend.device.upload(arena.inputs, packed.data);
    return { packed, arena, logits: this.enqueue(packed, arena, arena.inputs) };
  }

  /** Queues every unit of the plan for `packed`, whose inputs are at `inputs`; returns the logits' address. */
  private enqueue(packed: PackedStep, arena: Arena, inputs: DevicePtr): DevicePtr {
    const launcher = this.launcher(packed, arena, inputs);
    launcher.run(0, this.units.length);
    return launcher.logits();
  }

  /** Launches units [from, to) of the plan for one step's inputs and arena. */
  private launcher(packed: PackedStep, arena: Arena, inputs: DevicePtr): StepLauncher {
    return stepLauncher({ graph: this.graph, weights: this.weights, kvPool: this.kvPool, nodes: this.nodes, units: this.units, device: this.backend.device }, packed, arena, inputs);
  }

  /**
   * Runs one step eagerly with every unit of the plan timed on the device (step_profile.ts), the
   * logits left in the arena; for benchmarks.
   */
  profileStep(step: StepInputs, spinMs?: number): StepProfile {
    if (this.disposed) throw new Error("the CUDA executor has been disposed");
    const packed = packStepInputs(step, this.packLimits(false));
    const arena = this.arenaFor(packed.T, packed.S, packed.layout.length);
    this.backend.device.upload(arena.inputs, packed.data);
    const paramBytes = (id: ValueId): number => {
      const n = this.graph.nodes[id];
      return n?.kind === "param" ? numel(n.shape, { T: 0, S: 0 }) * dtypeBytes(this.dtypes.get(n.name) ?? "f32") : 0;
    };
    return profileUnits(this.backend, this.graph, this.units, this.launcher(packed, arena, arena.inputs), {
      sizes: { T: packed.T, S: packed.S },
      gemvMaxRows: this.opts.gemvMaxRows ?? GEMV_MAX_ROWS,
      paramBytes,
      ...(spinMs === undefined ? {} : { spinMs }),
    });
  }

  /** The logits' address in an arena. */
  private logitsAddress(arena: Arena): DevicePtr {
    const p = arena.values.get(this.graph.outputs.logits);
    if (p === undefined) throw new Error("the logits have no device buffer");
    return p;
  }

  /** Runs one step; returns the logits [S, vocab] (row-major) on the host. */
  run(step: StepInputs): Float32Array {
    const { logits } = this.forward(step);
    const S = step.logitsIndices.length; // a graph's padding rows come after the step's own
    const host = new Float32Array(S * this.logitsWidth());
    this.backend.device.download(host, logits);
    return host;
  }

  /** Runs one step and picks each row's greedy token on the device; returns the S token ids. */
  runGreedy(step: StepInputs): Int32Array {
    const { arena, logits } = this.forward(step);
    const S = step.logitsIndices.length;
    const ids = new Int32Array(S);
    if (S === 0) return ids;
    const V = this.logitsWidth();
    launchArgmax(this.backend.kernels, arena.tokens, arena.argmaxParts, logits, S, V, argmaxBlocks(S, V, this.backend.device.info.multiprocessors));
    this.backend.device.download(ids, arena.tokens);
    return ids;
  }

  /**
   * Queues one step and the sampling of row s of its logits with rows[s] (kiln_sample_rows, which
   * adjusts the logits in place); returns the collector that waits for the device and brings the
   * S token ids back. Nothing is copied to the device after the step's kernels, so the host is
   * free until it collects.
   */
  private launchSampleRows(step: StepInputs, rows: readonly DeviceSamplingRow[]): () => Int32Array {
    const S = step.logitsIndices.length;
    if (rows.length !== S) throw new Error(`${rows.length} sampling rows for a step of ${S} logits rows`);
    const ids = new Int32Array(S);
    if (S === 0) {
      this.forward(step);
      return () => ids;
    }
    const V = this.logitsWidth();
    const params = packSamplingRows(rows, V);
    const dev = this.backend.device;
    if (this.samplingParams === undefined || this.samplingParams.words < params.length) {
      const words = Math.max(nextPow2(params.length), 2 * (this.samplingParams?.words ?? 0));
      if (this.samplingParams !== undefined) {
        dev.synchronize();
        dev.free(this.samplingParams.ptr);
        this.samplingParams = undefined;
      }
      this.samplingParams = { ptr: dev.alloc(words * 4), words };
    }
    // host→device copies wait for queued kernels: the params go up before the step's kernels
    dev.upload(this.samplingParams.ptr, params);
    const { arena, logits } = this.forward(step);
    this.backend.kernels.launch("kiln_sample_rows", [S, 1, 1], [SAMPLE_THREADS, 1, 1], [arena.tokens, logits, this.samplingParams.ptr, S, V]);
    return () => {
      if (this.disposed) throw new Error("the CUDA executor has been disposed");
      dev.download(ids, arena.tokens);
      return ids;
    };
  }

  /** Columns of the logits: the vocabulary the model scores. */
  private logitsWidth(): number {
    const out = this.graph.nodes[this.graph.outputs.logits];
    return out === undefined ? 0 : numel(out.shape.slice(1), { T: 1, S: 1 });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const dev = this.backend.device;
    this.graphs?.dispose();
    if (this.arena) this.freeArena(this.arena);
    dev.synchronize();
    if (this.samplingParams !== undefined) dev.free(this.samplingParams.ptr);
    this.samplingParams = undefined;
    for (const p of this.owned) dev.free(p);
    this.owned.length = 0;
    this.weights.clear();
  }
}
