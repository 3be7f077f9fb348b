/**
 * Test doubles for the engine's model side.
 *
 * FakeKvRunner keeps a "KV cache" of token ids: each step writes the chunks' tokens to their
 * slots (all chunks first, as writeKv precedes attention), then each wanted row reads the
 * sequence's history back through its block table and peaks the logits at a hash of it. Its
 * output is thus a deterministic function of the token history (`referenceGreedy` predicts it),
 * and any block-table, slot or sharing mistake changes it.
 *
 * FakeStateRunner ignores the KV cache and folds every token into its per-sequence state slot;
 * its logits peak at a hash of the state, so a state that is not reset, not carried across chunks
 * or shared between sequences shows in the output.
 */
import type { SeqChunk } from "../../runtime/backends/kv_cache.ts";
import { StateSlots } from "../../runtime/engine/state_slots.ts";
import type { StepRunner } from "../../runtime/engine/step_runner.ts";

/** FNV-1a over the tokens, folded into the vocabulary. */
export function historyToken(history: readonly number[], vocabSize: number): number {
  let h = 0x811c9dc5;
  for (const t of history) {
    h ^= t + 1;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % vocabSize;
}

/** A logits row peaked at `peak`, with distinct small values elsewhere. */
export function peakedRow(peak: number, vocabSize: number, salt: number): Float32Array {
  const row = new Float32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) row[i] = ((i * 37 + salt * 11) % 97) / 100;
  row[peak] = 5;
  return row;
}

/** The fake model's greedy continuation of `prompt`: what the engine must produce. */
export function referenceGreedy(prompt: readonly number[], maxTokens: number, vocabSize: number, window?: number): number[] {
  const tokens = [...prompt];
  const out: number[] = [];
  while (out.length < maxTokens) {
    const history = window === undefined ? tokens : tokens.slice(Math.max(0, tokens.length - window));
    const next = historyToken(history, vocabSize);
    out.push(next);
    tokens.push(next);
  }
  return out;
}

export class FakeKvRunner implements StepRunner {
  readonly slots: Int32Array;
  readonly written: Uint8Array;
  /** every step's chunks, as the runner got them */
  readonly steps: SeqChunk[][] = [];

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
    readonly vocabSize = 64,
    readonly window?: number,
  ) {
    this.slots = new Int32Array(numBlocks * blockSize);
    this.written = new Uint8Array(numBlocks * blockSize);
  }

  execute(chunks: readonly SeqChunk[]): Float32Array {
    this.steps.push([...chunks]);
    const slotOf = (c: SeqChunk, pos: number): number => {
      const block = c.blockTable[Math.floor(pos / this.blockSize)];
      if (block === undefined || block < 0 || block >= this.numBlocks) throw new Error(`position ${pos} has no valid block`);
      return block * this.blockSize + (pos % this.blockSize);
    };
    for (const c of chunks) {
      c.tokens.forEach((t, i) => {
        const s = slotOf(c, c.numCached + i);
        this.slots[s] = t;
        this.written[s] = 1;
      });
    }
    const rows: Float32Array[] = [];
    for (const c of chunks) {
      c.tokens.forEach((_, i) => {
        const wanted = c.allLogits === true || (c.noLogits !== true && i === c.tokens.length - 1);
        if (!wanted) return;
        const p = c.numCached + i;
        const lo = this.window === undefined ? 0 : Math.max(0, p - this.window + 1);
        const history: number[] = [];
        for (let j = lo; j <= p; j++) {
          const s = slotOf(c, j);
          if (this.written[s] !== 1) throw new Error(`position ${j} reads a slot never written`);
          history.push(this.slots[s]!);
        }
        rows.push(peakedRow(historyToken(history, this.vocabSize), this.vocabSize, p));
      });
    }
    const out = new Float32Array(rows.length * this.vocabSize);
    rows.forEach((r, i) => out.set(r, i * this.vocabSize));
    return out;
  }
}

