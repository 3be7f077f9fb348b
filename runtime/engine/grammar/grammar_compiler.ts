/**
 * Compiles grammar specs against one tokenizer's vocabulary, and caches the results.
 *
 *   const compiler = await GrammarCompiler.create(tokenizer, { vocabSize, stopTokenIds }); // once per engine
 *   const matcher = compiler.createMatcher({ kind: "json_schema", schema });            // per request, sync
 *
 * Everything after `create` is synchronous and runs on the calling thread, so a compile blocks
 * the event loop while it runs. Measured (Node 20, one core): a JSON schema against the fortune
 * tokenizer's 2048 tokens 5-40 ms (~120 ms for the process's first, while V8 tiers the wasm up),
 * against a synthetic 152k byte-level vocabulary ~80-130 ms; a step's mask ~20 µs and ~60 µs.
 *
 * Each compile parses the user's input twice: first on a throwaway instance (Xgrammar.validate),
 * where an invalid schema/regex/grammar may abort and only that instance is lost; then, known to
 * parse, on this compiler's instance, which holds the vocabulary (costly to rebuild: ~0.3 s for a
 * 150k vocabulary). xgrammar's own compile cache is off: an abort inside a cached compile leaves
 * the cache locked, and the next compile of any grammar never returns (measured). kiln's cache
 * below is keyed by kind, options and canonical source, bounded, least recently used out first.
 */
import { assertNever } from "../../../compiler/ir.ts";
import { KilnError } from "../errors.ts";
import { CompiledGrammar } from "./compiled_grammar.ts";
import type { GrammarMatcher } from "./grammar_matcher.ts";
import { grammarSource, type GrammarSource, type GrammarSpec } from "./grammar_spec.ts";
import { readGrammarVocabulary, type GrammarTokenizer, type GrammarVocabulary, type GrammarVocabularyOptions } from "./grammar_vocabulary.ts";
import { tokenBitmaskWords } from "./token_bitmask.ts";
import type { CompiledGrammarHandle, GrammarCompilerHandle, GrammarHandle, TokenizerInfoHandle, XgrammarBinding } from "./xgrammar_binding.ts";
import type { XgrammarInstance } from "./xgrammar_instance.ts";
import { loadXgrammar, type Xgrammar } from "./xgrammar_loader.ts";

export interface GrammarCompilerOptions extends GrammarVocabularyOptions {
  /** Compiled grammars kept; the least recently used is disposed past this. Default 64. */
  readonly cacheSize?: number;
}

const DEFAULT_CACHE_SIZE = 64;

/** The vocabulary loaded into one instance. */
interface VocabularyState {
  readonly instance: XgrammarInstance;
  readonly tokenizerInfo: TokenizerInfoHandle;
  readonly compiler: GrammarCompilerHandle;
}

export class GrammarCompiler {
  /** Ids a mask covers: the logits row width given at creation (default the tokenizer's vocabSize). */
  readonly vocabSize: number;
  /** Words of a mask: ceil(vocabSize / 32). */
  readonly bitmaskWords: number;
  private readonly cacheSize: number;
  /** Map order is recency: a hit is moved to the end, eviction takes the front. */
  private readonly cache = new Map<string, CompiledGrammar>();
  private state: VocabularyState | undefined;
  private closed = false;

  /** Loads xgrammar (once per process) and the tokenizer's vocabulary into a new instance. */
  static async create(tokenizer: GrammarTokenizer, options: GrammarCompilerOptions = {}): Promise<GrammarCompiler> {
    const xgrammar = await loadXgrammar();
    return new GrammarCompiler(xgrammar, readGrammarVocabulary(tokenizer, options), options);
  }

  constructor(
    private readonly xgrammar: Xgrammar,
    readonly vocabulary: GrammarVocabulary,
    options: { readonly cacheSize?: number } = {},
  ) {
    this.vocabSize = vocabulary.vocabSize;
    this.bitmaskWords = tokenBitmaskWords(vocabulary.vocabSize);
    this.cacheSize = Math.max(1, options.cacheSize ?? DEFAULT_CACHE_SIZE);
    this.state = this.load();
  }

