/**
 * Launching one step's units (the plan's fused kernels and node kernels, in order) against the
 * buffers of that step: its packed inputs, its arena's activations, the weights and KV pool.
 * Launches are queued on the device's stream; a range of units can be captured as a graph piece.
 */
import { assertNever, type Graph, type SymbolicDim, type ValueId } from "../../../compiler/ir.ts";
import type { BufferSpec } from "../../../compiler/program.ts";
import type { Arena } from "./arena.ts";
import type { CudaDevice, DevicePtr } from "./device.ts";
import { launchFused, type ExecStep } from "./fused_plan.ts";
import type { KvPoolLayer, NodeKernels, StepFrame } from "./node_kernels.ts";
import type { PackedStep } from "./step_inputs.ts";

/** What every step's launches share: the graph, its units, weights, KV pool and node kernels. */
export interface LaunchContext {
  readonly graph: Graph;
  readonly units: readonly ExecStep[];
  readonly weights: ReadonlyMap<string, DevicePtr>;
  readonly kvPool: ReadonlyMap<string, KvPoolLayer>;
  readonly nodes: NodeKernels;
  readonly device: CudaDevice;
}

export interface StepLauncher {
  /** queues units [from, to) */
  run(from: number, to: number): void;
  /** the logits' address in the arena */
  logits(): DevicePtr;
}

/** The launcher of one step whose packed inputs are at `inputs`. */
export function stepLauncher(ctx: LaunchContext, packed: PackedStep, arena: Pick<Arena, "values" | "scratch" | "cast">, inputs: DevicePtr): StepLauncher {
  const sizes: Record<SymbolicDim, number> = { T: packed.T, S: packed.S };
  const inputAt: Readonly<Record<string, number>> = {
    input_ids: packed.layout.inputIds,
    positions: packed.layout.positions,
    logits_indices: packed.layout.logitsIndices,
  };
  const ptr = (id: ValueId): DevicePtr => {
    const n = ctx.graph.nodes[id];
    if (n === undefined) throw new Error(`no value ${id}`);
    if (n.kind === "input") return inputs + BigInt((inputAt[n.name] ?? 0) * 4);
    const p = n.kind === "param" ? ctx.weights.get(n.name) : arena.values.get(id);
    if (p === undefined) throw new Error(`value ${id} has no device buffer`);
    return p;
  };
  const frame: StepFrame = { sizes, packed, inputs, scratch: arena.scratch, cast: arena.cast, ptr };
  const slotMapping = inputs + BigInt(packed.layout.slotMapping * 4);
  const address = (b: BufferSpec): DevicePtr => {
    const role = b.role;
    switch (role.kind) {
      case "input":
        return role.name === "slot_mapping" ? slotMapping : inputs + BigInt((inputAt[role.name] ?? 0) * 4);
      case "param":
      case "activation": {
        const p = role.kind === "param" ? ctx.weights.get(role.name) : arena.values.get(role.node);
        if (p === undefined) throw new Error(`program buffer ${b.id} has no device memory`);
        return p;
      }
      case "kv_cache": {
        const layer = ctx.kvPool.get(role.cacheKey);
        if (layer === undefined) throw new Error(`no KV pool for '${role.cacheKey}'`);
        return role.which === "k" ? layer.k : layer.v;
      }
      default:
        return assertNever(role, "buffer role");
    }
  };
  return {
    run: (from, to) => {
      for (let i = from; i < to; i++) {
        const u = ctx.units[i]!;
        if (u.kind === "node") ctx.nodes.run(ctx.graph.nodes[u.node]!, frame);
        else launchFused(ctx.device, u.kernel, sizes, address);
      }
    },
    logits: () => ptr(ctx.graph.outputs.logits),
  };
}
