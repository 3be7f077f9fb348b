/**
 * The GPU check, bundled by bench/gpu/bundle.ts into .device/main.js and run by
 * bench/gpu/check.sh on the GPU machine (from the repository root):
 *   1. open the CUDA backend (driver, NVRTC, kernels, cuBLASLt) and say what was found;
 *   2. every CUDA kernel against its CPU twin on random inputs of awkward sizes;
 *   3. golden parity of every supported fixture and the fortune model: fp32 within 1e-3, bf16
 *      weights within 2e-2, f16 weights within 2e-2 on a sample, and fp32 with decode attention
 *      split along the keys;
 *   4. the fortune model's greedy text against the reference;
 *   5. timings (rows marked TIME, never pass or fail): the fortune model; then models of the
 *      Llama-3.2-1B and Qwen3-0.6B shapes with random bf16 weights made in-process: prefill
 *      tokens/s, batch-1 decode ms/step against the floor of reading every weight once per step
 *      at copy bandwidth, and the host's share of a decode step; offline throughput of the
 *      batching engine (256 prompts, input and output lengths uniform in 100..1024, ignore_eos,
 *      greedy; KV pool from --gpu-memory-utilization) in output tokens/s; the 1B decode again
 *      with f32 weights if time is left;
 * then a short table. The order puts first what matters most when time is short: kernel parity,
 * one golden and the Llama-3.2-1B decode with its profile; then the other goldens, the other
 * timings and sampling (greedy split and one block a row, temperature 0.8 / top-p 0.95, top-k 50,
 * at batch 1 and 64 over 128k and 152k vocabularies). A sticky CUDA error (700–719: the context is
 * lost, every later call would fail) ends the check at once with the section that caused it.
 * With --json the rows are written after each one, so a run killed by its timeout keeps what it
 * measured. Exit status: 0 when every check passed, 1 when one failed, 2 when the backend did not
 * open.
 *   node .device/main.js [--quick | --smoke] [--budget <seconds>] [--json <file>] [--gpu-memory-utilization <f>]
 * --quick times toy-sized models with short prompts (16 for throughput) instead (for the CPU
 * emulator); --smoke is --quick with one golden and no 16-bit, split-KV or fortune-text checks
 * (what the test of the bundle runs); --budget (default 270) stops starting timing sections once that much time has
 * passed, and cuts the throughput runs short at it (their rows then say PARTIAL);
 * --gpu-memory-utilization (default 0.9, 0.05 with --quick) sizes the throughput runs' KV pool;
 * --json writes the rows to a file instead of printing them as one JSON line.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { deviceWeightBytes, kvBytesPerBlock } from "../../runtime/backends/cuda/memory_budget.ts";
import { registerCudaBackend } from "../../runtime/backends/cuda/register.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { runGolden } from "../../cli/golden_check.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { runParityCases } from "../../tests/cuda/parity_cases.ts";
import { CudaError } from "../../runtime/backends/cuda/check.ts";
import { samplingTimings } from "./sampling_bench.ts";
import { batchedDecodeTiming, blocksFor, copyBandwidth, decodeProfile, decodeTiming, prefillTokensPerSecond } from "./decode_bench.ts";
import { fortuneGreedyText } from "./fortune_text.ts";
import type { JsonObject } from "../../models/hf_config.ts";
import { offlineThroughput } from "./offline_throughput.ts";
import { LLAMA_32_1B, QWEN3_06B, randomModel, TINY_LLAMA, TINY_QWEN3, type RandomModel } from "./random_llama.ts";
import { dtypeBytes, type FloatDtype } from "../../compiler/dtype.ts";

const argv = process.argv.slice(2);
/** --smoke: what a test of the bundle needs (the backend opens, kernel parity, one golden, the quick timings start) */
const smoke = argv.includes("--smoke");
const quick = smoke || argv.includes("--quick");
const budgetAt = argv.indexOf("--budget");
const budgetS = budgetAt >= 0 ? Number(argv[budgetAt + 1]) : 270;
const jsonAt = argv.indexOf("--json");
const jsonPath = jsonAt >= 0 ? argv[jsonAt + 1] : undefined;
const utilAt = argv.indexOf("--gpu-memory-utilization");
// the emulator's device has 8 GiB of host memory behind it: --quick takes a small share
const gpuMemoryUtilization = utilAt >= 0 ? Number(argv[utilAt + 1]) : quick ? 0.05 : 0.9;
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
const report = (complete: boolean): string =>
  JSON.stringify({ gpu_check: { failed: rows.filter((r) => r.result === "FAIL").length, seconds: Number(elapsed().toFixed(1)), complete, rows } });
