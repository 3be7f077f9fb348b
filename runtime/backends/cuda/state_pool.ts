/**
 * Per-sequence state of mamba-like layers in device memory: one buffer per state tensor,
 * [numSlots + 1, ...shape] f32, named as the host pool names them (`<stateKey>.<tensor>`). Slot
 * bookkeeping happens on the host; resetting a slot zeroes its part of every buffer on the device.
 * One slot more than the pool hands out, `paddingSlot`, takes the discarded state of the padding
 * rows of a CUDA-graph batch.
 */
import type { StateLayerSpec } from "../../../compiler/ir.ts";
import type { StatePool, StateSpec } from "../../engine/state_slots.ts";
import { KilnError } from "../../engine/errors.ts";
import { stateSpecs } from "../state_layers.ts";
import type { CudaBackend } from "./backend.ts";
import type { DevicePtr } from "./device.ts";

export class DeviceStatePool implements StatePool {
  readonly specs: readonly StateSpec[];
  private readonly buffers = new Map<string, { readonly ptr: DevicePtr; readonly bytesPerSlot: number }>();
  /** free slot ids; pop() hands out low ids first */
  private readonly freeSlots: number[];
  private readonly taken: Uint8Array;
  /** never handed out: padding rows of a captured batch write their state here */
  readonly paddingSlot: number;

  constructor(
    private readonly backend: CudaBackend,
    layers: readonly StateLayerSpec[],
    readonly numSlots: number,
    /** allocates device memory the caller owns and frees */
    alloc: (bytes: number) => DevicePtr,
  ) {
    if (!Number.isInteger(numSlots) || numSlots < 1) throw new KilnError("INVALID_ARGUMENT", `a state pool needs at least one slot (got ${numSlots})`);
    this.specs = stateSpecs(layers);
    this.paddingSlot = numSlots;
    for (const spec of this.specs) {
      if (spec.dtype !== "f32") throw new KilnError("INVALID_ARGUMENT", `state '${spec.name}' is ${spec.dtype}; the CUDA backend keeps f32 state`);
      const bytesPerSlot = spec.shape.reduce((a, b) => a * b, 1) * 4;
      const ptr = alloc(bytesPerSlot * (numSlots + 1));
      backend.device.zero(ptr, bytesPerSlot * (numSlots + 1));
      this.buffers.set(spec.name, { ptr, bytesPerSlot });
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
    for (const { ptr, bytesPerSlot } of this.buffers.values()) this.backend.device.zero(ptr + BigInt(slot * bytesPerSlot), bytesPerSlot);
  }

  free(slot: number): void {
    this.check(slot);
    this.taken[slot] = 0;
    this.freeSlots.push(slot);
  }

  /** the device buffer [numSlots + 1, ...shape] of one state tensor */
  buffer(name: string): DevicePtr {
    const b = this.buffers.get(name);
    if (b === undefined) throw new Error(`no device state '${name}'`);
    return b.ptr;
  }

  private check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.numSlots || this.taken[slot] !== 1) {
      throw new KilnError("INVALID_ARGUMENT", `state slot ${slot} is not allocated`);
    }
  }
}
