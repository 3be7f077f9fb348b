/**
 * The CPU backend's executor: runs a compiled program (compiler/pipeline.ts's `compile`, or an
 * engine artifact's), nothing else. Fused kernels are generated C (kernel_library.ts): an
 * artifact's stored shared library when it was built for this host, else built from the
 * program's kernels (cached on disk); GEMMs and paged attention are the native addon's. Generated code does no bounds checks, so everything it indexes with is
 * checked here first: weights against the program's shapes once, and each step's token ids,
 * logits rows and cache slots before any kernel runs.
 */
import { readFileSync } from "node:fs";
import { assertNever, numel, type SymbolicDim } from "../../../compiler/ir.ts";
import type { BufferSpec, Program, ProgramInput } from "../../../compiler/program.ts";
import { KernelCache } from "../../../compiler/kernel_cache.ts";
import { builtForLabel, compileC, runsHere } from "../../../compiler/toolchain.ts";
import type { WeightData } from "../../../models/dsl/parameter.ts";
import { KilnError } from "../../engine/errors.ts";
import { KvCache, type StepInputs } from "../kv_cache.ts";
import type { CompiledModel, ExecutorOptions, KernelOrigin, StepExecutor } from "../step_executor.ts";
import { bindKernelLibrary, loadKernelLibrary, type KernelArg, type KernelLibrary } from "./kernel_library.ts";
import type { StateSlots } from "../../engine/state_slots.ts";
import { hostStateSlots, seqStates } from "../state_layers.ts";
import { headDecays, linearAttention } from "./linear_attention.ts";
import { fusedExperts, weightData } from "./moe.ts";
import { shortConv } from "./short_conv.ts";
import { negExp, selectiveScan, ssdScan } from "./mamba.ts";
import type { NativeKernels } from "./native.ts";
import { fileDigest } from "../../io/file_digest.ts";

type Sizes = Record<SymbolicDim, number>;

/**
 * The program's kernels as a library: the artifact's stored binary when it was built for this
 * host, else its stored source (or the program's kernels) built here.
 */
function programLibrary(compiled: CompiledModel): { library: KernelLibrary; origin: KernelOrigin } {
  const kernels = compiled.program.kernels;
  const digest = (path: string): string => fileDigest(path).sha256;
  const stored = compiled.module;
  if (stored === undefined) {
    const library = loadKernelLibrary(kernels);
    return { library, origin: { origin: "compiled", sha256: digest(library.path) } };
  }
  const binary = stored.binary;
  if (binary !== undefined && runsHere(binary.builtFor)) {
    return { library: bindKernelLibrary(binary.path, kernels), origin: { origin: "artifact", sha256: binary.sha256 } };
  }
  // built with -march=native for another CPU model or for a level this CPU lacks (its instructions
  // may not exist here), or not built
  const built = compileC(readFileSync(stored.sourcePath, "utf8"), new KernelCache());
  const library = bindKernelLibrary(built.path, kernels, built.hit ? 0 : built.seconds);
  const why = binary === undefined ? "the artifact carries no built kernels" : `the artifact's kernels were built for '${binary.builtFor}'`;
  const note = `${why}; built its stored source for '${builtForLabel()}'`;
  return { library, origin: { origin: "rebuilt", sha256: digest(built.path), note } };
}

export class ProgramExecutor implements StepExecutor {
  readonly kv: KvCache;
  readonly statePool: StateSlots | undefined;
  readonly library: KernelLibrary;
  readonly kernelOrigin: KernelOrigin | undefined;
  readonly program: Program;

  constructor(
    compiled: CompiledModel,
    private readonly weights: ReadonlyMap<string, WeightData>,
    private readonly native: NativeKernels,
    opts: ExecutorOptions,
    library?: KernelLibrary,
  ) {
    const program = (this.program = compiled.program);
    if (program.options.target.kind !== "cpu") {
      throw new KilnError("INVALID_ARGUMENT", `the CPU executor cannot run a program compiled for ${program.options.target.kind}`);
    }
    this.kv = new KvCache(program.kvLayers, opts.numBlocks, opts.blockSize);
    this.statePool = hostStateSlots(program.stateLayers, opts.numStateSlots);
    for (const b of program.buffers) if (b.role.kind === "param") this.checkWeight(b);
    if (library !== undefined) {
      this.library = library;
      this.kernelOrigin = undefined;
    } else {
      const loaded = programLibrary(compiled);
      this.library = loaded.library;
      this.kernelOrigin = loaded.origin;
    }
  }

