/**
 * Hermes-style tool calls (Qwen 2.5 / Qwen3, NousResearch Hermes), as vLLM's `hermes` parser
 * reads them: each call is a `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
 * block; text before the first block is content. A block whose body is not such an object makes
 * the whole output plain content, as vLLM does, rather than returning half the calls.
 */
import { jsonObject, partialMarkerLength, plainContent, tryParseJson, type ParsedOutput, type ParsedToolCall, type StreamSplit, type ToolParser } from "./tool_parser.ts";

const START = "<tool_call>";
const END = "</tool_call>";
/** a block; the last one may lack its end tag when the output stopped at a stop string */
const BLOCK = /<tool_call>([\s\S]*?)(?:<\/tool_call>|$)/g;

function readCall(body: string): ParsedToolCall | undefined {
  const call = jsonObject(tryParseJson(body.trim()));
  const name = call?.["name"];
  if (typeof name !== "string" || name === "") return undefined;
  // Hermes writes "arguments"; some fine-tunes write "parameters"
  const args = call?.["arguments"] ?? call?.["parameters"] ?? {};
  const obj = jsonObject(args);
  if (obj === undefined) return undefined;
  return { name, argumentsJson: JSON.stringify(obj) };
}

export const hermesParser: ToolParser = {
  name: "hermes",
  parse(text: string): ParsedOutput {
    const first = text.indexOf(START);
    if (first < 0) return plainContent(text);
    const calls: ParsedToolCall[] = [];
    for (const m of text.slice(first).matchAll(BLOCK)) {
      const call = readCall(m[1] ?? "");
      if (call === undefined) return plainContent(text);
      calls.push(call);
    }
    const content = text.slice(0, first);
    // as vLLM: only an empty prefix is "no content" (a streamed "\n" before the call stays content)
    return { content: content === "" ? undefined : content, calls };
  },
  split(text: string): StreamSplit {
    const at = text.indexOf(START);
    if (at >= 0) return { contentEnd: at, toolCallStarted: true };
    return { contentEnd: text.length - partialMarkerLength(text, START), toolCallStarted: false };
  },
};

export const HERMES_MARKERS = { start: START, end: END } as const;
