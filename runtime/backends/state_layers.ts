/**
 * The runtime side of a graph's state layers (mamba-like layers' per-sequence state): the slot
 * pool's specs, one per state tensor, named `<stateKey>.<tensor>`; and, for one step, each
 * sequence's rows and its view of a state tensor, which custom ops update in place.
 */
import type { StateLayerSpec } from "../../compiler/ir.ts";
import { KilnError } from "../engine/errors.ts";
import type { StepInputs } from "./kv_cache.ts";
import { StateSlots, type StateSpec } from "../engine/state_slots.ts";
import { DEFAULT_STATE_SLOTS } from "./step_executor.ts";

export function stateName(stateKey: string, tensor: string): string {
  return `${stateKey}.${tensor}`;
}

export function stateSpecs(layers: readonly StateLayerSpec[]): StateSpec[] {
  return layers.flatMap((l) => l.tensors.map((t) => ({ name: stateName(l.stateKey, t.name), shape: t.shape, dtype: t.dtype })));
}

/** Host-memory slots for the graph's state layers; undefined when it has none. */
export function hostStateSlots(layers: readonly StateLayerSpec[], numSlots: number | undefined): StateSlots | undefined {
  return layers.length === 0 ? undefined : new StateSlots(stateSpecs(layers), numSlots ?? DEFAULT_STATE_SLOTS);
}

/** One sequence of a step: its rows [start, end) and its slot's view of one state tensor. */
export interface SeqState {
  readonly start: number;
  readonly end: number;
  readonly state: Float32Array;
}

/** Each sequence's rows and f32 state view for `<stateKey>.<tensor>`; a step without slots is refused. */
export function seqStates(step: StepInputs, pool: StateSlots | undefined, stateKey: string, tensor: string): SeqState[] {
  const slots = step.stateSlots;
  const { numSeqs, queryStartLoc } = step.attn;
  if (pool === undefined || slots === undefined || slots.length !== numSeqs) {
    throw new KilnError("INVALID_ARGUMENT", `layer '${stateKey}' keeps per-sequence state: every sequence of the step needs a state slot`);
  }
  return Array.from(slots, (slot, s) => {
    const state = pool.view(slot, stateName(stateKey, tensor));
    if (!(state instanceof Float32Array)) throw new KilnError("INVALID_ARGUMENT", `state '${stateName(stateKey, tensor)}' is not f32`);
    return { start: queryStartLoc[s]!, end: queryStartLoc[s + 1]!, state };
  });
}
