/**
 * Structured outputs at the API edge: what a request asks its output to match — OpenAI's
 * `response_format` (json_object, json_schema), vLLM's `guided_json` / `guided_regex` /
 * `guided_choice` / `guided_grammar` and its newer `structured_outputs` object — becomes one
 * grammar spec, compiled (and cached) against the model's vocabulary when the request is admitted,
 * so a schema xgrammar rejects is a 400 before anything runs. Each sequence then gets its own
 * matcher as a TokenConstraint: the engine masks its logits row with the matcher's bitmask and
 * advances it with every token. The compiler (xgrammar's WebAssembly) loads on first use.
 */
import { GrammarCompiler } from "../engine/grammar/grammar_compiler.ts";
import type { GrammarMatcher } from "../engine/grammar/grammar_matcher.ts";
import type { GrammarSpec } from "../engine/grammar/grammar_spec.ts";
import { allocateTokenBitmask, applyTokenBitmask } from "../engine/grammar/token_bitmask.ts";
import type { TokenConstraint, TokenConstraintFactory } from "../engine/token_constraint.ts";
import type { KilnTokenizer } from "../io/tokenizer.ts";
import { ApiError } from "./api_error.ts";

/** The request fields that ask for structured output (completions and chat share them). */
export interface StructuredOutputFields {
  readonly response_format?: { readonly type: string; readonly json_schema?: unknown } | null | undefined;
  readonly guided_json?: unknown;
  readonly guided_regex?: string | null | undefined;
  readonly guided_choice?: readonly string[] | null | undefined;
  readonly guided_grammar?: string | null | undefined;
  readonly structured_outputs?: Readonly<Record<string, unknown>> | null | undefined;
}

type JsonSchemaInput = string | boolean | Readonly<Record<string, unknown>>;

function isSchema(v: unknown): v is JsonSchemaInput {
  return typeof v === "string" || typeof v === "boolean" || (typeof v === "object" && v !== null && !Array.isArray(v));
}

function stringList(v: unknown, param: string): readonly string[] {
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === "string")) throw ApiError.badRequest(`${param} must be a list of strings`, param, "invalid_value");
  return v;
}

/**
 * The grammar a request asks for; undefined for plain text. Two at once is a 400. JSON may carry
 * any whitespace between tokens (vLLM's default) unless the server or the request
 * (`structured_outputs.disable_any_whitespace`) asks for the compact layout: a weak model can
 * otherwise spend its whole budget on whitespace.
 */
export function requestedGrammar(body: StructuredOutputFields, serverCompact = false): GrammarSpec | undefined {
  const spec = requestedSpec(body);
  const compact = serverCompact || body.structured_outputs?.["disable_any_whitespace"] === true;
  return compact && spec?.kind === "json_schema" ? { ...spec, anyWhitespace: false } : spec;
}

function requestedSpec(body: StructuredOutputFields): GrammarSpec | undefined {
  const specs: [string, GrammarSpec][] = [];
  const format = body.response_format;
  if (format != null && format.type !== "text") specs.push(["response_format", responseFormatSpec(format)]);
  if (body.guided_json != null) {
    if (!isSchema(body.guided_json)) throw ApiError.badRequest("guided_json must be a JSON schema (an object or its JSON text)", "guided_json", "invalid_value");
    specs.push(["guided_json", { kind: "json_schema", schema: body.guided_json }]);
  }
  if (body.guided_regex != null) specs.push(["guided_regex", { kind: "regex", pattern: body.guided_regex }]);
  if (body.guided_choice != null) specs.push(["guided_choice", { kind: "choice", choices: stringList(body.guided_choice, "guided_choice") }]);
  if (body.guided_grammar != null) specs.push(["guided_grammar", { kind: "ebnf", grammar: body.guided_grammar }]);
  const so = body.structured_outputs;
  if (so != null) {
    if (so["json"] != null) {
      if (!isSchema(so["json"])) throw ApiError.badRequest("structured_outputs.json must be a JSON schema", "structured_outputs.json", "invalid_value");
      specs.push(["structured_outputs.json", { kind: "json_schema", schema: so["json"] }]);
    }
    if (typeof so["regex"] === "string") specs.push(["structured_outputs.regex", { kind: "regex", pattern: so["regex"] }]);
    if (so["choice"] != null) specs.push(["structured_outputs.choice", { kind: "choice", choices: stringList(so["choice"], "structured_outputs.choice") }]);
    if (typeof so["grammar"] === "string") specs.push(["structured_outputs.grammar", { kind: "ebnf", grammar: so["grammar"] }]);
    if (so["json_object"] === true) specs.push(["structured_outputs.json_object", { kind: "json_object" }]);
  }
  if (specs.length > 1) {
    throw ApiError.badRequest(`ask for one output structure at a time (got ${specs.map(([f]) => f).join(", ")})`, specs[1]![0], "invalid_value");
  }
  return specs[0]?.[1];
}

