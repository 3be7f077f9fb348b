/**
 * Sizing the KV pool from device memory, as vLLM's --gpu-memory-utilization does: of the device's
 * total memory the engine may hold `utilization`, less what other processes (and this one's
 * context, cuBLASLt workspace, ...) already held at startup, less the weights, the per-sequence
 * state of mamba-like layers and an activation reserve; the rest is KV blocks.
 *
 * Pure arithmetic over the compiled program: the byte counts mirror what CudaExecutor allocates
 * (each weight as the program stores it; KV in f32, bf16, f16 or fp8 and state in f32, each with one
 * padding block or slot for captured decode batches; an activation arena for eager steps of up to
 * nextPow2(T) tokens, and another shared by the decode graphs).
 */
import type { KvLayerSpec, StateLayerSpec } from "../../../compiler/ir.ts";
import type { Program } from "../../../compiler/program.ts";
import type { CompiledModel } from "../step_executor.ts";
import type { WeightData } from "../../../models/dsl/parameter.ts";
import { KilnError } from "../../engine/errors.ts";
import { arenaSizes, executorActivations, type ExecutorActivations } from "./activation_plan.ts";
import { argmaxPartsBytes } from "./argmax_plan.ts";
import { dtypeBytes, type KvDtype } from "../../../compiler/dtype.ts";

/** Added to the graph's activation estimate: step inputs, rotary tables, allocator rounding. */
export const ACTIVATION_MARGIN_BYTES = 64 * 2 ** 20;

export interface DeviceMemory {
  readonly free: number;
  readonly total: number;
}

/** Bytes of K and V for one block across every attention layer, the cache held as `dtype`. */
export function kvBytesPerBlock(layers: readonly KvLayerSpec[], blockSize: number, dtype: KvDtype): number {
  return layers.reduce((sum, l) => sum + 2 * dtypeBytes(dtype) * blockSize * l.numKvHeads * l.headDim, 0);
}

/** Device bytes the executor holds for the program's weights, each as the program stores it. */
export function deviceWeightBytes(program: Program, weights: ReadonlyMap<string, WeightData>): number {
  let bytes = 0;
  for (const b of program.buffers) {
    if (b.role.kind !== "param") continue;
    const w = weights.get(b.role.name);
    if (w !== undefined) bytes += w.data.length * dtypeBytes(b.elem);
  }
  return bytes;
}

/** Device bytes of the per-sequence state pool (f32) for `slots` sequences, plus the padding slot of captured batches. */
export function stateBytes(layers: readonly StateLayerSpec[], slots: number): number {
  let perSlot = 0;
  for (const l of layers) for (const t of l.tensors) perSlot += t.shape.reduce((a, b) => a * b, 1) * 4;
  return layers.length === 0 ? 0 : perSlot * (slots + 1);
}

const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export interface ActivationShape {
  /** tokens per step (the scheduler's maxNumBatchedTokens) */
  readonly maxTokens: number;
  /** logits rows per step (at most maxTokens) */
  readonly maxRows: number;
  /** the device's SM count (sizes split-attention partials) */
  readonly multiprocessors: number;
  /** the largest batch decode steps are captured into CUDA graphs for (0: no graphs) */
  readonly graphRows: number;
}

/**
 * One activation arena for steps of T tokens and S rows, as the executor allocates it: the
 * activations packed by their spans (activation_plan.ts), the 16-bit copy of a GEMM input,
 * attention and MoE scratch, the greedy picks and the split argmax's partials.
 */
function arenaBytes(a: ExecutorActivations, T: number, S: number, multiprocessors: number): number {
  const { layout, castBytes, scratchBytes } = arenaSizes(a.graph, a.uses, T, S, multiprocessors);
  return layout.bytes + castBytes + scratchBytes + S * 4 + argmaxPartsBytes(S);
}

/**
 * Activation bytes at the largest step: the eager arena at the executor's power-of-two capacity,
 * plus the arena the decode graphs share (sized for the largest capture batch), plus
 * ACTIVATION_MARGIN_BYTES for step inputs, rotary tables, captured graphs and rounding.
 */
export function activationBytes(compiled: CompiledModel, s: ActivationShape): number {
  const a = executorActivations(compiled);
  const eager = arenaBytes(a, nextPow2(s.maxTokens), nextPow2(Math.min(s.maxRows, s.maxTokens)), s.multiprocessors);
  const graphs = s.graphRows > 0 ? arenaBytes(a, s.graphRows, s.graphRows, s.multiprocessors) : 0;
  return eager + graphs + ACTIVATION_MARGIN_BYTES;
}

export interface KvBudgetInput {
  readonly memory: DeviceMemory;
  /** share of total device memory the engine may hold, in (0, 1] */
  readonly utilization: number;
  readonly weightBytes: number;
  /** state pool of mamba-like layers (0 for attention-only models) */
  readonly stateBytes: number;
  readonly activationBytes: number;
  readonly bytesPerBlock: number;
}

export interface KvBudget extends KvBudgetInput {
  /** memory already held at startup: total − free */
  readonly usedAtStart: number;
  /** bytes left for the KV pool (may be ≤ 0) */
  readonly kvBytes: number;
  /** blocks the pool hands out: the executor holds one more (the padding block of captured batches) */
  readonly numBlocks: number;
}

/** Throws INVALID_ARGUMENT unless 0 < u ≤ 1. */
export function checkUtilization(u: number): void {
  if (!Number.isFinite(u) || u <= 0 || u > 1) {
    throw new KilnError("INVALID_ARGUMENT", `gpuMemoryUtilization must be a fraction in (0, 1] (got ${u})`);
  }
}

/** total × utilization − (total − free) − weights − state − activations, in whole blocks. */
export function kvBudget(input: KvBudgetInput): KvBudget {
  checkUtilization(input.utilization);
  if (!(input.bytesPerBlock > 0)) throw new KilnError("INVALID_ARGUMENT", `a KV block must take memory (got ${input.bytesPerBlock} bytes)`);
  const { free, total } = input.memory;
  const usedAtStart = Math.max(0, total - free);
  const kvBytes = Math.floor(total * input.utilization) - usedAtStart - input.weightBytes - input.stateBytes - input.activationBytes;
  const numBlocks = Math.max(0, Math.floor(kvBytes / input.bytesPerBlock) - 1);
  return { ...input, usedAtStart, kvBytes, numBlocks };
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** One line: where the device memory goes. */
export function describeKvBudget(b: KvBudget): string {
  return (
    `${gib(b.memory.total)} × ${b.utilization} − ${gib(b.usedAtStart)} in use at start − ${gib(b.weightBytes)} weights` +
    (b.stateBytes > 0 ? ` − ${gib(b.stateBytes)} state` : "") +
    ` − ${gib(b.activationBytes)} activations = ${gib(b.kvBytes)} for KV (${b.bytesPerBlock} bytes per block)`
  );
}

/** Throws KV_EXHAUSTED, naming the numbers, when the budget holds fewer than `needBlocks` blocks. */
export function requireBlocks(b: KvBudget, needBlocks: number, what: string): void {
  if (b.numBlocks >= needBlocks) return;
  throw new KilnError(
    "KV_EXHAUSTED",
    `gpuMemoryUtilization ${b.utilization} leaves room for ${b.numBlocks} KV blocks, but ${what} needs ${needBlocks}: ${describeKvBudget(b)}; ` +
      `raise gpuMemoryUtilization (--gpu-memory-utilization), lower maxModelLen or maxNumBatchedTokens, or use bf16 weights`,
  );
}
