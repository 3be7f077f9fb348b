/**
 * What a request asks its output to match, in the terms of the APIs that ask for it:
 * - OpenAI `response_format: {type: "json_schema", json_schema: {schema, strict}}` → json_schema,
 *   `{type: "json_object"}` → json_object;
 * - vLLM `guided_json` → json_schema, `guided_regex` → regex, `guided_choice` → choice,
 *   `guided_grammar` → ebnf (xgrammar's EBNF dialect, root rule "root").
 *
 * Each spec reduces to one `GrammarSource`: the exact text xgrammar compiles and the key a
 * compiled grammar is cached under. Input that is wrong before xgrammar sees it (a schema that is
 * not JSON, an empty choice list) is GRAMMAR_INVALID here, without a round trip into wasm.
 */
import { assertNever } from "../../../compiler/ir.ts";
import { KilnError } from "../errors.ts";

/**
 * A known gap in xgrammar 0.1.27: a string with minLength, maxLength or pattern is generated from
 * the class [^"\\\r\n], which admits raw control characters (tab, U+0001, …) that JSON forbids,
 * and no escapes; a plain string uses the correct rule. Output for such schemas can fail JSON.parse.
 */
export interface JsonSchemaSpec {
  readonly kind: "json_schema";
  /** The schema as JSON text or as parsed JSON (an object, or a boolean schema). */
  readonly schema: string | boolean | Readonly<Record<string, unknown>>;
  /**
   * xgrammar's strict mode (its default, and vLLM's): properties and items the schema does not
   * name are not generated, as if unevaluatedProperties/unevaluatedItems were false. With false,
   * JSON Schema's own default applies and extra properties may appear. Default true.
   */
  readonly strict?: boolean;
  /** Any whitespace between JSON tokens (vLLM's default); false forces one-line `json.dumps` layout. Default true. */
  readonly anyWhitespace?: boolean;
  /** With anyWhitespace, at most this many whitespace characters in a row. Default unlimited. */
  readonly maxWhitespace?: number;
}

export type GrammarSpec =
  | JsonSchemaSpec
  | { readonly kind: "json_object" }
  | { readonly kind: "regex"; readonly pattern: string }
  | { readonly kind: "ebnf"; readonly grammar: string; readonly rootRule?: string }
  | { readonly kind: "choice"; readonly choices: readonly string[] };

export type GrammarKind = GrammarSpec["kind"];

/** A spec reduced to what xgrammar is called with. */
export type GrammarSource =
  | {
      readonly kind: "json_schema";
      readonly key: string;
      readonly schema: string;
      readonly strict: boolean;
      readonly anyWhitespace: boolean;
      readonly maxWhitespace: number | undefined;
    }
  | { readonly kind: "json_object"; readonly key: string }
  | { readonly kind: "regex"; readonly key: string; readonly structuralTag: string }
  | { readonly kind: "ebnf"; readonly key: string; readonly grammar: string; readonly rootRule: string };

export function grammarSource(spec: GrammarSpec): GrammarSource {
  switch (spec.kind) {
    case "json_schema":
      return jsonSchemaSource(spec);
    case "json_object":
      return { kind: "json_object", key: "json_object" };
    case "regex": {
      if (typeof spec.pattern !== "string") throw invalid("regex: the pattern is not a string");
      // The web build has no Grammar.FromRegex; its structural tag "regex" format is the same converter.
      const structuralTag = JSON.stringify({ type: "structural_tag", format: { type: "regex", pattern: spec.pattern } });
      return { kind: "regex", key: `regex\0${spec.pattern}`, structuralTag };
    }
    case "ebnf": {
      const rootRule = spec.rootRule ?? "root";
      if (typeof spec.grammar !== "string") throw invalid("ebnf: the grammar is not a string");
      return { kind: "ebnf", key: `ebnf\0${rootRule}\0${spec.grammar}`, grammar: spec.grammar, rootRule };
    }
    case "choice": {
      const grammar = choiceGrammar(spec.choices);
      return { kind: "ebnf", key: `ebnf\0root\0${grammar}`, grammar, rootRule: "root" };
    }
    default:
      return assertNever(spec, "grammar kind");
  }
}

function jsonSchemaSource(spec: JsonSchemaSpec): GrammarSource {
  let value: unknown = spec.schema;
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch (e) {
      throw invalid(`json_schema: the schema is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (typeof value !== "boolean" && (typeof value !== "object" || value === null || Array.isArray(value))) {
    throw invalid(`json_schema: a schema is a JSON object or a boolean, not ${Array.isArray(value) ? "an array" : JSON.stringify(value)}`);
  }
  const maxWhitespace = spec.maxWhitespace;
  if (maxWhitespace !== undefined && !(Number.isInteger(maxWhitespace) && maxWhitespace >= 1)) {
    throw invalid(`json_schema: maxWhitespace must be a positive integer, not ${maxWhitespace}`);
  }
  // Re-serialised so that layout differences share a cache entry; key order is kept, because
  // xgrammar generates properties in the order the schema lists them.
  const schema = JSON.stringify(value);
  const strict = spec.strict ?? true;
  const anyWhitespace = spec.anyWhitespace ?? true;
  const key = `json_schema\0${strict ? "strict" : "loose"}\0${anyWhitespace ? "any" : "compact"}\0${maxWhitespace ?? ""}\0${schema}`;
  return { kind: "json_schema", key, schema, strict, anyWhitespace, maxWhitespace };
}

/** `root ::= "a" | "b"`: exactly one of the choices, each an EBNF string literal. */
export function choiceGrammar(choices: readonly string[]): string {
  if (!Array.isArray(choices) || choices.length === 0) throw invalid("choice: the list of choices is empty");
  const literals = choices.map((c, i) => {
    if (typeof c !== "string") throw invalid(`choice: choice ${i} is not a string`);
    return ebnfStringLiteral(c);
  });
  return `root ::= ${literals.join(" | ")}`;
}

/**
 * A string as an xgrammar EBNF literal. Quote and backslash are escaped, and so is every control
 * character (as \xHH), since the EBNF parser reads a raw newline as the end of the rule.
 */
export function ebnfStringLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

function invalid(message: string): KilnError {
  return new KilnError("GRAMMAR_INVALID", message);
}
