/**
 * The GPU check, bundled by bench/gpu/bundle.ts into .device/main.js and run by
 * bench/gpu/check.sh on the GPU machine (from the repository root):
 *   1. open the CUDA backend (driver, NVRTC, kernels, cuBLASLt) and say what was found;
 *   2. every CUDA kernel against its CPU twin on random inputs of awkward sizes;
 *   3. golden parity of every supported fixture and the fortune model: fp32 within 1e-3, bf16
 *      weights within 2e-2, and fp32 with decode attention split along the keys;
 *   4. the fortune model's greedy text against the reference;
 *   5. timings: the fortune model, then a Llama-3.2-1B-shaped model with random weights (bf16 and
 *      f32 weights) against the floor of reading every weight once per step at copy bandwidth;
 * then a short table. Exit status: 0 when every check passed, 1 when one failed, 2 when the
 * backend did not open.
 *   node .device/main.js [--quick] [--budget <seconds>] [--json <file>]
 * --quick times a toy-sized model instead of the 1B one and shortens the timings (for the CPU
 * emulator); --budget (default
 * 270) stops starting timing sections once that much time has passed; --json writes the rows to a
 * file instead of printing them as one JSON line.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CudaBackend } from "../../runtime/cuda/backend.ts";
import { CudaExecutor } from "../../runtime/cuda/executor.ts";
import { registerCudaBackend } from "../../runtime/cuda/register.ts";
import { isKilnError } from "../../runtime/errors.ts";
import { runGolden } from "../../runtime/golden_check.ts";
import { loadModel } from "../../runtime/model_loader.ts";
import { runParityCases } from "../../tests/cuda/parity_cases.ts";
import { blocksFor, copyBandwidth, decodeTiming, prefillTokensPerSecond } from "./decode_bench.ts";
import { fortuneGreedyText } from "./fortune_text.ts";
import { LLAMA_32_1B, randomModel, TINY_LLAMA } from "./random_llama.ts";

const argv = process.argv.slice(2);
const quick = argv.includes("--quick");
const budgetAt = argv.indexOf("--budget");
const budgetS = budgetAt >= 0 ? Number(argv[budgetAt + 1]) : 270;
const jsonAt = argv.indexOf("--json");
const jsonPath = jsonAt >= 0 ? argv[jsonAt + 1] : undefined;
const root = process.env["KILN_REPO_ROOT"] ?? process.cwd();
const started = performance.now();
const elapsed = (): number => (performance.now() - started) / 1000;
const log = (msg: string): void => console.log(`[${elapsed().toFixed(1).padStart(6)}s] ${msg}`);
const fmt = (x: number | undefined): string => (x === undefined ? "-" : x.toExponential(1));

type Result = "PASS" | "FAIL" | "SKIP" | "TIME";
interface Row {
  readonly check: string;
  readonly result: Result;
  readonly detail: string;
}
const rows: Row[] = [];
const row = (check: string, result: Result, detail: string): void => {
  rows.push({ check, result, detail });
  log(`${result} ${check}: ${detail}`);
};

async function section(title: string, fn: () => Promise<void> | void): Promise<void> {
  log(`== ${title}`);
  try {
    await fn();
  } catch (e) {
    row(title, "FAIL", (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "");
    if (e instanceof Error) console.log(e.stack ?? e.message);
  }
}

const GOLDEN: readonly [string, string, boolean][] = [
  ["llama", "tests/fixtures/llama", false],
  ["llama-bf16", "tests/fixtures/llama-bf16", true],
  ["qwen2", "tests/fixtures/qwen2", false],
  ["qwen3", "tests/fixtures/qwen3", false],
  ["mistral-swa", "tests/fixtures/mistral-swa", false],
  ["fortune-llama", "assets/fortune-llama", false],
  ["qwen3-moe", "tests/fixtures/qwen3-moe", false],
  ["lfm2", "tests/fixtures/lfm2", false],
  ["minimax", "tests/fixtures/minimax", false],
];
/** bf16 rounding flips nearly tied expert choices in these tiny MoE fixtures: fp32 parity only. */
const FP32_ONLY = new Set(["qwen3-moe", "minimax"]);

