import { describe, expect, it } from "vitest";
import { hermesParser } from "../../../runtime/server/tool_parsers/hermes.ts";

describe("hermes tool parser", () => {
  it("reads one call and the content before it", () => {
    const out = hermesParser.parse('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>');
    expect(out.content).toBe("Let me check.\n");
    expect(out.calls).toEqual([{ name: "get_weather", argumentsJson: '{"city":"Paris"}' }]);
  });

  it("reads several calls, the last without its end tag, and no content", () => {
    const text = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": [1, 2]}}\n';
    const out = hermesParser.parse(text);
    expect(out.content).toBeUndefined();
    expect(out.calls.map((c) => [c.name, JSON.parse(c.argumentsJson)])).toEqual([
      ["a", {}],
      ["b", { x: [1, 2] }],
    ]);
  });

  it("treats malformed calls as plain content", () => {
    for (const text of [
      "<tool_call>\n{not json}\n</tool_call>",
      '<tool_call>\n{"arguments": {}}\n</tool_call>',
      '<tool_call>\n{"name": "f", "arguments": "x"}\n</tool_call>',
      '<tool_call>\n["f"]\n</tool_call>',
      "<tool_call>",
      'ok <tool_call>\n{"name": "f", "arguments": {}}\n</tool_call><tool_call>{"name":',
    ]) {
      expect(hermesParser.parse(text)).toEqual({ content: text, calls: [] });
    }
    expect(hermesParser.parse("just words")).toEqual({ content: "just words", calls: [] });
  });

  it("holds back a partial start marker while streaming", () => {
    expect(hermesParser.split("Hello <tool")).toEqual({ contentEnd: 6, toolCallStarted: false });
    expect(hermesParser.split("Hello <tool_call>\n{")).toEqual({ contentEnd: 6, toolCallStarted: true });
    expect(hermesParser.split("a < b")).toEqual({ contentEnd: 5, toolCallStarted: false });
  });
});
