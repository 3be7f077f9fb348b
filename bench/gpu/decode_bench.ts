/**
 * Timings on the CUDA executor: prefill tokens/s, batch-1 decode ms/step (logits copied to the
 * host and argmax there, as the runner does, and greedy picked on the device), the host's share
 * of a decode step, and the device's copy bandwidth, which sets the floor for a decode step that
 * reads every weight once.
 */
import type { CudaDevice } from "../../runtime/backends/cuda/device.ts";
import type { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { packStep } from "../../runtime/backends/kv_cache.ts";
import { argmax } from "../../runtime/engine/sampler.ts";
import { profileByCategory } from "../../runtime/backends/cuda/step_profile.ts";

export interface DecodeTiming {
  readonly context: number;
  readonly steps: number;
  /** logits [1, vocab] to the host, argmax in JS */
  readonly msPerStep: number;
  /** argmax on the device, one int to the host */
  readonly greedyMsPerStep: number;
  /**
   * Share of a step the host is busy, per path: the step's time less the time spent blocked in
   * its last device→host copy (which waits for the queued kernels). Near 1, the GPU waits on
   * the host (launch-bound); near 0, the host waits on the GPU.
   */
  readonly hostShare: number;
  readonly greedyHostShare: number;
}

export function blocksFor(tokens: number, blockSize: number): number {
  return Math.ceil(tokens / blockSize) + 1;
}

function randomTokens(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 5 + (s % (vocab - 5));
  });
}

/**
 * A block table for one sequence of up to `tokens` tokens: as long as the sequence needs, not the
 * whole pool (a table as wide as a large pool is uploaded with every step and sizes the graphs).
 */
function tableFor(ex: CudaExecutor, tokens: number): number[] {
  const n = Math.min(ex.numBlocks, blocksFor(tokens, ex.blockSize));
  return Array.from({ length: n }, (_, i) => i);
}

/** Median prefill time of `len` tokens (3 runs after a warm-up), as tokens/s. */
export function prefillTokensPerSecond(ex: CudaExecutor, len: number, vocab: number): number {
  const table = tableFor(ex, len);
  const step = packStep([{ tokens: randomTokens(len, vocab, 7), numCached: 0, blockTable: table }], ex.blockSize);
  ex.run(step);
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    ex.run(step);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return (len / times[1]!) * 1000;
}

/**
 * Decode `steps` tokens after a prompt of `context` tokens, both ways, then `steps` more of each
 * with the device's downloads watched for the host share; needs ≥ context + 4·steps + 8 slots.
 */
export function decodeTiming(ex: CudaExecutor, dev: CudaDevice, context: number, steps: number, vocab: number): DecodeTiming {
  const table = tableFor(ex, context + 4 * steps + 8);
  const prompt = randomTokens(context, vocab, 3);
  let cached = 0;
  let next = ex.runGreedy(packStep([{ tokens: prompt, numCached: 0, blockTable: table }], ex.blockSize))[0] ?? 5;
  cached = context;
  const stepOnce = (greedy: boolean): void => {
    const step = packStep([{ tokens: [next], numCached: cached, blockTable: table }], ex.blockSize);
    next = greedy ? (ex.runGreedy(step)[0] ?? 5) : argmax(ex.run(step));
    cached++;
  };
  for (let i = 0; i < 4; i++) stepOnce(true); // warm-up: plans, arena
  const time = (greedy: boolean): number => {
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) stepOnce(greedy);
    return (performance.now() - t0) / steps;
  };
  const msPerStep = time(false);
  const greedyMsPerStep = time(true);
  // the host share: time blocked in the step's device→host copy is the host waiting on the GPU
  const download = dev.download;
  let blocked = 0;
  dev.download = (dst, src): void => {
    const t0 = performance.now();
    download.call(dev, dst, src);
    blocked += performance.now() - t0;
  };
  const share = (greedy: boolean): number => {
    blocked = 0;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) stepOnce(greedy);
    const total = performance.now() - t0;
    return total > 0 ? Math.max(0, total - blocked) / total : 0;
  };
  try {
    const hostShare = share(false);
    const greedyHostShare = share(true);
    return { context, steps, msPerStep, greedyMsPerStep, hostShare, greedyHostShare };
  } finally {
    dev.download = download;
  }
}