async function checks(b: CudaBackend): Promise<void> {
  await section("kernel parity vs CPU twins", () => {
    const results = runParityCases(b);
    for (const r of results) log(`  ${r.ok ? "ok  " : "FAIL"} ${r.name.padEnd(56)} err ${fmt(r.maxErr)} (tol ${fmt(r.tol)})`);
    const failed = results.filter((r) => !r.ok);
    const worst = results.reduce((w, r) => Math.max(w, r.tol > 0 ? r.maxErr / r.tol : r.maxErr === 0 ? 0 : Infinity), 0);
    row(`kernel parity (${results.length} cases)`, failed.length === 0 ? "PASS" : "FAIL", failed.length === 0 ? `worst err/tol ${worst.toFixed(2)}` : `failed: ${failed.map((r) => r.name).join("; ")}`);
  });

  for (const [name, dir, bf16] of GOLDEN) {
    await section(`golden ${name}`, async () => {
      const { results, summary } = await runGolden(join(root, dir), { tolerance: 1e-3, backend: "cuda", ropeFreqBf16: bf16 });
      for (const r of results) log(`  ${JSON.stringify(r)}`);
      row(`golden ${name} (fp32, 1e-3)`, summary.ok ? "PASS" : "FAIL", `prefill ${fmt(summary.worst_prefill_rel_err)} greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
    });
  }

  await section("golden with bf16 weights", async () => {
    const bf16 = registerCudaBackend({ weightDtype: "bf16" });
    try {
      for (const [name, dir, ropeBf16] of GOLDEN) {
        if (FP32_ONLY.has(name)) continue;
        const { summary } = await runGolden(join(root, dir), { tolerance: 2e-2, backend: "cuda", ropeFreqBf16: ropeBf16 });
        row(`golden ${name} (bf16 weights, 2e-2)`, summary.ok ? "PASS" : "FAIL", `prefill ${fmt(summary.worst_prefill_rel_err)} greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
      }
    } finally {
      bf16.dispose();
    }
  });

  await section("golden with attention split along the keys", async () => {
    // forces the split-KV decode path (short contexts never split on their own)
    const split = registerCudaBackend({ attention: { minKeysToSplit: 2, keysPerSplit: 4 } });
    try {
      for (const [name, dir] of [["mistral-swa", "tests/fixtures/mistral-swa"], ["qwen3", "tests/fixtures/qwen3"]] as const) {
        const { summary } = await runGolden(join(root, dir), { tolerance: 1e-3, backend: "cuda" });
        row(`golden ${name}, split-KV decode`, summary.ok ? "PASS" : "FAIL", `greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
      }
    } finally {
      split.dispose();
    }
  });

  await section("fortune greedy text", async () => {
    const t = await fortuneGreedyText(join(root, "assets/fortune-llama"), "cuda");
    for (const m of t.mismatches) log(`  ${m}`);
    row("fortune greedy text", t.matched === t.total ? "PASS" : "FAIL", `${t.matched}/${t.total} prompts identical to the reference`);
  });
}

async function timings(b: CudaBackend): Promise<void> {
  const steps = quick ? 6 : 64;
  await section("timing: fortune model", async () => {
    const loaded = await loadModel(join(root, "assets/fortune-llama"));
    const V = loaded.model.vocabSize;
    const ex = new CudaExecutor(loaded.graph, loaded.weights, b, { numBlocks: blocksFor(1024, 16), blockSize: 16 });
    try {
      for (const len of quick ? [64] : [128, 512]) row(`fortune prefill ${len} tokens`, "TIME", `${prefillTokensPerSecond(ex, len, V).toFixed(0)} tokens/s`);
      // at 800 keys a decode step splits attention along the keys (kiln_attention_combine)
      for (const ctx of quick ? [16] : [16, 256, 800]) {
        const d = decodeTiming(ex, ctx, steps, V);
        row(`fortune decode b=1 ctx ${ctx}`, "TIME", `${d.msPerStep.toFixed(3)} ms/step (greedy on device ${d.greedyMsPerStep.toFixed(3)})`);
      }
    } finally {
      ex.dispose();
    }
  });

  if (elapsed() > budgetS) {
    row("1B decode", "SKIP", `over the ${budgetS}s budget`);
    return;
  }
  const big = quick ? "tiny" : "1B";
  await section(`timing: Llama-3.2-${big}-shaped model, random weights`, async () => {
    const m = await randomModel(quick ? TINY_LLAMA : LLAMA_32_1B);
    log(`  ${(m.parameters / 1e9).toFixed(3)}B parameters made in-process`);
    const bw = copyBandwidth(b.device);
    log(`  device copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read + write)`);
    const ctx = 128;
    for (const weightDtype of ["bf16", "f32"] as const) {
      if (elapsed() > budgetS) {
        row(`${big} decode (${weightDtype} weights)`, "SKIP", `over the ${budgetS}s budget`);
        continue;
      }
      const t0 = performance.now();
      const ex = new CudaExecutor(m.graph, m.weights, b, { numBlocks: blocksFor(Math.max(512, ctx + 2 * steps + 16), 16), blockSize: 16, weightDtype });
      log(`  ${weightDtype} weights uploaded (${(ex.deviceBytes / 2 ** 30).toFixed(2)} GiB held on the device) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
      try {
        row(`${big} prefill 512 tokens (${weightDtype})`, "TIME", `${prefillTokensPerSecond(ex, 512, m.vocabSize).toFixed(0)} tokens/s`);
        const d = decodeTiming(ex, ctx, steps, m.vocabSize);
        // every weight read once per step, the tied LM head included
        const floorMs = ((m.parameters * (weightDtype === "bf16" ? 2 : 4)) / bw) * 1000;
        row(
          `${big} decode b=1 ctx ${ctx} (${weightDtype})`,
          "TIME",
          `${d.msPerStep.toFixed(2)} ms/step (greedy on device ${d.greedyMsPerStep.toFixed(2)}); weight-read floor ${floorMs.toFixed(2)} ms → ${((floorMs / d.greedyMsPerStep) * 100).toFixed(0)}% of floor`,
        );
      } finally {
        ex.dispose();
      }
    }
  });
}

function printTable(): void {
  const w = Math.max(...rows.map((r) => r.check.length), 5);
  console.log("");
  console.log(`${"check".padEnd(w)}  result  detail`);
  console.log(`${"-".repeat(w)}  ------  ------`);
  for (const r of rows) console.log(`${r.check.padEnd(w)}  ${r.result.padEnd(6)}  ${r.detail}`);
}

log(`kiln GPU check: node ${process.version}, repository ${root}${quick ? ", --quick" : ""}`);
const cuda = registerCudaBackend();
let backend: CudaBackend;
try {
  backend = cuda.backend();
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  console.log(`kiln GPU check: the CUDA backend did not open${isKilnError(e) ? ` [${e.code}]` : ""}:\n${msg}`);
  row("open CUDA backend", "FAIL", msg.split("\n")[0] ?? "");
  printTable();
  process.exit(2);
}
log(`device: ${backend.describe()}`);
log(`libcuda ${backend.device.info.libraryPath}; libnvrtc ${backend.compiler.libraryPath}; libcublasLt ${backend.blas.libraryPath}; CUDA headers ${backend.compiler.includeDir ?? "(none found)"}`);
for (const r of backend.kernels.compileReport) log(`  ${r.file}: ${r.fromCache ? "cached CUBIN" : "compiled"} in ${r.ms.toFixed(0)} ms`);
row("open CUDA backend", "PASS", backend.describe());

await checks(backend);
await timings(backend);
cuda.dispose();

const failed = rows.filter((r) => r.result === "FAIL").length;
const report = JSON.stringify({ gpu_check: { failed, seconds: Number(elapsed().toFixed(1)), rows } });
if (jsonPath !== undefined) writeFileSync(jsonPath, report + "\n");
else console.log(report);
printTable();
process.exit(failed === 0 ? 0 : 1);
