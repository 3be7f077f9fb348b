import { describe, expect, it } from "vitest";
import { toolMode } from "../../runtime/server/tool_choice.ts";
import { toolCallDeltas, toolFinishReason, toolOutput, ToolStream, type OpenAIToolCall } from "../../runtime/server/tool_call_output.ts";
import type { ToolMode } from "../../runtime/server/tool_choice.ts";
import { hermesParser } from "../../runtime/server/tool_parsers/hermes.ts";
import { llama3JsonParser } from "../../runtime/server/tool_parsers/llama3_json.ts";
import type { Tool } from "../../runtime/server/schemas.ts";

const TOOLS: Tool[] = [
  { type: "function", function: { name: "a", parameters: { type: "object", properties: { x: { type: "integer" } } } } },
  { type: "function", function: { name: "b" } },
];

/** Streams `text` in pieces of `size` characters and reassembles content and calls as a client does. */
function streamed(mode: ToolMode, text: string, size: number): { content: string; calls: [string, string][] } {
  const s = new ToolStream(mode);
  let content = "";
  for (let i = 0; i < text.length; i += size) content += s.push(text.slice(i, i + size));
  const end = s.finish();
  content += end.content;
  const calls: [string, string][] = [];
  for (const d of toolCallDeltas(end.output.calls) as { tool_calls: { index: number; id?: string; function: { name?: string; arguments: string } }[] }[]) {
    for (const c of d.tool_calls) {
      if (c.id !== undefined) calls[c.index] = [c.function.name ?? "", ""];
      calls[c.index]![1] += c.function.arguments;
    }
  }
  return { content, calls };
}

const whole = (mode: ToolMode, text: string): { content: string; calls: [string, string][] } => {
  const out = toolOutput(mode, text);
  return { content: out.content ?? "", calls: out.calls.map((c: OpenAIToolCall) => [c.function.name, c.function.arguments]) };
};

describe("tool outputs, whole and streamed", () => {
  const hermes: ToolMode = { kind: "auto", parser: hermesParser };
  const llama: ToolMode = { kind: "auto", parser: llama3JsonParser };
  const cases: [string, ToolMode, string][] = [
    ["hermes with content", hermes, 'Sure.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'],
    ["hermes malformed", hermes, "Sure <tool_call>\n{oops}\n</tool_call> done"],
    ["hermes plain text with a '<'", hermes, "a < b <tool but not a call"],
    ["llama3_json calls", llama, '<|python_tag|>{"name": "a", "parameters": {"x": 2}}; {"name": "b", "parameters": {}}'],
    ["llama3_json content", llama, "  The answer is 4."],
    ["required", toolMode({ tools: TOOLS, tool_choice: "required" }, undefined), '[{"name": "a", "parameters": {"x": 3}}, {"name": "b", "parameters": {}}]'],
    ["required cut short", toolMode({ tools: TOOLS, tool_choice: "required" }, undefined), '[{"name": "a", "param'],
    ["named", toolMode({ tools: TOOLS, tool_choice: { type: "function", function: { name: "a" } } }, undefined), '{"x": 4}'],
  ];
  for (const [name, mode, text] of cases) {
    it(`${name}: streamed in any piece size reassembles to the whole answer`, () => {
      const w = whole(mode, text);
      for (const size of [1, 2, 3, 7, 1000]) expect(streamed(mode, text, size)).toEqual(w);
    });
  }

  it("auto streams content before the first call and holds the rest", () => {
    const s = new ToolStream({ kind: "auto", parser: hermesParser });
    expect(s.push("Hi <tool")).toBe("Hi ");
    expect(s.push("_call>\n{")).toBe("");
    expect(s.push('"name": "a", "arguments": {}}\n</tool_call> trailing')).toBe("");
    const end = s.finish();
    expect(end.content).toBe("");
    expect(end.output.calls.map((c) => c.function.name)).toEqual(["a"]);
  });

  it("reads required and named outputs into calls with vLLM's ids and finish reasons", () => {
    const required = toolMode({ tools: TOOLS, tool_choice: "required" }, undefined);
    const out = toolOutput(required, '[{"name": "b", "parameters": {}}]');
    expect(out.content).toBeUndefined();
    expect(out.calls[0]!.id).toMatch(/^chatcmpl-tool-[0-9a-f]{32}$/);
    expect(toolFinishReason(required, out, "stop")).toBe("tool_calls");
    expect(toolFinishReason(required, toolOutput(required, "[{"), "length")).toBe("length");
    const named = toolMode({ tools: TOOLS, tool_choice: { type: "function", function: { name: "b" } } }, undefined);
    const n = toolOutput(named, "{}");
    expect(n.calls.map((c) => [c.function.name, c.function.arguments])).toEqual([["b", "{}"]]);
    expect(toolFinishReason(named, n, "stop")).toBe("stop");
  });
});

describe("toolMode", () => {
  it("builds vLLM's required schema: an array of name/parameters objects, one branch per tool", () => {
    const mode = toolMode({ tools: TOOLS, tool_choice: "required", parallel_tool_calls: false }, undefined);
    if (mode.kind !== "required" || mode.grammar.kind !== "json_schema") throw new Error(mode.kind);
    expect(mode.grammar.schema).toEqual({
      type: "array",
      minItems: 1,
      maxItems: 1,
      items: {
        anyOf: [
          { type: "object", properties: { name: { type: "string", enum: ["a"] }, parameters: TOOLS[0]!.function.parameters }, required: ["name", "parameters"] },
          { type: "object", properties: { name: { type: "string", enum: ["b"] }, parameters: { type: "object" } }, required: ["name", "parameters"] },
        ],
      },
    });
  });

  it("lifts $defs to the root; two tools defining one name differently are a 400", () => {
    const withDefs = (name: string, place: unknown): Tool => ({
      type: "function",
      function: { name, parameters: { type: "object", properties: { p: { $ref: "#/$defs/Place" } }, $defs: { Place: place } } },
    });
    const same = toolMode({ tools: [withDefs("a", { type: "string" }), withDefs("b", { type: "string" })], tool_choice: "required" }, undefined);
    if (same.kind !== "required" || same.grammar.kind !== "json_schema" || typeof same.grammar.schema !== "object") throw new Error(same.kind);
    expect(same.grammar.schema["$defs"]).toEqual({ Place: { type: "string" } });
    expect(JSON.stringify(same.grammar.schema["items"])).not.toContain('"$defs":');
    expect(() => toolMode({ tools: [withDefs("a", { type: "string" }), withDefs("b", { type: "integer" })], tool_choice: "required" }, undefined)).toThrow("differently");
  });

  it("none without tools, auto only with a parser, a named function must be declared", () => {
    expect(toolMode({}, undefined).kind).toBe("none");
    expect(toolMode({ tools: [], tool_choice: "auto" }, undefined).kind).toBe("none");
    expect(toolMode({ tools: TOOLS, tool_choice: "none" }, undefined).kind).toBe("none");
    expect(toolMode({ tools: TOOLS }, hermesParser).kind).toBe("auto");
    expect(() => toolMode({ tools: TOOLS }, undefined)).toThrow("--enable-auto-tool-choice");
    expect(() => toolMode({ tools: TOOLS, tool_choice: { type: "function", function: { name: "c" } } }, undefined)).toThrow("not in tools");
    expect(() => toolMode({ tool_choice: "required" }, undefined)).toThrow("no tools");
  });
});
