// Expert weights in 16 bits on the emulated CUDA backend. The experts' stacked matrices (w13, w2)
// are weight matrices like a GEMM's: with bf16 weights they are held and read in bf16 (half the
// bytes of the largest tensors of a MoE model) while the router stays f32. The kernels are checked
// against their twins in the parity cases; here the whole models run. Rounding the weights moves
// near-tied routing decisions, which moves some prefill rows past any fixed bf16 tolerance (why
// the bf16 golden suite leaves the MoE fixtures out), so what is asserted is the greedy tokens.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compile } from "../../compiler/pipeline.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixtureFacts } from "../fixtures/index.ts";
import { buildEmulator, emulatorEnv } from "./emulator/build_emulator.ts";

const cacheDir = mkdtempSync(join(tmpdir(), "kiln-emu-moe-"));

beforeAll(() => {
  Object.assign(process.env, emulatorEnv(buildEmulator()), { KILN_CACHE_DIR: cacheDir });
}, 300_000);

afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe("MoE experts with bf16 weights on the emulated CUDA backend", () => {
  it("the program holds the experts' matrices in bf16 and the router in f32", async () => {
    const { graph } = await loadModel(fixtureFacts("qwen3-moe").dir);
    const { program } = compile(graph, { target: { kind: "cuda", arch: "sm_90" }, dtype: "bf16" });
    const params = program.buffers.filter((b) => b.role.kind === "param").map((b) => [b.role.kind === "param" ? b.role.name : "", b.elem] as const);
    const experts = params.filter(([name]) => /experts\.w(13|2)/.test(name));
    const routers = params.filter(([name]) => /\.gate\.weight$/.test(name));
    expect(experts.length).toBeGreaterThan(0);
    expect(experts.every(([, elem]) => elem === "bf16")).toBe(true);
    expect(routers.length).toBeGreaterThan(0);
    expect(routers.every(([, elem]) => elem === "f32")).toBe(true);
  }, 60_000);

  for (const name of ["qwen3-moe", "minimax", "jamba"] as const) {
    it(`${name}: greedy decoding with bf16 experts gives the reference's tokens`, async () => {
      const cuda = registerCudaBackend({ weightDtype: "bf16" });
      try {
        const { summary } = await runGolden(fixtureFacts(name).dir, { tolerance: 2e-2, backend: "cuda" });
        expect(summary.greedy_token_match, JSON.stringify(summary)).toBe("24/24");
        // a path that silently ran the experts in f32 would match the fp32 logits to ~1e-6
        expect(summary.worst_greedy_logits_rel_err).toBeGreaterThan(1e-4);
      } finally {
        cuda.dispose();
      }
    }, 300_000);
  }
});