function responseFormatSpec(format: { readonly type: string; readonly json_schema?: unknown }): GrammarSpec {
  switch (format.type) {
    case "json_object":
      return { kind: "json_object" };
    case "json_schema": {
      const js = format.json_schema;
      const obj = typeof js === "object" && js !== null ? (js as Readonly<Record<string, unknown>>) : undefined;
      const schema = obj?.["schema"];
      if (obj === undefined || !isSchema(schema)) {
        throw ApiError.badRequest("response_format json_schema needs json_schema.schema (a JSON schema)", "response_format.json_schema", "invalid_value");
      }
      // OpenAI's strict: false promises less than an exact match; xgrammar's non-strict mode
      // lets properties the schema does not name appear, as JSON Schema itself does
      return { kind: "json_schema", schema, strict: obj["strict"] !== false };
    }
    default:
      throw ApiError.badRequest(`response_format type must be text, json_object or json_schema (got '${format.type}')`, "response_format", "invalid_value");
  }
}

/** A matcher driving one sequence: its bitmask masks the row, each token advances it. */
class MatcherConstraint implements TokenConstraint {
  private readonly mask: Int32Array;
  constructor(private readonly matcher: GrammarMatcher) {
    this.mask = allocateTokenBitmask(matcher.vocabSize);
  }
  maskLogits(row: Float32Array): void {
    this.matcher.fillNextTokenBitmask(this.mask);
    applyTokenBitmask(row, this.mask);
  }
  deviceBitmask(): Int32Array {
    const mask = allocateTokenBitmask(this.matcher.vocabSize);
    this.matcher.fillNextTokenBitmask(mask);
    return mask;
  }
  acceptToken(tokenId: number): boolean {
    return this.matcher.acceptToken(tokenId);
  }
  get terminated(): boolean {
    return this.matcher.isTerminated();
  }
  dispose(): void {
    this.matcher.dispose();
  }
}

/** The server's grammar compiler, loaded on first use; compiled grammars are cached by spec. */
export class StructuredOutputs {
  private compiler: Promise<GrammarCompiler> | undefined;

  constructor(
    private readonly tokenizer: KilnTokenizer,
    /** the model's logits width */
    private readonly vocabSize: number,
    private readonly stopTokenIds: readonly number[],
  ) {}

  /**
   * Compiles the spec now (a GRAMMAR_INVALID error is the client's 400) and returns the factory
   * the engine calls once per sequence. The factory compiles again, from the cache, so an
   * eviction between admission and start cannot leave it holding a disposed grammar.
   */
  async constraint(spec: GrammarSpec): Promise<TokenConstraintFactory> {
    this.compiler ??= GrammarCompiler.create(this.tokenizer, {
      vocabSize: this.vocabSize,
      ...(this.stopTokenIds.length > 0 ? { stopTokenIds: this.stopTokenIds } : {}),
    }).catch((e: unknown) => {
      // a failed load is tried again by the next request
      this.compiler = undefined;
      throw e;
    });
    const compiler = await this.compiler;
    compiler.compile(spec);
    return () => new MatcherConstraint(compiler.createMatcher(spec));
  }

  async close(): Promise<void> {
    const c = this.compiler;
    this.compiler = undefined;
    if (c) (await c).dispose();
  }
}
