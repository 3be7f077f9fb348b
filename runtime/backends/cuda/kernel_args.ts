/**
 * Kernel arguments in stable native memory, as cuLaunchKernel wants them: `kernelParams[i]` is
 * the address of argument i's value. The values live in one koffi-allocated block of 8-byte slots
 * (never a JS buffer the GC may move); the address table is built once. The driver copies the
 * values at launch, so one KernelArgs is reused for every launch on a thread.
 */
import * as koffi from "koffi";
import { assertNever } from "../../../compiler/ir.ts";

/** A kernel parameter's C type: a device pointer, int, long long or float. */
export type ArgKind = "ptr" | "i32" | "i64" | "f32";

export type KernelArg =
  | { readonly kind: "ptr"; readonly value: bigint }
  | { readonly kind: "i32"; readonly value: number }
  | { readonly kind: "i64"; readonly value: number }
  | { readonly kind: "f32"; readonly value: number };

const SLOT = 8;

export class KernelArgs {
  private readonly memory: unknown;
  private readonly view: DataView;
  /** [maxArgs] addresses of the slots: the kernelParams array */
  readonly table: BigUint64Array;

  constructor(readonly maxArgs = 32) {
    this.memory = koffi.alloc("uint8", maxArgs * SLOT);
    this.view = new DataView(koffi.view(this.memory, maxArgs * SLOT));
    const base = koffi.address(this.memory);
    this.table = new BigUint64Array(maxArgs);
    for (let i = 0; i < maxArgs; i++) this.table[i] = base + BigInt(i * SLOT);
  }

  /** Writes the values into their slots; returns the kernelParams table to pass to the launch. */
  write(args: readonly KernelArg[]): BigUint64Array {
    if (args.length > this.maxArgs) throw new Error(`${args.length} kernel arguments exceed the ${this.maxArgs} slots`);
    args.forEach((a, i) => {
      const at = i * SLOT;
      switch (a.kind) {
        case "ptr":
          this.view.setBigUint64(at, a.value, true);
          return;
        case "i32":
          if (!Number.isInteger(a.value) || a.value < -(2 ** 31) || a.value >= 2 ** 31) {
            throw new RangeError(`kernel argument ${i} (int) is ${a.value}`);
          }
          this.view.setInt32(at, a.value, true);
          return;
        case "i64":
          if (!Number.isSafeInteger(a.value)) throw new RangeError(`kernel argument ${i} (long long) is ${a.value}`);
          this.view.setBigInt64(at, BigInt(a.value), true);
          return;
        case "f32":
          this.view.setFloat32(at, a.value, true);
          return;
        default:
          return assertNever(a, "kernel argument");
      }
    });
    return this.table;
  }

  dispose(): void {
    koffi.free(this.memory);
  }
}
