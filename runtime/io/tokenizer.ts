/**
 * A model folder's tokenizer: `tokenizer.json` run by @huggingface/tokenizers, the special tokens
 * and BOS/EOS policy of `tokenizer_config.json`, and the chat template (`chat_template.jinja`, else
 * `tokenizer_config.json`'s `chat_template`) rendered by @huggingface/jinja, which applies the
 * same trim_blocks / lstrip_blocks settings transformers uses.
 */
import fs from "node:fs";
import nodePath from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { KilnError } from "../engine/errors.ts";
import { checkTokenizerJson, isRecord } from "./tokenizer_json.ts";

/** A call in an assistant message; `arguments` is an object when the client's JSON text parsed to one (as vLLM passes it). */
export interface TemplateToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: unknown };
}

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly name?: string;
  readonly tool_calls?: readonly TemplateToolCall[];
  readonly tool_call_id?: string;
}

export interface ChatTemplateOptions {
  readonly addGenerationPrompt: boolean;
  /** the request's tools as `{type: "function", function: {...}}` objects (transformers' `tools`) */
  readonly tools?: readonly unknown[] | undefined;
  /** extra template variables (chat_template_kwargs); they cannot replace messages, tools or the special tokens */
  readonly kwargs?: Readonly<Record<string, unknown>> | undefined;
}

type JsonRecord = Readonly<Record<string, unknown>>;

export class KilnTokenizer {
  readonly dir: string;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  /** Size of the id space (largest id + 1), added tokens included. */
  readonly vocabSize: number;
  /** The template source, when the folder has one. */
  readonly chatTemplate: string | undefined;
  private readonly inner: Tokenizer;
  private readonly specialTokens: Readonly<Record<string, string>>;
  /** BOS/EOS that tokenizer_config asks for but the tokenizer.json post-processor does not add. */
  private readonly prependBos: boolean;
  private readonly appendEos: boolean;
  private readonly chatTemplatePath: string;
  /** tokenizer.json, named in errors the library raises while encoding or decoding */
  private readonly tokenizerPath: string;
  private compiledTemplate: Template | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    const tokenizerPath = (this.tokenizerPath = nodePath.join(dir, "tokenizer.json"));
    const tokenizerJson = checkTokenizerJson(tokenizerPath, readJsonObject(tokenizerPath));
    const configPath = nodePath.join(dir, "tokenizer_config.json");
    const config = readJsonObject(configPath);
    // transformers 5 defaults clean_up_tokenization_spaces to false; the JS library defaults to
    // true, which would rewrite " ." to "." and break prefix-stable incremental decoding.
    const innerConfig = { ...config, clean_up_tokenization_spaces: config["clean_up_tokenization_spaces"] === true };
    // The library throws plain Errors on parts of the file it cannot use (an unknown
    // normalizer, merges it cannot split): those are the file's faults, named as such.
    const inner = (this.inner = fromLibrary(tokenizerPath, "cannot build tokenizer", () => new Tokenizer(tokenizerJson, innerConfig)));

    let maxId = -1;
    for (const id of fromLibrary(tokenizerPath, "cannot list the vocabulary", () => inner.get_vocab(true)).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;

    const specials: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"] as const) {
      const content = tokenContent(config[key]);
      if (content !== undefined) specials[key] = content;
    }
    this.specialTokens = specials;
    this.bosTokenId = this.specialId(specials["bos_token"], configPath, "bos_token");
    this.eosTokenId = this.specialId(specials["eos_token"], configPath, "eos_token");

    // Probe once whether the post-processor already adds BOS/EOS, so encode never doubles them.
    const probe = fromLibrary(tokenizerPath, "cannot encode a probe text", () => inner.encode("a", { add_special_tokens: true }).ids);
    this.prependBos = config["add_bos_token"] === true && this.bosTokenId !== undefined && probe[0] !== this.bosTokenId;
    this.appendEos = config["add_eos_token"] === true && this.eosTokenId !== undefined && probe.at(-1) !== this.eosTokenId;