  get numBlocks(): number {
    return this.kv.numBlocks;
  }

  get blockSize(): number {
    return this.kv.blockSize;
  }

  dispose(): void {}

  private checkWeight(b: BufferSpec): void {
    if (b.role.kind !== "param") return;
    const w = this.weights.get(b.role.name);
    if (!w) throw new KilnError("TENSOR_MISSING", `parameter '${b.role.name}' has no loaded weight`);
    const expected = b.shape.reduce<number>((n, d) => n * (typeof d === "number" ? d : NaN), 1);
    if (w.dtype !== b.elem || w.data.length !== expected) {
      throw new KilnError(
        "TENSOR_SHAPE",
        `parameter '${b.role.name}' is ${w.dtype} with ${w.data.length} elements; the program expects ${b.elem} [${b.shape.join(", ")}]`,
      );
    }
  }

  private checkInputs(step: StepInputs, sizes: Sizes): void {
    for (const bound of this.program.inputBounds) {
      const values = boundedValues(step, bound.input);
      if (values === undefined) continue;
      const below = typeof bound.below === "number" ? bound.below : sizes[bound.below];
      for (const v of values) {
        if (v < 0 || v >= below) throw new KilnError("INVALID_ARGUMENT", `${bound.input} entry ${v} is outside ${bound.what} (${below})`);
      }
    }
    const slots = this.kv.numBlocks * this.kv.blockSize;
    const mapping = step.attn.slotMapping;
    if (mapping.length !== sizes.T) throw new KilnError("INVALID_ARGUMENT", `slot_mapping has ${mapping.length} entries for ${sizes.T} tokens`);
    for (let t = 0; t < mapping.length; t++) {
      const s = mapping[t]!;
      if (s < 0 || s >= slots) throw new KilnError("INVALID_ARGUMENT", `slot_mapping[${t}] = ${s} is outside the cache's ${slots} slots`);
    }
  }

