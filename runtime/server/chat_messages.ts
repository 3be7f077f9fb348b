/**
 * Request messages → the variables a chat template reads, as vLLM builds them: text content
 * parts joined, an assistant's `content: null` as "" (templates test `'</think>' in content`),
 * its tool calls with `function.arguments` parsed from JSON text to an object (templates such as
 * Llama 3.1's and Qwen3's write `arguments | tojson`), tool results with their `tool_call_id`.
 */
import type { z } from "zod";
import type { ChatMessage as TemplateMessage, TemplateToolCall } from "../io/tokenizer.ts";
import { unsupported } from "./request_fields.ts";
import type { ChatMessage, Tool } from "./schemas.ts";

type Message = z.infer<typeof ChatMessage>;

/** A message's text; parts the model cannot read are refused by name. */
function messageText(m: Message, i: number): string {
  if (typeof m.content === "string") return m.content;
  if (m.content == null) return "";
  return m.content
    .map((p, j) => {
      if (p.type === "text" && "text" in p && typeof p.text === "string") return p.text;
      throw unsupported(`messages.${i}.content.${j}`, `content parts of type '${p.type}' are not supported: this model reads text only`);
    })
    .join("");
}

/** Arguments as the template sees them: the parsed object, or the client's text when it is not a JSON object. */
function templateArguments(text: string): unknown {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : text;
  } catch {
    return text;
  }
}

export function templateMessages(messages: readonly Message[]): TemplateMessage[] {
  return messages.map((m, i) => {
    const calls: TemplateToolCall[] | undefined = m.tool_calls?.map((c) => ({
      id: c.id,
      type: c.type,
      function: { name: c.function.name, arguments: templateArguments(c.function.arguments) },
    }));
    return {
      role: m.role,
      content: messageText(m, i),
      ...(m.name === undefined ? {} : { name: m.name }),
      ...(calls === undefined || calls.length === 0 ? {} : { tool_calls: calls }),
      ...(m.tool_call_id == null ? {} : { tool_call_id: m.tool_call_id }),
    };
  });
}

/** Tools as transformers hands them to a template: `{type, function: {name, description, parameters}}`, absent fields left out. */
export function templateTools(tools: readonly Tool[] | null | undefined): Readonly<Record<string, unknown>>[] | undefined {
  if (tools == null || tools.length === 0) return undefined;
  return tools.map((t) => {
    const f: Record<string, unknown> = { name: t.function.name };
    if (t.function.description != null) f["description"] = t.function.description;
    if (t.function.parameters != null) f["parameters"] = t.function.parameters;
    if (t.function.strict != null) f["strict"] = t.function.strict;
    return { type: t.type, function: f };
  });
}
