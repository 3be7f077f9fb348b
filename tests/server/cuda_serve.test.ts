/**
 * `kiln serve --backend cuda` as a user starts it, on the CPU emulator of the CUDA libraries:
 * bf16 weights and KV cache, the pool sized by --gpu-memory-utilization, the official `openai`
 * client streaming and not, concurrent requests with sampling on the device, SIGTERM.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEmulator, emulatorEnv } from "../cuda/emulator/build_emulator.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CUBIN_CACHE = fileURLToPath(new URL("../../build/cuda-emulator/cubin-cache", import.meta.url));

let child: ChildProcessWithoutNullStreams | undefined;
let startup = "";
let client: OpenAI;

beforeAll(async () => {
  const env = { ...process.env, ...emulatorEnv(buildEmulator()), KILN_CACHE_DIR: CUBIN_CACHE };
  const args = ["--import", "tsx", "cli/kiln.ts", "serve", "--backend", "cuda", "--dtype", "bfloat16", "--kv-cache-dtype", "bfloat16"];
  child = spawn(process.execPath, [...args, "--gpu-memory-utilization", "0.05", "--port", "0", "--log-level", "error"], { cwd: ROOT, env });
  const c = child;
  startup = await new Promise<string>((resolve, reject) => {
    let text = "";
    c.stdout.on("data", (d: Buffer) => {
      text += d.toString();
      if (text.includes("try: curl")) resolve(text);
    });
    c.stderr.on("data", (d: Buffer) => (text += d.toString()));
    c.once("exit", (code) => reject(new Error(`kiln serve exited with ${code}: ${text}`)));
  });
  const url = /at (http:\/\/[^ ]+\/v1)/.exec(startup)?.[1];
  if (url === undefined) throw new Error(`no address in: ${startup}`);
  client = new OpenAI({ baseURL: url, apiKey: "unused", maxRetries: 0 });
}, 300_000);

afterAll(() => {
  if (child !== undefined && child.exitCode === null) child.kill("SIGKILL");
});

describe("kiln serve --backend cuda (emulated)", () => {
  it("starts on the device with a bf16 KV pool sized from the memory share", () => {
    expect(startup).toMatch(/on cuda \(.*Emulated GPU.*sm_90/);
    // the fortune model: 98304 bytes of K and V per 16-token block in f32, half in bf16
    expect(startup).toMatch(/GiB × 0\.05 − .* weights − .* activations = .* for KV \(49152 bytes per block\)/);
  });

  it("streams the text it answers whole, and serves concurrent sampled requests", async () => {
    const whole = await client.completions.create({ model: "fortune-llama", prompt: "You will", max_tokens: 12, temperature: 0 });
    const text = whole.choices[0]!.text;
    expect(text.length).toBeGreaterThan(0);
    const stream = await client.completions.create({ model: "fortune-llama", prompt: "You will", max_tokens: 12, temperature: 0, stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    expect(streamed).toBe(text);
    // top-p / top-k sampling runs on the device; a fixed seed gives the same text twice
    const sampled = (seed: number) =>
      client.completions.create({ model: "fortune-llama", prompt: "Luck", max_tokens: 10, temperature: 0.8, top_p: 0.9, seed, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const [a, b, c, d] = await Promise.all([sampled(1), sampled(1), sampled(2), client.completions.create({ model: "fortune-llama", prompt: "You will", max_tokens: 12, temperature: 0 })]);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
    expect(a.usage?.completion_tokens).toBe(10);
    expect(c.usage?.completion_tokens).toBe(10);
    expect(d.choices[0]!.text).toBe(text); // batched with others, the greedy text is unchanged
  }, 120_000);

  it("exits 0 on SIGTERM", async () => {
    const c = child!;
    const code = await new Promise<number | null>((resolve) => {
      c.once("exit", (code) => resolve(code));
      c.kill("SIGTERM");
    });
    expect(code).toBe(0);
  }, 60_000);
});