    this.chatTemplatePath = nodePath.join(dir, "chat_template.jinja");
    if (fs.existsSync(this.chatTemplatePath)) {
      this.chatTemplate = readText(this.chatTemplatePath);
    } else {
      this.chatTemplatePath = configPath;
      this.chatTemplate = configTemplate(config["chat_template"]);
    }
  }

  /** Reads tokenizer.json and tokenizer_config.json from a model folder. */
  static load(modelDir: string): KilnTokenizer {
    return new KilnTokenizer(modelDir);
  }

  /** Token ids for `text`; with special tokens (the default, as in HF) BOS/EOS are added as configured. */
  encode(text: string, options: { readonly addSpecialTokens?: boolean } = {}): number[] {
    const add = options.addSpecialTokens ?? true;
    const path = this.tokenizerPath;
    const ids = fromLibrary(path, "cannot encode the text", () => this.inner.encode(text, { add_special_tokens: add }).ids);
    // The library yields undefined for a piece outside the vocabulary when there is no unk token.
    if (!ids.every((id) => Number.isInteger(id))) {
      throw new KilnError("TOKENIZER_INVALID", `${path}: the text has a piece the vocabulary lacks, and the tokenizer has no unk_token`);
    }
    if (add && this.prependBos && this.bosTokenId !== undefined) ids.unshift(this.bosTokenId);
    if (add && this.appendEos && this.eosTokenId !== undefined) ids.push(this.eosTokenId);
    return ids;
  }

  decode(ids: readonly number[], options: { readonly skipSpecialTokens?: boolean } = {}): string {
    // The library throws on an empty list and silently decodes unknown ids to "", so check here.
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new KilnError("INVALID_ARGUMENT", `${this.dir}: token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
    }
    return fromLibrary(this.tokenizerPath, "cannot decode", () => this.inner.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }));
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  /** The prompt text for a conversation, as transformers' apply_chat_template(tokenize=False) renders it. */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions): string {
    const template = this.template();
    try {
      return template.render({
        ...options.kwargs,
        ...this.specialTokens,
        messages: messages.map((m) => ({ ...m })),
        // transformers passes tools=None when there are none; templates test `tools is not none`
        tools: options.tools !== undefined && options.tools.length > 0 ? options.tools : null,
        add_generation_prompt: options.addGenerationPrompt,
      });
    } catch (e) {
      // Templates reject conversations they cannot format via raise_exception (e.g. roles out of order).
      const why = e instanceof Error ? e.message : String(e);
      throw new KilnError("INVALID_ARGUMENT", `${this.chatTemplatePath}: chat template rejected the messages: ${why}`, {
        cause: e,
      });
    }
  }

  /** Parsed on first use so a template the engine cannot parse only blocks chat, not completion. */
  private template(): Template {
    if (this.compiledTemplate !== undefined) return this.compiledTemplate;
    if (this.chatTemplate === undefined) {
      throw new KilnError(
        "TOKENIZER_INVALID",
        `${this.dir}: no chat template (neither chat_template.jinja nor chat_template in tokenizer_config.json)`,
      );
    }
    try {
      this.compiledTemplate = new Template(this.chatTemplate);
    } catch (e) {
      throw new KilnError("TOKENIZER_INVALID", `${this.chatTemplatePath}: chat template does not parse`, { cause: e });
    }
    return this.compiledTemplate;
  }

  private specialId(content: string | undefined, configPath: string, field: string): number | undefined {
    if (content === undefined) return undefined;
    const id = this.inner.token_to_id(content);
    if (id === undefined) {
      throw new KilnError("TOKENIZER_INVALID", `${configPath}: ${field} "${content}" is not in the vocabulary`);
    }
    return id;
  }
}

function readText(path: string): string {
  try {
    return fs.readFileSync(path, "utf8");
  } catch (e) {
    throw new KilnError("TOKENIZER_INVALID", `${path}: cannot read file (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

function readJsonObject(path: string): JsonRecord {
  const text = readText(path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new KilnError("TOKENIZER_INVALID", `${path}: not valid JSON`, { cause: e });
  }
  if (!isRecord(parsed)) throw new KilnError("TOKENIZER_INVALID", `${path}: top level is not a JSON object`);
  return parsed;
}

/** Runs a library call on the file at `path`; a plain Error from it becomes TOKENIZER_INVALID with its message. */
function fromLibrary<T>(path: string, what: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError("TOKENIZER_INVALID", `${path}: ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

/** A special token is written either as its text or, in older files, as an AddedToken object. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && "content" in v && typeof v.content === "string") return v.content;
  return undefined;
}

/** `chat_template` is a string, or (older files) a list of named templates of which "default" is used. */
function configTemplate(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (!Array.isArray(v)) return undefined;
  const entries: readonly unknown[] = v;
  for (const entry of entries) {
    if (typeof entry === "object" && entry !== null && "name" in entry && entry.name === "default") {
      if ("template" in entry && typeof entry.template === "string") return entry.template;
    }
  }
  return undefined;
}