  /** The spec compiled, from the cache when it has it. GRAMMAR_INVALID names what xgrammar rejected. */
  compile(spec: GrammarSpec): CompiledGrammar {
    const source = grammarSource(spec);
    const hit = this.cache.get(source.key);
    if (hit !== undefined) {
      this.cache.delete(source.key);
      this.cache.set(source.key, hit);
      return hit;
    }
    const state = this.healthyState();
    if (source.kind !== "json_object") {
      this.xgrammar.validate(spec.kind, (binding) => parse(binding, source).delete());
    }
    const handle = state.instance.callHealthy("GRAMMAR_INVALID", spec.kind, (binding) => compileSource(binding, state.compiler, source));
    const compiled = new CompiledGrammar(state.instance, handle, source.key, this.vocabSize);
    this.cache.set(source.key, compiled);
    for (const [key, old] of this.cache) {
      if (this.cache.size <= this.cacheSize) break;
      this.cache.delete(key);
      old.dispose();
    }
    return compiled;
  }

  /** compile(spec).createMatcher(): what a request needs. The caller disposes the matcher. */
  createMatcher(spec: GrammarSpec): GrammarMatcher {
    return this.compile(spec).createMatcher();
  }

  /** Compiled grammars held now. */
  get cachedGrammars(): number {
    return this.cache.size;
  }

  /** Frees the vocabulary and every cached grammar; live matchers keep working. Idempotent. */
  dispose(): void {
    this.dropCache();
    const state = this.state;
    this.state = undefined;
    this.closed = true;
    if (state !== undefined && !state.instance.broken) {
      state.compiler.delete();
      state.tokenizerInfo.delete();
    }
  }

  /** This compiler's instance, replaced (with a fresh copy of the vocabulary) after a failure broke it. */
  private healthyState(): VocabularyState {
    if (this.closed) throw new KilnError("INVALID_ARGUMENT", "grammar compile: the compiler has been disposed");
    if (this.state !== undefined && !this.state.instance.broken) return this.state;
    // Grammars compiled on the broken instance stay with the matchers already made from them.
    this.dropCache();
    this.state = this.load();
    return this.state;
  }

  private load(): VocabularyState {
    const instance = this.xgrammar.createInstance();
    const v = this.vocabulary;
    return instance.callHealthy("GRAMMAR_UNAVAILABLE", "grammar vocabulary", (binding) => {
      const vocab = binding.vecStringFromJSArray(v.encodedVocab);
      const stops = v.stopTokenIds.length > 0 ? binding.vecIntFromJSArray(v.stopTokenIds) : undefined;
      try {
        const tokenizerInfo = new binding.TokenizerInfo(vocab, v.vocabType, v.vocabSize, stops, v.addPrefixSpace);
        // One thread: the web build has no wasm threads. xgrammar's cache off: see the file comment.
        const compiler = new binding.GrammarCompiler(tokenizerInfo, 1, false);
        return { instance, tokenizerInfo, compiler };
      } finally {
        vocab.delete();
        stops?.delete();
      }
    });
  }

  private dropCache(): void {
    for (const compiled of this.cache.values()) compiled.dispose();
    this.cache.clear();
  }
}

/** Parses (without a vocabulary) what compileSource would compile: the validation pass. */
function parse(binding: XgrammarBinding, source: Exclude<GrammarSource, { kind: "json_object" }>): GrammarHandle {
  switch (source.kind) {
    case "json_schema":
      return binding.Grammar.FromJSONSchema(source.schema, source.anyWhitespace, undefined, undefined, source.strict, source.maxWhitespace, false);
    case "regex":
      return binding.Grammar.FromStructuralTag(source.structuralTag);
    case "ebnf":
      return binding.Grammar.FromEBNF(source.grammar, source.rootRule);
    default:
      return assertNever(source, "grammar source");
  }
}

function compileSource(binding: XgrammarBinding, compiler: GrammarCompilerHandle, source: GrammarSource): CompiledGrammarHandle {
  switch (source.kind) {
    case "json_schema":
      // indent undefined: with anyWhitespace false, one line with ", " and ": " (Python's json.dumps)
      return compiler.CompileJSONSchema(source.schema, source.anyWhitespace, undefined, undefined, source.strict, source.maxWhitespace);
    case "json_object":
      return compiler.CompileBuiltinJSONGrammar();
    case "regex":
      return compiler.CompileStructuralTag(source.structuralTag);
    case "ebnf": {
      const grammar = binding.Grammar.FromEBNF(source.grammar, source.rootRule);
      try {
        return compiler.CompileGrammar(grammar);
      } finally {
        grammar.delete();
      }
    }
    default:
      return assertNever(source, "grammar source");
  }
}
