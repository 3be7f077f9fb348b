// The instruction-set level of generated CPU code: this machine's (`native`) or a portable x86-64
// level (KILN_CPU_ARCH), and which recorded builds may run on a CPU with given flags.
import { describe, expect, it } from "vitest";
import { builtForLabel, cFlags, cpuArch, hostArch, runsHere } from "../../compiler/toolchain.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";

const V3 = new Set(["cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]);

describe("CPU instruction-set level", () => {
  it("is native unless KILN_CPU_ARCH names a known level; anything else is a typed error", () => {
    expect(cpuArch({})).toBe("native");
    expect(cpuArch({ KILN_CPU_ARCH: "" })).toBe("native");
    expect(cpuArch({ KILN_CPU_ARCH: "x86-64-v3" })).toBe("x86-64-v3");
    let err: unknown;
    try {
      cpuArch({ KILN_CPU_ARCH: "skylake; rm -rf /" });
    } catch (e) {
      err = e;
    }
    expect(isKilnError(err, "INVALID_ARGUMENT")).toBe(true);
    expect(cFlags("x86-64-v3")).toContain("-march=x86-64-v3");
    expect(cFlags("native")).toContain("-march=native");
  });

  it("a native build runs only on its CPU model; a level's build runs where every flag of the level and those below is present", () => {
    expect(runsHere(hostArch(), new Set())).toBe(true);
    expect(runsHere(`${process.arch} Some Other CPU @ 2.0GHz`, V3)).toBe(false);
    expect(builtForLabel("native")).toBe(hostArch());
    if (process.arch !== "x64") return;
    expect(builtForLabel("x86-64-v3")).toBe("x64 x86-64-v3");
    expect(runsHere("x64 x86-64-v3", V3)).toBe(true);
    expect(runsHere("x64 x86-64", new Set())).toBe(true);
    expect(runsHere("x64 x86-64-v3", new Set([...V3].filter((f) => f !== "avx2")))).toBe(false);
    expect(runsHere("x64 x86-64-v3", new Set([...V3].filter((f) => f !== "popcnt")))).toBe(false); // v2 is part of v3
    expect(runsHere("x64 x86-64-v4", V3)).toBe(false);
    expect(runsHere("arm64 x86-64", V3)).toBe(false);
  });
});