  /** Runs one step; returns the logits [S, vocab] (row-major). */
  run(step: StepInputs): Float32Array {
    const sizes: Sizes = { T: step.inputIds.length, S: step.logitsIndices.length };
    if (step.positions.length !== sizes.T) throw new KilnError("INVALID_ARGUMENT", "positions and input_ids differ in length");
    this.checkInputs(step, sizes);
    const values: (KernelArg | undefined)[] = new Array<KernelArg | undefined>(this.program.buffers.length);
    const buf = (id: number): KernelArg => {
      const known = values[id];
      if (known) return known;
      const b = this.program.buffers[id]!;
      const v = this.resolve(b, step, sizes);
      values[id] = v;
      return v;
    };
    const f32 = (id: number): Float32Array => {
      const v = buf(id);
      if (!(v instanceof Float32Array)) throw new Error(`buffer ${id} is not f32`);
      return v;
    };
    const n = this.native;
    for (const s of this.program.steps) {
      switch (s.kind) {
        case "kernel": {
          const rows = typeof s.rows === "number" ? s.rows : sizes[s.rows];
          this.library.kernels.get(s.kernel)!(rows, s.args.map(buf));
          break;
        }
        case "gemm": {
          const rows = typeof s.rows === "number" ? s.rows : sizes[s.rows];
          const w = buf(s.w);
          const bias = s.bias === undefined ? null : f32(s.bias);
          if (w instanceof Float32Array) n.gemmF32(f32(s.out), f32(s.x), w, bias, rows, s.n, s.k);
          else if (w instanceof Uint16Array) n.gemmBf16(f32(s.out), f32(s.x), w, bias, rows, s.n, s.k);
          else throw new Error(`GEMM weight buffer ${s.w} is not a float weight`);
          break;
        }
        case "attention": {
          const a = step.attn;
          // the caches already hold this step's k and v: the kernel before wrote them
          n.pagedAttention(
            f32(s.out),
            f32(s.q),
            f32(s.kCache),
            f32(s.vCache),
            a.queryStartLoc,
            a.seqLens,
            a.blockTables,
            a.maxBlocksPerSeq,
            this.kv.blockSize,
            s.numHeads,
            s.numKvHeads,
            s.headDim,
            s.scale,
            s.slidingWindow ?? 0, // the native ABI uses 0 for "no window"
            s.softcap ?? 0, // and 0 for "no soft-cap"
          );
          break;
        }
        case "moe": {
          const dims = { hidden: s.hidden, numExperts: s.numExperts, topK: s.topK, intermediate: s.intermediateSize, routing: s.routing, activation: s.activation };
          fusedExperts(n, f32(s.out), f32(s.x), weightData(buf(s.router)), weightData(buf(s.w13)), weightData(buf(s.w2)), dims);
          break;
        }
        case "short_conv": {
          const seqs = seqStates(step, this.statePool, s.stateKey, "conv");
          const w = buf(s.weight);
          if (!(w instanceof Float32Array)) throw new KilnError("INVALID_ARGUMENT", `${s.stateKey}: conv weights must be f32`);
          shortConv(f32(s.out), f32(s.x), w, s.bias === undefined ? undefined : f32(s.bias), seqs, s.dim, s.kernelSize);
          break;
        }
        case "linear_attention":
          linearAttention(f32(s.out), f32(s.qkv), this.decays(s), seqStates(step, this.statePool, s.stateKey, "kv"), s.numHeads, s.headDim);
          break;
        case "selective_scan": {
          const seqs = seqStates(step, this.statePool, s.stateKey, "ssm");
          selectiveScan(f32(s.out), f32(s.u), f32(s.delta), this.negA(s.aLog, f32), f32(s.b), f32(s.c), f32(s.d), f32(s.z), seqs, s);
          break;
        }
        case "ssd_scan": {
          const seqs = seqStates(step, this.statePool, s.stateKey, "ssm");
          ssdScan(f32(s.out), f32(s.x), f32(s.dt), f32(s.dtBias), this.negA(s.aLog, f32), f32(s.b), f32(s.c), f32(s.d), seqs, s);
          break;
        }
        default:
          assertNever(s, "program step");
      }
    }
    return f32(this.program.logits);
  }

  /** A = −exp(A_log) of a scan's parameter buffer, computed once */
  private readonly negATables = new Map<number, Float32Array>();
  private negA(buffer: number, f32: (id: number) => Float32Array): Float32Array {
    let a = this.negATables.get(buffer);
    if (!a) this.negATables.set(buffer, (a = negExp(f32(buffer))));
    return a;
  }

  private readonly decayTables = new Map<number, Float32Array>();
  private decays(s: { readonly node: number; readonly slopes: readonly number[] }): Float32Array {
    let d = this.decayTables.get(s.node);
    if (!d) this.decayTables.set(s.node, (d = headDecays(s.slopes)));
    return d;
  }

  private resolve(b: BufferSpec, step: StepInputs, sizes: Sizes): KernelArg {
    switch (b.role.kind) {
      case "input": {
        const name = b.role.name;
        return name === "input_ids" ? step.inputIds : name === "positions" ? step.positions : name === "logits_indices" ? step.logitsIndices : step.attn.slotMapping;
      }
      case "param":
        return this.weights.get(b.role.name)!.data;
      case "activation":
        return new Float32Array(numel(b.shape.filter((d): d is Exclude<typeof d, "slots"> => d !== "slots"), sizes));
      case "kv_cache": {
        const layer = this.kv.layer(b.role.cacheKey);
        return b.role.which === "k" ? layer.k : layer.v;
      }
      default:
        return assertNever(b.role, "buffer role");
    }
  }
}

/**
 * The step's values of an input that indexes a table: token ids (the vocabulary), positions (a
 * learned position table) or logits indices (the step's rows). Slot mappings are checked apart.
 */
function boundedValues(step: StepInputs, input: ProgramInput): Int32Array | undefined {
  switch (input) {
    case "input_ids":
      return step.inputIds;
    case "positions":
      return step.positions;
    case "logits_indices":
      return step.logitsIndices;
    case "slot_mapping":
      return undefined;
    default:
      return assertNever(input, "program input");
  }
}
