/**
 * A choice's generated text → OpenAI's assistant message parts (content and tool_calls) under a
 * tool mode, whole or streamed. Both paths read calls from the same final text with the same
 * functions, so streamed tool calls reassemble to exactly the non-streamed ones. Text that does
 * not read as calls (a cut-off array, a malformed block) is returned as content, never an error.
 */
import { randomUUID } from "node:crypto";
import { assertNever } from "../../compiler/ir.ts";
import type { ToolMode } from "./tool_choice.ts";
import { jsonObject, tryParseJson, type ParsedToolCall } from "./tool_parsers/tool_parser.ts";

export interface OpenAIToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export interface ToolOutput {
  /** undefined: the message has no content (OpenAI's `content: null`) */
  readonly content: string | undefined;
  readonly calls: readonly OpenAIToolCall[];
}

/** Ids like vLLM's: `chatcmpl-tool-<random>`. */
function toolCallId(): string {
  return `chatcmpl-tool-${randomUUID().replaceAll("-", "")}`;
}

function openaiCalls(calls: readonly ParsedToolCall[]): OpenAIToolCall[] {
  return calls.map((c) => ({ id: toolCallId(), type: "function", function: { name: c.name, arguments: c.argumentsJson } }));
}

/** "required" output: `[{"name", "parameters"}, ...]`; undefined when it is not that (cut off at max_tokens). */
function requiredCalls(text: string): ParsedToolCall[] | undefined {
  const list: unknown = tryParseJson(text);
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const calls: ParsedToolCall[] = [];
  for (const item of list as readonly unknown[]) {
    const o = jsonObject(item);
    const name = o?.["name"];
    const params = jsonObject(o?.["parameters"]);
    if (typeof name !== "string" || params === undefined) return undefined;
    calls.push({ name, argumentsJson: JSON.stringify(params) });
  }
  return calls;
}

/** The whole text of one choice, read under the request's tool mode. */
export function toolOutput(mode: ToolMode, text: string): ToolOutput {
  switch (mode.kind) {
    case "none":
      return { content: text, calls: [] };
    case "required": {
      const calls = requiredCalls(text);
      return calls === undefined ? { content: text, calls: [] } : { content: undefined, calls: openaiCalls(calls) };
    }
    case "named":
      // the grammar makes the whole output the arguments object; vLLM returns the text as written
      return jsonObject(tryParseJson(text)) === undefined
        ? { content: text, calls: [] }
        : { content: undefined, calls: openaiCalls([{ name: mode.name, argumentsJson: text }]) };
    case "auto": {
      const parsed = mode.parser.parse(text);
      return { content: parsed.content, calls: openaiCalls(parsed.calls) };
    }
    default:
      return assertNever(mode);
  }
}

/**
 * The finish reason a choice reports. Calls read from the output report "tool_calls" when the
 * model stopped by itself; a forced named function reports "stop", as vLLM and OpenAI do for it.
 */
export function toolFinishReason<F extends string | null>(mode: ToolMode, output: ToolOutput, finish: F): F | "tool_calls" {
  if (output.calls.length === 0 || mode.kind === "named" || finish !== "stop") return finish;
  return "tool_calls";
}

/**
 * One streamed choice's text under a tool mode: content goes out as soon as it surely is content
 * (for "auto", until the parser sees a tool-call start marker); everything after is held, and the
 * calls go out whole when the choice ends.
 */
export class ToolStream {
  private text = "";
  private sent = 0;
  private held = false;

  constructor(private readonly mode: ToolMode) {}

  /** Adds generated text; returns the content that may be sent now ("" for none). */
  push(delta: string): string {
    this.text += delta;
    if (this.mode.kind === "none") return this.take(this.text.length);
    // a constrained output is all calls (or, cut short, all content at the end)
    if (this.mode.kind !== "auto" || this.held) return "";
    const split = this.mode.parser.split(this.text);
    if (split.toolCallStarted) this.held = true;
    return this.take(split.contentEnd);
  }

  /** At the choice's end: the content not sent yet and the calls. */
  finish(): { readonly content: string; readonly output: ToolOutput } {
    const output = toolOutput(this.mode, this.text);
    const content = output.content ?? "";
    const rest = content.length > this.sent && content.startsWith(this.text.slice(0, this.sent)) ? content.slice(this.sent) : "";
    return { content: rest, output };
  }

  private take(end: number): string {
    if (end <= this.sent) return "";
    const out = this.text.slice(this.sent, end);
    this.sent = end;
    return out;
  }
}

/** The chunks that stream one call, as OpenAI sends them: id, type and name first, then the arguments. */
export function toolCallDeltas(calls: readonly OpenAIToolCall[]): unknown[] {
  return calls.flatMap((c, index) => [
    { tool_calls: [{ index, id: c.id, type: "function", function: { name: c.function.name, arguments: "" } }] },
    { tool_calls: [{ index, function: { arguments: c.function.arguments } }] },
  ]);
}