/** Device-to-device copy bandwidth (bytes read + written per second) over a 512 MiB buffer (by default). */
export function copyBandwidth(dev: CudaDevice, bytes = 512 * 2 ** 20): number {
  const a = dev.alloc(bytes);
  const b = dev.alloc(bytes);
  try {
    dev.copy(b, a, bytes);
    dev.synchronize();
    const reps = 10;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) dev.copy(i % 2 ? a : b, i % 2 ? b : a, bytes);
    dev.synchronize();
    return (2 * bytes * reps) / ((performance.now() - t0) / 1000);
  } finally {
    dev.free(a);
    dev.free(b);
  }
}

export interface BatchedDecodeTiming {
  readonly batch: number;
  readonly context: number;
  readonly msPerStep: number;
  /** weight bytes plus the K and V bytes the step's attention reads, per step */
  readonly bytesPerStep: number;
}

/**
 * Greedy decode steps of `batch` sequences at `context` cached tokens each (the cache holds
 * whatever the pool holds: a step's cost does not depend on the values), the way the engine runs
 * them (graphs, greedy picked on the device); a warm-up step first. Needs
 * batch · blocksFor(context + steps + 1) blocks.
 */
export function batchedDecodeTiming(
  ex: CudaExecutor,
  o: { readonly batch: number; readonly context: number; readonly steps: number; readonly vocab: number; readonly weightBytes: number; readonly kvBytesPerToken: number },
): BatchedDecodeTiming {
  const perSeq = blocksFor(o.context + o.steps + 1, ex.blockSize);
  if (o.batch * perSeq > ex.numBlocks) throw new Error(`${o.batch} sequences of ${o.context} tokens need ${o.batch * perSeq} blocks; the pool has ${ex.numBlocks}`);
  const tables = Array.from({ length: o.batch }, (_, s) => Array.from({ length: perSeq }, (_, i) => s * perSeq + i));
  let next = randomTokens(o.batch, o.vocab, 11);
  let cached = o.context;
  const stepOnce = (): void => {
    const step = packStep(tables.map((blockTable, s) => ({ tokens: [next[s]!], numCached: cached, blockTable })), ex.blockSize);
    next = Array.from(ex.runGreedy(step));
    cached++;
  };
  stepOnce(); // warm-up: the graph of this batch size and table width is captured
  const t0 = performance.now();
  for (let i = 0; i < o.steps; i++) stepOnce();
  const msPerStep = (performance.now() - t0) / o.steps;
  const avgContext = o.context + 1 + (o.steps + 1) / 2;
  return { batch: o.batch, context: o.context, msPerStep, bytesPerStep: o.weightBytes + o.batch * avgContext * o.kvBytesPerToken };
}

/**
 * One batch-1 decode step after a `context`-token prompt, timed unit by unit on the device
 * (CudaExecutor.profileStep), summed by category: where a decode step's time goes.
 */
export function decodeProfile(ex: CudaExecutor, context: number, vocab: number): string {
  const table = tableFor(ex, context + 2);
  const prompt = randomTokens(context, vocab, 5);
  ex.runGreedy(packStep([{ tokens: prompt, numCached: 0, blockTable: table }], ex.blockSize));
  const step = packStep([{ tokens: [prompt[0] ?? 5], numCached: context, blockTable: table }], ex.blockSize);
  ex.profileStep(step); // warm-up: plans, arena
  const p = ex.profileStep(step);
  const total = p.units.reduce((s, u) => s + u.ms, 0);
  const parts = profileByCategory(p.units).map((c) => {
    const rate = c.weightBytes > 0 && c.ms > 0 ? ` at ${(c.weightBytes / (c.ms / 1000) / 1e9).toFixed(c.weightBytes / c.ms > 1e8 ? 0 : 3)} GB/s` : "";
    return `${c.category} ${c.ms.toFixed(3)} ms ×${c.count}${rate}`;
  });
  const slowest = [...p.units]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 3)
    .map((u) => `${u.label} ${u.ms.toFixed(3)} ms`);
  const queued = p.queueMs > p.spinMs ? `; WARNING: queueing took ${p.queueMs.toFixed(1)} ms, longer than the ${p.spinMs} ms spin` : "";
  return `units sum ${total.toFixed(3)} ms: ${parts.join(", ")}; slowest ${slowest.join(", ")}${queued}`;
}
