/**
 * The CUDA executor's activation arenas in device memory: for steps of up to T tokens and S
 * logits rows, one allocation for every activation (packed by activation_plan.ts), the scratch
 * of attention and the experts kernels, the 16-bit copy of a GEMM's input, the greedy picks (with
 * the split argmax's partials) and the packed step inputs.
 */
import type { ValueId } from "../../../compiler/ir.ts";
import type { ArenaSizes } from "./activation_plan.ts";
import { argmaxPartsBytes } from "./argmax_plan.ts";
import type { CudaDevice, DevicePtr } from "./device.ts";

/** Activation buffers for steps of up to T tokens and S logits rows. */
export interface Arena {
  readonly T: number;
  readonly S: number;
  /** the one allocation every activation lives in */
  readonly base: DevicePtr;
  /** each value's address in it (values computed inside a fused kernel have none) */
  readonly values: ReadonlyMap<ValueId, DevicePtr>;
  readonly scratch: DevicePtr;
  readonly cast: DevicePtr; // 16-bit copy of a GEMM's input activations (16-bit weights only)
  readonly tokens: DevicePtr; // [S] i32, greedy picks
  readonly argmaxParts: DevicePtr; // [S, ARGMAX_MAX_BLOCKS] f32 values, then as many i32 indices
  readonly inputs: DevicePtr;
  readonly inputCapacity: number; // i32 elements
  readonly bytes: number;
}

/** Allocates an arena laid out as `sizes` says; `withCast` when some GEMM weight is bf16 or f16. */
export function allocArena(
  dev: CudaDevice,
  sizes: ArenaSizes,
  o: { readonly T: number; readonly S: number; readonly inputCapacity: number; readonly withCast: boolean },
): Arena {
  let bytes = 0;
  const alloc = (n: number): DevicePtr => {
    bytes += n;
    return dev.alloc(n);
  };
  const base = alloc(Math.max(4, sizes.layout.bytes));
  const values = new Map<ValueId, DevicePtr>();
  for (const [id, offset] of sizes.layout.offsets) values.set(id, base + BigInt(offset));
  const arena = {
    T: o.T,
    S: o.S,
    base,
    values,
    scratch: alloc(sizes.scratchBytes),
    cast: alloc(o.withCast ? sizes.castBytes : 4),
    tokens: alloc(o.S * 4),
    argmaxParts: alloc(argmaxPartsBytes(o.S)),
    inputs: alloc(o.inputCapacity * 4),
    inputCapacity: o.inputCapacity,
  };
  return { ...arena, bytes };
}

/** Frees an arena once the device is done with it. */
export function releaseArena(dev: CudaDevice, a: Arena): void {
  dev.synchronize();
  dev.free(a.base);
  dev.free(a.scratch);
  dev.free(a.cast);
  dev.free(a.tokens);
  dev.free(a.argmaxParts);
  dev.free(a.inputs);
}
