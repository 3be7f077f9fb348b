import { describe, expect, it } from "vitest";
import { llama3JsonParser } from "../../../runtime/server/tool_parsers/llama3_json.ts";
import { isToolParserName, TOOL_PARSERS } from "../../../runtime/server/tool_parsers/registry.ts";

describe("llama3_json tool parser", () => {
  it("reads a call written with parameters, with or without the python tag", () => {
    for (const text of ['{"name": "get_weather", "parameters": {"city": "Paris"}}', '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}']) {
      expect(llama3JsonParser.parse(text)).toEqual({ content: undefined, calls: [{ name: "get_weather", argumentsJson: '{"city":"Paris"}' }] });
    }
  });

  it("reads calls separated by '; ', a ';' inside a string left alone", () => {
    const out = llama3JsonParser.parse('{"name": "a", "parameters": {"q": "x; y"}}; {"name": "b", "arguments": {}}');
    expect(out.calls).toEqual([
      { name: "a", argumentsJson: '{"q":"x; y"}' },
      { name: "b", argumentsJson: "{}" },
    ]);
  });

  it("treats malformed or non-call output as plain content", () => {
    for (const text of ['{"name": "a", "parameters": {"q": 1}', '{"parameters": {}}', "{}}", '{"name": "a", "parameters": 3}', "The weather is nice.", '{"name": "a"}; oops']) {
      expect(llama3JsonParser.parse(text)).toEqual({ content: text, calls: [] });
    }
  });

  it("decides on the first characters while streaming", () => {
    expect(llama3JsonParser.split("  ")).toEqual({ contentEnd: 0, toolCallStarted: false });
    expect(llama3JsonParser.split("<|python")).toEqual({ contentEnd: 0, toolCallStarted: false });
    expect(llama3JsonParser.split(' {"na')).toEqual({ contentEnd: 0, toolCallStarted: true });
    expect(llama3JsonParser.split("Sure")).toEqual({ contentEnd: 4, toolCallStarted: false });
  });

  it("is in the registry under vLLM's names", () => {
    expect(Object.keys(TOOL_PARSERS)).toEqual(["hermes", "llama3_json"]);
    expect(isToolParserName("hermes")).toBe(true);
    expect(isToolParserName("toString")).toBe(false);
  });
});