const row = (check: string, result: Result, detail: string): void => {
  rows.push({ check, result, detail });
  log(`${result} ${check}: ${detail}`);
  // row by row: a run its timeout kills keeps every row measured so far
  if (jsonPath !== undefined) writeFileSync(jsonPath, report(false) + "\n");
};

/** A CUDA error after which the context is lost: an illegal address or instruction, a kernel fault. */
function stickyCudaError(e: unknown): CudaError | undefined {
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    if (c instanceof CudaError && c.library === "libcuda" && c.status >= 700 && c.status <= 719 && c.status !== 701) return c;
  }
  return undefined;
}

/** Thrown past every section once the context is lost. */
class CheckStopped extends Error {}

async function section(title: string, fn: () => Promise<void> | void): Promise<void> {
  log(`== ${title}`);
  try {
    await fn();
  } catch (e) {
    const sticky = stickyCudaError(e);
    row(title, "FAIL", `${sticky !== undefined ? "sticky CUDA error, check stopped: " : ""}${(e instanceof Error ? e.message : String(e)).split("\n")[0] ?? ""}`);
    if (e instanceof Error) console.log(e.stack ?? e.message);
    if (sticky !== undefined) throw new CheckStopped(`${title}: ${sticky.statusName}`);
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
  ["mamba", "tests/fixtures/mamba", false],
  ["mamba2", "tests/fixtures/mamba2", false],
  ["jamba", "tests/fixtures/jamba", false],
  ["bamba", "tests/fixtures/bamba", false],
  ["opt", "tests/fixtures/opt", false],
  ["gpt2", "tests/fixtures/gpt2", false],
  ["gemma2", "tests/fixtures/gemma2", false],
  ["gemma3", "tests/fixtures/gemma3", false],
];
/** The fixtures the f16 path is checked on: attention, sliding window, soft-capping, short conv and Mamba-2 hybrids. */
const F16_SAMPLE = new Set(["llama", "qwen3", "mistral-swa", "gemma2", "lfm2", "bamba"]);

/** bf16 rounding flips nearly tied expert choices in these tiny MoE fixtures: fp32 parity only. */
const FP32_ONLY = new Set(["qwen3-moe", "minimax", "jamba"]);

/** What matters most: every kernel against its twin, and one golden end to end. */
async function firstChecks(b: CudaBackend): Promise<void> {
  await section("kernel parity vs CPU twins", () => {
    const results = runParityCases(b);
    for (const r of results) log(`  ${r.ok ? "ok  " : "FAIL"} ${r.name.padEnd(56)} err ${fmt(r.maxErr)} (tol ${fmt(r.tol)})`);
    const failed = results.filter((r) => !r.ok);
    const worst = results.reduce((w, r) => Math.max(w, r.tol > 0 ? r.maxErr / r.tol : r.maxErr === 0 ? 0 : Infinity), 0);
    row(`kernel parity (${results.length} cases)`, failed.length === 0 ? "PASS" : "FAIL", failed.length === 0 ? `worst err/tol ${worst.toFixed(2)}` : `failed: ${failed.map((r) => r.name).join("; ")}`);
  });

  await golden(GOLDEN[0]!);
}

async function golden([name, dir, bf16]: readonly [string, string, boolean]): Promise<void> {
  await section(`golden ${name}`, async () => {
      const { results, summary } = await runGolden(join(root, dir), { tolerance: 1e-3, backend: "cuda", ropeFreqBf16: bf16 });
      for (const r of results) log(`  ${JSON.stringify(r)}`);
    row(`golden ${name} (fp32, 1e-3)`, summary.ok ? "PASS" : "FAIL", `prefill ${fmt(summary.worst_prefill_rel_err)} greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
  });
}

/** The rest of the correctness checks: every golden, 16-bit storage, split-KV decode, the fortune text. */
async function moreChecks(): Promise<void> {
  if (smoke) {
    row("other goldens and the fortune text", "SKIP", "--smoke");
    return;
  }
  for (const g of GOLDEN.slice(1)) await golden(g);
  await section("golden with bf16 weights and KV cache", async () => {
    const bf16 = registerCudaBackend({ weightDtype: "bf16" });
    try {
      for (const [name, dir, ropeBf16] of GOLDEN) {
        if (FP32_ONLY.has(name)) continue;
        const { summary } = await runGolden(join(root, dir), { tolerance: 2e-2, backend: "cuda", ropeFreqBf16: ropeBf16 });
        row(`golden ${name} (bf16 weights + KV, 2e-2)`, summary.ok ? "PASS" : "FAIL", `prefill ${fmt(summary.worst_prefill_rel_err)} greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
      }
    } finally {
      bf16.dispose();
    }
  });

  await section("golden with f16 weights and KV cache", async () => {
    const f16 = registerCudaBackend({ weightDtype: "f16" });
    try {
      for (const [name, dir, ropeBf16] of GOLDEN) {
        if (!F16_SAMPLE.has(name)) continue;
        const { summary } = await runGolden(join(root, dir), { tolerance: 2e-2, backend: "cuda", ropeFreqBf16: ropeBf16 });
        row(`golden ${name} (f16 weights + KV, 2e-2)`, summary.ok ? "PASS" : "FAIL", `prefill ${fmt(summary.worst_prefill_rel_err)} greedy ${fmt(summary.worst_greedy_logits_rel_err)} tokens ${summary.greedy_token_match}`);
      }
    } finally {
      f16.dispose();
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

const steps = quick ? 4 : 64;
const SHAPES: readonly Shape[] = [
  { name: "Llama-3.2-1B", config: quick ? TINY_LLAMA : LLAMA_32_1B },
  { name: "Qwen3-0.6B", config: quick ? TINY_QWEN3 : QWEN3_06B },
];
const size = quick ? " (toy)" : "";
let bw = 0;

/** Batch-1 decode of a shape against the weight-read floor, with the default path's profile. */
async function shapeDecode(b: CudaBackend, shape: Shape): Promise<void> {
  if (overBudget(`${shape.name} decode`)) return;
  await section(`timing: ${shape.name}-shaped model${size}, random bf16 weights, batch-1 decode`, async () => {
    const m = await modelOf(shape);
    log(`  ${(m.parameters / 1e9).toFixed(3)}B parameters made in-process`);
    if (bw === 0) {
      bw = copyBandwidth(b.device, quick ? 16 * 2 ** 20 : 512 * 2 ** 20);
      log(`  device copy bandwidth ${(bw / 1e9).toFixed(0)} GB/s (read + write)`);
    }
    decodeRows(b, shape, m, "bf16", bw, steps);
  });
}

async function moreTimings(b: CudaBackend): Promise<void> {
  await section("timing: fortune model", async () => {
    const loaded = await loadModel(join(root, "assets/fortune-llama"));
    const V = loaded.model.vocabSize;
    const ex = CudaExecutor.fromGraph(loaded.graph, loaded.weights, b, { numBlocks: blocksFor(1024, 16), blockSize: 16 });
    try {
      for (const len of quick ? [16] : [128, 512]) row(`fortune prefill ${len} tokens`, "TIME", `${prefillTokensPerSecond(ex, len, V).toFixed(0)} tokens/s`);
      // at 800 keys a decode step splits attention along the keys (kiln_attention_combine)
      for (const ctx of quick ? [16] : [16, 256, 800]) {
        const d = decodeTiming(ex, b.device, ctx, steps, V);
        row(`fortune decode b=1 ctx ${ctx}`, "TIME", `${d.msPerStep.toFixed(3)} ms/step (greedy on device ${d.greedyMsPerStep.toFixed(3)}); host ${pct(d.hostShare)} of a step (${pct(d.greedyHostShare)} greedy)`);
      }
    } finally {
      ex.dispose();
    }
  });

  const shapes = SHAPES;
  for (const shape of shapes.slice(1)) await shapeDecode(b, shape);

  if (!overBudget("sampling")) {
    await section("timing: sampling on the device", () => {
      const vocabs = quick ? [2053] : [128_256, 151_936];
      for (const V of vocabs) {
        for (const S of quick ? [1, 4] : [1, 64]) {
          for (const t of samplingTimings(b, S, V, quick ? 2 : 20)) {
            row(`sampling b=${S} V=${V}: ${t.mode}`, "TIME", `${(t.msPerCall * 1000).toFixed(1)} µs a call`);
          }
        }
      }
    });
  }

  // batched decode, where attention's reads of the KV cache add to the weights': bf16 against f32 KV
  const llamaShape = shapes[0]!;
  if (!overBudget(`${llamaShape.name} batched decode`)) {
    await section(`timing: ${llamaShape.name}-shaped model${size}, bf16 weights, batched decode, bf16 and f32 KV cache`, async () => {
      const m = await modelOf(llamaShape);
      if (bw === 0) bw = copyBandwidth(b.device, quick ? 16 * 2 ** 20 : 512 * 2 ** 20);
      const context = quick ? 24 : 1024;
      const batches = quick ? [2, 4] : [64, 256];
      const bsteps = quick ? 2 : 16;
      for (const kv of ["bf16", "f32"] as const) {
        const numBlocks = Math.max(...batches) * blocksFor(context + bsteps + 1, 16);
        const ex = CudaExecutor.fromGraph(m.graph, m.weights, b, { numBlocks, blockSize: 16, weightDtype: "bf16", kvCacheDtype: kv });
        const weightBytes = deviceWeightBytes(ex.program, m.weights);
        try {
          for (const batch of batches) {
            const d = batchedDecodeTiming(ex, { batch, context, steps: bsteps, vocab: m.vocabSize, weightBytes, kvBytesPerToken: kvBytesPerBlock(m.graph.kvLayers, 1, kv) });
            const floorMs = (d.bytesPerStep / bw) * 1000;
            row(
              `${llamaShape.name}${size} decode b=${batch} ctx ${context} (${kv} KV)`,
              "TIME",
              `${d.msPerStep.toFixed(2)} ms/step, ${((batch * 1000) / d.msPerStep).toFixed(0)} tokens/s; reads ${(d.bytesPerStep / 2 ** 30).toFixed(2)} GiB a step → floor ${floorMs.toFixed(2)} ms, ${pct(floorMs / d.msPerStep)} of it`,
            );
          }
        } finally {
          ex.dispose();
        }
      }
    });
  }

  // offline throughput on the batching engine, bf16 weights and KV cache, KV pool from gpuMemoryUtilization;
  // the budget left is split between the runs; a run cut short says so
  const tp = quick
    ? { numPrompts: 16, inputLen: { lo: 8, hi: 24 }, outputLen: { lo: 4, hi: 12 }, maxNumSeqs: 16, maxNumBatchedTokens: 64 }
    : { numPrompts: 256, inputLen: { lo: 100, hi: 1024 }, outputLen: { lo: 100, hi: 1024 }, maxNumSeqs: 256, maxNumBatchedTokens: 2048 };
  const bf16 = registerCudaBackend({ weightDtype: "bf16" });
  // each shape once, output streaming overlapped with the device as the engine runs (the
  // non-overlapped baseline is left out: it doubled the memory and time of this section)
  const runs = shapes.map((shape) => ({ shape, overlapOutput: true }));
  try {
    for (const [i, { shape, overlapOutput }] of runs.entries()) {
      const label = `${shape.name}${size} offline throughput (${tp.numPrompts} prompts, bf16${overlapOutput ? "" : ", output not overlapped"})`;
      if (overBudget(label)) continue;
      await section(`timing: ${label}`, async () => {
        const m = await modelOf(shape);
        const share = (budgetS - elapsed()) / (runs.length - i);
        log(
          `  ${tp.numPrompts} prompts, input ${tp.inputLen.lo}..${tp.inputLen.hi}, output ${tp.outputLen.lo}..${tp.outputLen.hi} tokens (seed 0), ignore_eos, greedy; ` +
            `≤ ${tp.maxNumBatchedTokens} tokens / ${tp.maxNumSeqs} sequences per step; stops after ${share.toFixed(0)}s`,
        );
        const r = await offlineThroughput({
          graph: m.graph,
          weights: m.weights,
          vocabSize: m.vocabSize,
          ...tp,
          seed: 0,
          blockSize: 16,
          gpuMemoryUtilization,
          deadline: performance.now() + share * 1000,
          log,
          device: bf16.backend().device,
          overlapOutput,
        });
        const figures =
          `${r.outputTokensPerS.toFixed(0)} output tokens/s: ${r.outputTokens} of ${r.plannedOutputTokens} output tokens ` +
          `(${r.promptTokens} prompt tokens) in ${r.seconds.toFixed(1)}s, ${r.finished}/${r.requests} requests finished; KV pool ${r.numBlocks} blocks; ` +
          `host busy ${r.hostShare === undefined ? "?" : pct(r.hostShare)} of the run`;
        row(r.complete ? label : `${label}, PARTIAL`, "TIME", r.complete ? figures : `PARTIAL (stopped at the budget): ${figures}`);
      });
    }
  } finally {
    bf16.dispose();
  }

  // f32 weights: the same decode for comparison, when time is left
  if (quick) return;
  const llama = shapes[0]!;
  if (overBudget(`${llama.name} decode (f32)`)) return;
  await section(`timing: ${llama.name}-shaped model, random weights in f32, batch-1 decode`, async () => {
    decodeRows(b, llama, await modelOf(llama), "f32", bw > 0 ? bw : copyBandwidth(b.device), steps);
  });
}

interface Shape {
  readonly name: string;
  readonly config: JsonObject;
}

const made = new Map<string, RandomModel>();
/** Each shape's random model, made once. */
async function modelOf(shape: Shape): Promise<RandomModel> {
  let m = made.get(shape.name);
  if (m === undefined) {
    m = await randomModel(shape.config);
    made.set(shape.name, m);
  }
  return m;
}

/** True (with a SKIP row) once the budget is spent. */
function overBudget(what: string): boolean {
  if (elapsed() <= budgetS) return false;
  row(what, "SKIP", `over the ${budgetS}s budget`);
  return true;
}

const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;

/**
 * How a decode timing runs: the default (CUDA graphs, GEMV for small GEMMs), the same with
 * cuBLASLt for every GEMM, and the plain baseline (eager, cuBLASLt for every GEMM). All three run
 * the compiled program's fused kernels (the first two keep their earlier labels, so rows compare
 * across runs).
 */
const DECODE_VARIANTS: readonly {
  readonly label: string;
  readonly opts: { readonly cudaGraphs?: boolean; readonly gemvMaxRows?: number };
}[] = [
  { label: "fused, graphs, GEMV", opts: {} },
  { label: "fused, graphs, cuBLASLt", opts: { gemvMaxRows: 0 } },
  { label: "eager, cuBLASLt only", opts: { cudaGraphs: false, gemvMaxRows: 0 } },
];

/**
 * Prefill tokens/s, then batch-1 decode ms/step against the weight-read floor and the host's
 * share of a step, for each decode variant (the eager, cuBLASLt-only path is the baseline).
 */
function decodeRows(b: CudaBackend, shape: Shape, m: RandomModel, weightDtype: FloatDtype, bw: number, steps: number): void {
  const ctx = quick ? 16 : 128;
  const prefill = quick ? 32 : 512;
  const name = `${shape.name}${quick ? " (toy)" : ""}`; // as `size` above
  // every weight read once per step, the tied LM head included
  const floorMs = ((m.parameters * dtypeBytes(weightDtype)) / bw) * 1000;
  // the toy run under the emulator times only the default and the baseline
  for (const [i, variant] of DECODE_VARIANTS.entries()) {
    if (quick && i === 1) continue;
    const t0 = performance.now();
    const numBlocks = blocksFor(Math.max(prefill, ctx + 4 * steps + 16), 16);
    const ex = CudaExecutor.fromGraph(m.graph, m.weights, b, { numBlocks, blockSize: 16, weightDtype, ...variant.opts });
    if (i === 0) log(`  ${weightDtype} weights uploaded (${(ex.deviceBytes / 2 ** 30).toFixed(2)} GiB held on the device) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    try {
      if (i === 0) row(`${name} prefill ${prefill} tokens (${weightDtype})`, "TIME", `${prefillTokensPerSecond(ex, prefill, m.vocabSize).toFixed(0)} tokens/s`);
      // a step of at most the largest capture size replays graph pieces (the baseline runs it eagerly)
      const small = quick ? 16 : 256;
      row(`${name} prefill ${small} tokens (${weightDtype}, ${variant.label})`, "TIME", `${prefillTokensPerSecond(ex, small, m.vocabSize).toFixed(0)} tokens/s`);
      const d = decodeTiming(ex, b.device, ctx, steps, m.vocabSize);
      row(
        `${name} decode b=1 ctx ${ctx} (${weightDtype}, ${variant.label})`,
        "TIME",
        `${d.msPerStep.toFixed(2)} ms/step (greedy on device ${d.greedyMsPerStep.toFixed(2)}); weight-read floor ${floorMs.toFixed(2)} ms → ${pct(floorMs / d.greedyMsPerStep)} of floor`,
      );
      row(
        `${name} decode b=1 host share (${weightDtype}, ${variant.label})`,
        "TIME",
        `host busy ${pct(d.hostShare)} of a step with logits to the host, ${pct(d.greedyHostShare)} with greedy on the device (the rest: blocked on the GPU); graphs ${JSON.stringify(ex.graphStats)}`,
      );
      // where the default path's decode step goes, kernel by kernel (run back to back, as in a graph)
      if (i === 0) {
        const label = `${name} decode b=1 ctx ${ctx} profile (${weightDtype}, ${variant.label})`;
        try {
          row(label, "TIME", decodeProfile(ex, ctx, m.vocabSize));
        } catch (e) {
          // a diagnostic: its failure is reported without costing the other variants' timings
          row(label, "FAIL", (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "");
        }
      }
    } finally {
      ex.dispose();
    }
    if (elapsed() > budgetS) break;
  }
}

function printTable(): void {
  const w = Math.max(...rows.map((r) => r.check.length), 5);
  console.log("");
  console.log(`${"check".padEnd(w)}  result  detail`);
  console.log(`${"-".repeat(w)}  ------  ------`);
  for (const r of rows) console.log(`${r.check.padEnd(w)}  ${r.result.padEnd(6)}  ${r.detail}`);
}

log(`kiln GPU check: node ${process.version}, repository ${root}${smoke ? ", --smoke" : quick ? ", --quick" : ""}`);
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

try {
  await firstChecks(backend);
  await shapeDecode(backend, SHAPES[0]!);
  await moreChecks();
  await moreTimings(backend);
  cuda.dispose();
} catch (e) {
  if (!(e instanceof CheckStopped)) throw e;
  log(`stopped: ${e.message}; the CUDA context is lost, nothing after it can run`);
}

const failed = rows.filter((r) => r.result === "FAIL").length;
if (jsonPath !== undefined) writeFileSync(jsonPath, report(true) + "\n");
else console.log(report(true));
printTable();
process.exit(failed === 0 ? 0 : 1);
