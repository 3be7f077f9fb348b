/**
 * The engine's side of structured outputs, with a constraint written here: the mask decides every
 * token, n > 1 gives each completion its own constraint, a terminated constraint stops its
 * sequence, constraints are disposed when their sequences end (finished, aborted or failed), and
 * constrained requests never take the device-sampling path.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../runtime/engine/engine.ts";
import type { TokenConstraint } from "../../runtime/engine/token_constraint.ts";
import type { SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { byteTokenizer, FakeKvRunner, makePrompts } from "./fake_runner.ts";

const V = 256;

/** Allows only multiples of `step`, and terminates after `length` tokens. */
class EveryNth implements TokenConstraint {
  accepted: number[] = [];
  disposed = false;
  static made: EveryNth[] = [];
  constructor(
    private readonly step: number,
    private readonly length: number,
  ) {
    EveryNth.made.push(this);
  }
  maskLogits(row: Float32Array): void {
    for (let i = 0; i < row.length; i++) if (i % this.step !== 0) row[i] = -Infinity;
  }
  acceptToken(tokenId: number): boolean {
    if (tokenId % this.step !== 0) return false;
    this.accepted.push(tokenId);
    return true;
  }
  get terminated(): boolean {
    return this.accepted.length >= this.length;
  }
  dispose(): void {
    this.disposed = true;
  }
}

async function tokensOf(stream: AsyncIterable<{ tokenIds: readonly number[]; index: number; finishReason?: string }>): Promise<Map<number, { ids: number[]; finish?: string }>> {
  const out = new Map<number, { ids: number[]; finish?: string }>();
  for await (const d of stream) {
    const o = out.get(d.index) ?? { ids: [] };
    o.ids.push(...d.tokenIds);
    if (d.finishReason !== undefined) o.finish = d.finishReason;
    out.set(d.index, o);
  }
  return out;
}

describe("token constraints in the engine", () => {
  it("every drawn token obeys the mask; a terminated constraint stops its sequence with 'stop'", async () => {
    EveryNth.made = [];
    const engine = new Engine(new FakeKvRunner(64, 4, V), { maxModelLen: 128, tokenizer: byteTokenizer, maxNumBatchedTokens: 64 });
    const prompts = makePrompts(3, 4, 9, V, 8);
    const results = await Promise.all(
      prompts.map((prompt, i) =>
        tokensOf(engine.generate({ prompt, params: { n: 2, temperature: i === 0 ? 0 : 1, seed: i, maxTokens: 50, ignoreEos: true }, constraint: () => new EveryNth(7, 5) })),
      ),
    );
    for (const r of results) {
      expect(r.size).toBe(2);
      for (const { ids, finish } of r.values()) {
        expect(ids.length).toBe(5);
        expect(ids.every((t) => t % 7 === 0)).toBe(true);
        expect(finish).toBe("stop");
      }
    }
    // one constraint per sequence, each disposed when its sequence ended
    expect(EveryNth.made.length).toBe(6);
    expect(EveryNth.made.every((c) => c.disposed)).toBe(true);
    expect(engine.stats().numFreeBlocks).toBe(engine.stats().numBlocks);
  });

  it("an aborted request disposes its constraints", async () => {
    EveryNth.made = [];
    const engine = new Engine(new FakeKvRunner(64, 4, V), { maxModelLen: 128, tokenizer: byteTokenizer, maxNumBatchedTokens: 64 });
    const ctl = new AbortController();
    const stream = engine.generate({ prompt: [1, 2, 3], params: { maxTokens: 100, ignoreEos: true }, constraint: () => new EveryNth(3, 1000), signal: ctl.signal });
    for await (const d of stream) {
      if (d.tokenIds.length > 0) ctl.abort();
    }
    expect(EveryNth.made.length).toBe(1);
    expect(EveryNth.made[0]!.disposed).toBe(true);
  });

  it("constrained sequences sample on the host even when the runner samples on the device", async () => {
    const runner = new FakeKvRunner(64, 4, V);
    let deviceSteps = 0;
    const withDevice = Object.assign(runner, {
      launchSample: (chunks: readonly SeqChunk[]) => {
        deviceSteps++;
        runner.execute(chunks);
        return () => new Int32Array(chunks.length);
      },
    });
    const engine = new Engine(withDevice, { maxModelLen: 128, tokenizer: byteTokenizer, maxNumBatchedTokens: 64 });
    const r = await tokensOf(engine.generate({ prompt: [4, 5, 6], params: { temperature: 0, maxTokens: 6, ignoreEos: true }, constraint: () => new EveryNth(5, 100) }));
    expect(deviceSteps).toBe(0);
    expect(r.get(0)!.ids.every((t) => t % 5 === 0)).toBe(true);
  });
});
