/**
 * Text output: stop strings cut the text exactly and a stream never shows part of one;
 * multi-byte characters are never split; stop tokens end generation without adding text.
 */
import { describe, expect, it } from "vitest";
import { Engine } from "../../runtime/engine/engine.ts";
import type { CompletionDelta } from "../../runtime/engine/request_output.ts";
import type { SamplingParamsInput } from "../../runtime/engine/sampling_params.ts";
import { findStop, partialStopLength } from "../../runtime/engine/stop_checker.ts";
import { byteTokenizer, ScriptRunner } from "./fake_runner.ts";

const bytes = (s: string): number[] => byteTokenizer.encode(s);

async function run(script: string | number[], params: SamplingParamsInput, eos: number[] = []): Promise<{ deltas: CompletionDelta[]; streamed: string[] }> {
  const runner = new ScriptRunner(typeof script === "string" ? bytes(script) : script);
  const engine = new Engine(runner, { maxModelLen: 200, tokenizer: byteTokenizer, eosTokenIds: eos });
  const deltas: CompletionDelta[] = [];
  const streamed: string[] = [];
  let soFar = "";
  for await (const d of engine.generate({ prompt: [65], params: { temperature: 0, maxTokens: 60, ...params } })) {
    deltas.push(d);
    soFar += d.text;
    streamed.push(soFar);
  }
  expect(engine.stats().numFreeBlocks).toBe(runner.numBlocks);
  return { deltas, streamed };
}

const last = <T>(xs: readonly T[]): T => xs[xs.length - 1]!;

describe("stop checker", () => {
  it("finds the earliest stop string completed by the new text", () => {
    expect(findStop("hello world", 5, ["wor", "o w"], false)).toEqual({ stop: "o w", cutAt: 4 });
    expect(findStop("hello world", 5, ["wor"], true)).toEqual({ stop: "wor", cutAt: 9 });
    expect(findStop("hello world", 11, ["hello"], false)).toBeUndefined(); // checked before
    expect(findStop("abcab", 4, ["cab"], false)).toEqual({ stop: "cab", cutAt: 2 });
  });

  it("measures the longest suffix that could grow into a stop string", () => {
    expect(partialStopLength("hello wo", ["world"])).toBe(2);
    expect(partialStopLength("hello w", ["world", "hello wx"])).toBe(7);
    expect(partialStopLength("abc", ["xyz"])).toBe(0);
    expect(partialStopLength("ab", ["ab"])).toBe(0); // complete, not partial
  });
});

describe("stop strings in a stream", () => {
  it("cuts the text right before the stop string and never streams part of it", async () => {
    const { deltas, streamed } = await run("Hello world! STOP here", { stop: ["STOP"] });
    const final = last(streamed);
    expect(final).toBe("Hello world! ");
    for (const s of streamed) expect(final.startsWith(s)).toBe(true);
    expect(last(deltas).finishReason).toBe("stop");
    expect(last(deltas).stopReason).toBe("STOP");
    // generation stopped at the token that completed the stop string
    expect(deltas.flatMap((d) => d.tokenIds).length).toBe("Hello world! STOP".length);
  });

  it("holds back a possible stop string that then does not complete", async () => {
    const { streamed } = await run("one STONE two", { stop: ["STOP"], maxTokens: 13 });
    expect(last(streamed)).toBe("one STONE two");
    // "S", "ST", "STO" were held back until "N" ruled the stop string out
    const i = streamed.findIndex((s) => s.includes("S"));
    expect(streamed[i]).toContain("STON");
  });

  it("keeps the stop string with includeStopStrInOutput, and picks the earliest of several", async () => {
    expect(last((await run("abc; def. ghi", { stop: [".", ";"], includeStopStrInOutput: true })).streamed)).toBe("abc;");
    expect(last((await run("abc; def. ghi", { stop: ["def", "c; d"] })).streamed)).toBe("ab");
  });

  it("ignores stop strings inside the first minTokens tokens", async () => {
    const { streamed, deltas } = await run("ab|cd|ef", { stop: ["|"], minTokens: 4 });
    expect(last(streamed)).toBe("ab|cd");
    expect(last(deltas).stopReason).toBe("|");
  });

  it("a stop string in the last allowed token still reports stop", async () => {
    const { deltas, streamed } = await run("xyz!", { stop: ["z!"], maxTokens: 4 });
    expect(last(streamed)).toBe("xy");
    expect(last(deltas).finishReason).toBe("stop");
  });
});

describe("multi-byte text", () => {
  it("never splits a character across deltas", async () => {
    const text = "héllo 🌍 wörld — 日本";
    const { deltas, streamed } = await run(text, { maxTokens: bytes(text).length });
    for (const d of deltas) expect(d.text).not.toContain("\uFFFD");
    expect(last(streamed)).toBe(text);
    expect(deltas.some((d) => d.tokenIds.length === 1 && d.text === "")).toBe(true); // a partial character was held
  });
});

describe("stop tokens", () => {
  it("ends on EOS without adding its text, and reports a stop token id as the stop reason", async () => {
    const script = [...bytes("ok"), 3, ...bytes("never")];
    const eos = await run(script, {}, [3]);
    expect(last(eos.streamed)).toBe("ok");
    expect(last(eos.deltas).finishReason).toBe("stop");
    expect(last(eos.deltas).stopReason).toBeUndefined();
    expect(eos.deltas.flatMap((d) => d.tokenIds)).toEqual([...bytes("ok"), 3]);
    const stopId = await run(script, { stopTokenIds: [3] });
    expect(last(stopId.deltas).stopReason).toBe(3);
    const ignored = await run(script, { maxTokens: 5, ignoreEos: true }, [3]);
    expect(last(ignored.deltas).finishReason).toBe("length");
    expect(ignored.deltas.flatMap((d) => d.tokenIds).length).toBe(5);
  });
});
