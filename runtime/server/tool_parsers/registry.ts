/** The tool-call parsers `--tool-call-parser` can name (vLLM's names). */
import { hermesParser } from "./hermes.ts";
import { llama3JsonParser } from "./llama3_json.ts";
import type { ToolParser } from "./tool_parser.ts";

export const TOOL_PARSERS = {
  hermes: hermesParser,
  llama3_json: llama3JsonParser,
} as const satisfies Record<string, ToolParser>;

export type ToolParserName = keyof typeof TOOL_PARSERS;

export function isToolParserName(name: string): name is ToolParserName {
  return Object.hasOwn(TOOL_PARSERS, name);
}
