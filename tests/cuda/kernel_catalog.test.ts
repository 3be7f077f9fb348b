// The host's kernel catalog (runtime/backends/cuda/kernel_catalog.ts) against the kernels' extern "C"
// signatures in kernels/cuda/*.cu: same kernels, same files, same parameter kinds. A drift here
// would pass garbage to a kernel at launch time.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ArgKind } from "../../runtime/backends/cuda/kernel_args.ts";
import { KERNELS } from "../../runtime/backends/cuda/kernel_catalog.ts";
import { cudaSources, KERNELS_DIR } from "./emulator/build_emulator.ts";

function kindOf(param: string): ArgKind {
  const p = param.replace(/\s+/g, " ").trim();
  if (p.includes("*")) return "ptr";
  const type = p.replace(/\s*\w+$/, "").replace(/^const /, "");
  switch (type) {
    case "int":
      return "i32";
    case "long long":
      return "i64";
    case "float":
      return "f32";
    default:
      throw new Error(`parameter type '${type}' (${param}) has no catalog kind`);
  }
}

function declared(): Map<string, { file: string; args: ArgKind[] }> {
  const out = new Map<string, { file: string; args: ArgKind[] }>();
  for (const file of cudaSources()) {
    const src = readFileSync(join(KERNELS_DIR, file), "utf8");
    for (const m of src.matchAll(/extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)/g)) {
      out.set(m[1] ?? "", { file, args: (m[2] ?? "").split(",").map(kindOf) });
    }
  }
  return out;
}

describe("kernel catalog", () => {
  it("matches the extern \"C\" kernels of kernels/cuda", () => {
    const fromSources = Object.fromEntries(declared());
    const fromCatalog = Object.fromEntries(Object.entries(KERNELS).map(([name, spec]) => [name, { file: spec.file, args: [...spec.args] }]));
    expect(fromCatalog).toEqual(fromSources);
  });

  it("every kernel file documents its launch configuration", () => {
    for (const file of cudaSources()) expect(readFileSync(join(KERNELS_DIR, file), "utf8"), file).toMatch(/[Ll]aunch: grid/);
  });
});
