/**
 * Per-sequence state for Mamba-like layers (conv and SSM states), kept beside the KV pool. Unlike
 * KV blocks, a sequence's state has a fixed size whatever its length, so the pool is a set of
 * slots, one per running sequence: allocated (and zeroed) when a sequence starts or restarts after
 * preemption, carried across its prefill chunks and decode steps, freed when it finishes, is
 * aborted or preempted.
 *
 * The engine handles slot ids through `StatePool`; where the memory lives is the backend's
 * business (host arrays here, device memory on CUDA), as with the KV cache.
 */
import type { FloatDtype } from "../../compiler/dtype.ts";
import { KilnError } from "./errors.ts";

export type StateDtype = Extract<FloatDtype, "f32" | "bf16">;

/** One named state tensor of a sequence, e.g. { name: "layers.3.conv", shape: [d_conv - 1, d_inner] }. */
export interface StateSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: StateDtype;
}

/** The slot bookkeeping the scheduler needs. */
export interface StatePool {
  readonly specs: readonly StateSpec[];
  readonly numSlots: number;
  readonly numFree: number;
  /** A free slot, or undefined when all are taken. */
  allocate(): number | undefined;
  /** Zeroes every state of the slot: a new sequence starts from the empty state. */
  reset(slot: number): void;
  free(slot: number): void;
}

export type StateBuffer = Float32Array | Uint16Array; // bf16 kept as bit patterns

/** Host-memory slots: one buffer per spec, [numSlots, ...shape]. */
export class StateSlots implements StatePool {
  private readonly buffers = new Map<string, { readonly size: number; readonly data: StateBuffer }>();
  /** free slot ids; pop() hands out low ids first */
  private readonly freeSlots: number[];
  private readonly taken: Uint8Array;

  constructor(
    readonly specs: readonly StateSpec[],
    readonly numSlots: number,
  ) {
    if (!Number.isInteger(numSlots) || numSlots < 1) {
      throw new KilnError("INVALID_ARGUMENT", `a state pool needs at least one slot (got ${numSlots})`);
    }
    for (const spec of specs) {
      if (this.buffers.has(spec.name)) throw new KilnError("INVALID_ARGUMENT", `state '${spec.name}' is declared twice`);
      if (!spec.shape.every((d) => Number.isInteger(d) && d > 0)) {
        throw new KilnError("INVALID_ARGUMENT", `state '${spec.name}' has shape [${spec.shape.join(", ")}]; dims must be positive integers`);
      }
      const size = spec.shape.reduce((a, b) => a * b, 1);
      const data = spec.dtype === "f32" ? new Float32Array(size * numSlots) : new Uint16Array(size * numSlots);
      this.buffers.set(spec.name, { size, data });
    }
    this.freeSlots = Array.from({ length: numSlots }, (_, i) => numSlots - 1 - i);
    this.taken = new Uint8Array(numSlots);
  }

  get numFree(): number {
    return this.freeSlots.length;
  }

  allocate(): number | undefined {
    const slot = this.freeSlots.pop();
    if (slot !== undefined) this.taken[slot] = 1;
    return slot;
  }

  reset(slot: number): void {
    this.check(slot);
    for (const { size, data } of this.buffers.values()) data.fill(0, slot * size, (slot + 1) * size);
  }

  free(slot: number): void {
    this.check(slot);
    this.taken[slot] = 0;
    this.freeSlots.push(slot);
  }

  /** The slot's part of one state: [...shape], a view into the pool. */
  view(slot: number, name: string): StateBuffer {
    this.check(slot);
    const b = this.buffers.get(name);
    if (!b) throw new KilnError("INVALID_ARGUMENT", `no state named '${name}'`);
    return b.data.subarray(slot * b.size, (slot + 1) * b.size);
  }

  private check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.numSlots || this.taken[slot] !== 1) {
      throw new KilnError("INVALID_ARGUMENT", `state slot ${slot} is not allocated`);
    }
  }
}