/** Greedy continuation under FakeStateRunner. */
export function referenceStateGreedy(prompt: readonly number[], maxTokens: number, vocabSize: number): number[] {
  const state = { ssm: 0, conv: [0, 0] };
  const out: number[] = [];
  for (const t of prompt) fold(state, t);
  while (out.length < maxTokens) {
    const next = stateToken(state, vocabSize);
    out.push(next);
    fold(state, next);
  }
  return out;
}

interface FoldState {
  ssm: number;
  conv: number[];
}

function fold(s: FoldState, t: number): void {
  s.ssm = (s.ssm * 31 + t + 1) % 65521; // stays an exact integer in f32
  s.conv = [s.conv[1]!, t];
}

function stateToken(s: FoldState, vocabSize: number): number {
  return (s.ssm + 7 * s.conv[0]! + 3 * s.conv[1]!) % vocabSize;
}

export class FakeStateRunner implements StepRunner {
  readonly statePool: StateSlots;
  readonly steps: SeqChunk[][] = [];

  constructor(
    readonly numBlocks: number,
    readonly blockSize: number,
    numSlots: number,
    readonly vocabSize = 64,
  ) {
    this.statePool = new StateSlots(
      [
        { name: "conv", shape: [2], dtype: "f32" },
        { name: "ssm", shape: [1], dtype: "f32" },
      ],
      numSlots,
    );
  }

  execute(chunks: readonly SeqChunk[]): Float32Array {
    this.steps.push([...chunks]);
    const rows: Float32Array[] = [];
    for (const c of chunks) {
      if (c.stateSlot === undefined) throw new Error("a chunk without a state slot");
      const conv = this.statePool.view(c.stateSlot, "conv");
      const ssm = this.statePool.view(c.stateSlot, "ssm");
      c.tokens.forEach((t, i) => {
        const s: FoldState = { ssm: ssm[0]!, conv: [conv[0]!, conv[1]!] };
        fold(s, t);
        ssm[0] = s.ssm;
        conv[0] = s.conv[0]!;
        conv[1] = s.conv[1]!;
        const wanted = c.allLogits === true || (c.noLogits !== true && i === c.tokens.length - 1);
        if (wanted) rows.push(peakedRow(stateToken(s, this.vocabSize), this.vocabSize, c.numCached + i));
      });
    }
    const out = new Float32Array(rows.length * this.vocabSize);
    rows.forEach((r, i) => out.set(r, i * this.vocabSize));
    return out;
  }
}

/** Deterministic pseudo-random prompts. */
export function makePrompts(count: number, minLen: number, maxLen: number, vocabSize: number, seed: number): number[][] {
  let x = seed >>> 0;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
  return Array.from({ length: count }, () => Array.from({ length: minLen + (next() % (maxLen - minLen + 1)) }, () => next() % vocabSize));
}

/**
 * Emits a fixed script whatever the history: for a one-token prompt, the row at position p peaks
 * at script[p] (the script's last token repeats past its end). Drives text and stop-string tests.
 */
export class ScriptRunner implements StepRunner {
  executed = 0;

  constructor(
    readonly script: readonly number[],
    readonly vocabSize = 256,
    readonly numBlocks = 64,
    readonly blockSize = 4,
  ) {}

  execute(chunks: readonly SeqChunk[]): Float32Array {
    this.executed++;
    const rows: Float32Array[] = [];
    for (const c of chunks) {
      c.tokens.forEach((_, i) => {
        const wanted = c.allLogits === true || (c.noLogits !== true && i === c.tokens.length - 1);
        const p = c.numCached + i;
        if (wanted) rows.push(peakedRow(this.script[Math.min(p, this.script.length - 1)]!, this.vocabSize, p));
      });
    }
    const out = new Float32Array(rows.length * this.vocabSize);
    rows.forEach((r, i) => out.set(r, i * this.vocabSize));
    return out;
  }
}

/** A tokenizer whose ids are UTF-8 bytes: decoding a partial character gives U+FFFD, as byte-level BPE does. */
export const byteTokenizer = {
  encode: (text: string): number[] => [...new TextEncoder().encode(text)],
  decode: (ids: readonly number[]): string => new TextDecoder().decode(Uint8Array.from(ids)),
};
