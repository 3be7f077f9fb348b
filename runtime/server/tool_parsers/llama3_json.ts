/**
 * Llama 3.1 / 3.2 JSON tool calls, as vLLM's `llama3_json` parser reads them: the whole output is
 * one or more JSON objects `{"name": ..., "parameters": {...}}` (or "arguments"), optionally after
 * `<|python_tag|>`, several separated by `;`. Output that starts any other way is content; output
 * that starts like a call but does not parse as calls is content too (never an error).
 */
import { jsonObject, plainContent, tryParseJson, type ParsedOutput, type ParsedToolCall, type StreamSplit, type ToolParser } from "./tool_parser.ts";

const PYTHON_TAG = "<|python_tag|>";

/** The text after leading whitespace and the python tag, if the output opens like a tool call. */
function callText(text: string): string | undefined {
  let t = text.trimStart();
  if (t.startsWith(PYTHON_TAG)) t = t.slice(PYTHON_TAG.length).trimStart();
  return t.startsWith("{") ? t : undefined;
}

/**
 * Splits `a; b; c` into the JSON objects, by bracket depth outside strings: a `;` inside a string
 * argument must not split a call.
 */
function splitObjects(text: string): string[] | undefined {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === ";" && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
    if (depth < 0) return undefined;
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

function readCall(body: string): ParsedToolCall | undefined {
  const call = jsonObject(tryParseJson(body));
  const name = call?.["name"];
  if (typeof name !== "string" || name === "") return undefined;
  const obj = jsonObject(call?.["parameters"] ?? call?.["arguments"] ?? {});
  return obj === undefined ? undefined : { name, argumentsJson: JSON.stringify(obj) };
}

export const llama3JsonParser: ToolParser = {
  name: "llama3_json",
  parse(text: string): ParsedOutput {
    const body = callText(text);
    if (body === undefined) return plainContent(text);
    const parts = splitObjects(body);
    if (parts === undefined || parts.length === 0) return plainContent(text);
    const calls: ParsedToolCall[] = [];
    for (const p of parts) {
      const call = readCall(p);
      if (call === undefined) return plainContent(text);
      calls.push(call);
    }
    return { content: undefined, calls };
  },
  split(text: string): StreamSplit {
    // a call is the whole output, so the decision is made on its first characters
    const t = text.trimStart();
    if (t === "" || PYTHON_TAG.startsWith(t)) return { contentEnd: 0, toolCallStarted: false };
    if (callText(text) !== undefined) return { contentEnd: 0, toolCallStarted: true };
    return { contentEnd: text.length, toolCallStarted: false };
  },
};
