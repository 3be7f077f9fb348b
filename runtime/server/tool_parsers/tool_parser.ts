/**
 * A tool-call parser reads a model's raw text for the tool calls its chat template taught it to
 * write ("auto" tool choice, as vLLM's --tool-call-parser). Each model family writes them its own
 * way, so each parser is one file; `registry.ts` names them. A parser never throws on what a model
 * wrote: text it cannot read as tool calls is plain content.
 */

/** One call as the model wrote it: `argumentsJson` is the JSON text of the arguments object. */
export interface ParsedToolCall {
  readonly name: string;
  readonly argumentsJson: string;
}

export interface ParsedOutput {
  /** text outside the tool calls; undefined when there is none */
  readonly content: string | undefined;
  readonly calls: readonly ParsedToolCall[];
}

/** Where the streamed text stands: how much is surely content, and whether a tool call has begun. */
export interface StreamSplit {
  /** characters from the start that are content whatever comes next */
  readonly contentEnd: number;
  /** a tool-call start marker was seen at contentEnd: the rest is held until the output ends */
  readonly toolCallStarted: boolean;
}

export interface ToolParser {
  readonly name: string;
  /** The whole output split into content and calls; malformed calls leave all text as content. */
  parse(text: string): ParsedOutput;
  /** For streaming: how much of the text so far can be sent as content now. */
  split(text: string): StreamSplit;
}

/** The output as plain content: what a parser returns when it finds no (well-formed) call. */
export function plainContent(text: string): ParsedOutput {
  return { content: text, calls: [] };
}

/** The length of the longest suffix of `text` that is a proper prefix of `marker` (it may yet become the marker). */
export function partialMarkerLength(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/** A JSON object value, or undefined: the only shape a call's arguments may take. */
export function jsonObject(v: unknown): Readonly<Record<string, unknown>> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Readonly<Record<string, unknown>>) : undefined;
}

/** JSON.parse that answers undefined instead of throwing: model output is often not JSON. */
export function tryParseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
