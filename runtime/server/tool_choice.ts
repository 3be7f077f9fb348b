/**
 * What a chat request's `tools` and `tool_choice` ask of the output, decided once at the edge,
 * as vLLM decides it:
 * - "none" (or no tools): plain text; the tools still reach the template;
 * - "required": the output is constrained to a JSON array of one or more `{"name", "parameters"}`
 *   objects, one schema branch per tool (vLLM's anyOf), read back as the calls;
 * - a named function: the output is constrained to that function's parameters schema and is the
 *   call's arguments;
 * - "auto" (the default when tools are sent): the model writes what it likes and the server's
 *   tool-call parser (`--tool-call-parser`) reads calls out of it; without
 *   `--enable-auto-tool-choice` it is a 400, as in vLLM.
 */
import type { GrammarSpec } from "../engine/grammar/grammar_spec.ts";
import { ApiError } from "./api_error.ts";
import type { Tool, ToolChoice } from "./schemas.ts";
import type { ToolParser } from "./tool_parsers/tool_parser.ts";

export type ToolMode =
  | { readonly kind: "none" }
  | { readonly kind: "required"; readonly grammar: GrammarSpec }
  | { readonly kind: "named"; readonly name: string; readonly grammar: GrammarSpec }
  | { readonly kind: "auto"; readonly parser: ToolParser };

export interface ToolFields {
  readonly tools?: readonly Tool[] | null | undefined;
  readonly tool_choice?: ToolChoice | null | undefined;
  readonly parallel_tool_calls?: boolean | null | undefined;
}

/** A function without a parameters schema takes an object of any shape. */
function parametersSchema(t: Tool): Readonly<Record<string, unknown>> {
  return t.function.parameters ?? { type: "object" };
}

function checkNames(tools: readonly Tool[]): void {
  const seen = new Set<string>();
  tools.forEach((t, i) => {
    if (seen.has(t.function.name)) throw ApiError.badRequest(`tool name '${t.function.name}' is declared twice`, `tools.${i}.function.name`, "invalid_value");
    seen.add(t.function.name);
  });
}

/** Where a schema keeps the definitions its `$ref`s point at ("#/$defs/X", or draft-07's "#/definitions/X"). */
const DEF_KEYS = ["$defs", "definitions"] as const;

/**
 * Each tool's parameters with its definitions lifted to the array schema's root, as vLLM does: a
 * `$ref` to "#/$defs/X" resolves from the root, where the tool's schema no longer is. Two tools
 * that define one name differently cannot share the root, which is a 400.
 */
function liftDefinitions(tools: readonly Tool[]): { readonly params: Readonly<Record<string, unknown>>[]; readonly defs: Record<string, Record<string, unknown>> } {
  const defs: Record<string, Record<string, unknown>> = {};
  const params = tools.map((t, i) => {
    const p: Record<string, unknown> = { ...parametersSchema(t) };
    for (const key of DEF_KEYS) {
      const d = p[key];
      if (typeof d !== "object" || d === null || Array.isArray(d)) continue;
      delete p[key];
      const into = (defs[key] ??= {});
      for (const [name, def] of Object.entries(d)) {
        if (name in into && JSON.stringify(into[name]) !== JSON.stringify(def)) {
          throw ApiError.badRequest(`tools define '${key}/${name}' differently; rename one`, `tools.${i}.function.parameters.${key}.${name}`, "invalid_value");
        }
        into[name] = def;
      }
    }
    return p;
  });
  return { params, defs };
}

/** vLLM's schema for "required": `[{"name": <tool>, "parameters": <its schema>}, ...]`, at least one. */
export function requiredToolsSchema(tools: readonly Tool[], parallel: boolean): Readonly<Record<string, unknown>> {
  const { params, defs } = liftDefinitions(tools);
  return {
    type: "array",
    minItems: 1,
    ...(parallel ? {} : { maxItems: 1 }),
    items: {
      anyOf: tools.map((t, i) => ({
        type: "object",
        properties: { name: { type: "string", enum: [t.function.name] }, parameters: params[i] },
        required: ["name", "parameters"],
      })),
    },
    ...defs,
  };
}

/**
 * The tool mode of a request; `autoParser` is the server's parser when auto tool choice is
 * enabled. A choice that names no declared function, or asks for calls without tools, is a 400.
 */
export function toolMode(body: ToolFields, autoParser: ToolParser | undefined): ToolMode {
  const tools = body.tools ?? [];
  checkNames(tools);
  const choice = body.tool_choice ?? (tools.length > 0 ? "auto" : "none");
  if (choice === "none") return { kind: "none" };
  if (tools.length === 0) {
    if (choice === "auto") return { kind: "none" };
    throw ApiError.badRequest("tool_choice asks for a tool call, but no tools were sent", "tool_choice", "invalid_value");
  }
  if (choice === "auto") {
    if (autoParser === undefined) {
      throw ApiError.badRequest('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set', "tool_choice", "invalid_value");
    }
    return { kind: "auto", parser: autoParser };
  }
  if (choice === "required") {
    return { kind: "required", grammar: { kind: "json_schema", schema: requiredToolsSchema(tools, body.parallel_tool_calls !== false) } };
  }
  const tool = tools.find((t) => t.function.name === choice.function.name);
  if (tool === undefined) {
    throw ApiError.badRequest(`tool_choice names the function '${choice.function.name}', which is not in tools`, "tool_choice", "invalid_value");
  }
  return { kind: "named", name: tool.function.name, grammar: { kind: "json_schema", schema: parametersSchema(tool) } };
}
