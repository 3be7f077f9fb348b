/**
 * The embind surface of @mlc-ai/web-xgrammar 0.1.27's WebAssembly build, as kiln calls it:
 * declarations only, no logic. The package's own classes are bypassed because every one of their
 * factories is `async` (each awaits the lazy module init), and the engine's sampler needs the
 * matcher synchronously every step. Names and argument orders are the C++ binding's
 * (web/src/xgrammar_binding.cc upstream); `undefined` fills a C++ std::optional.
 *
 * Every handle below owns C++ memory inside one WebAssembly instance: `delete()` frees it, and a
 * handle never freed leaks until its whole instance is garbage collected.
 */

/** An embind object: C++ memory that only `delete()` frees. */
export interface EmbindHandle {
  delete(): void;
  isDeleted(): boolean;
}

/** std::vector<std::string>. */
export interface VectorStringHandle extends EmbindHandle {
  size(): number;
}

/** std::vector<int32_t>; read it through `vecIntToView`, one call per element is ~1 µs. */
export interface VectorIntHandle extends EmbindHandle {
  size(): number;
}

export interface TokenizerInfoHandle extends EmbindHandle {
  GetVocabSize(): number;
}

/** A parsed, normalised grammar not yet bound to a vocabulary. */
export interface GrammarHandle extends EmbindHandle {
  ToString(): string;
}

/** A grammar compiled against one TokenizerInfo; matchers share it (a C++ shared_ptr). */
export interface CompiledGrammarHandle extends EmbindHandle {
  GetTokenizerInfo(): TokenizerInfoHandle;
}

/** The comma and colon a JSON schema grammar enforces when whitespace is not free. */
export interface SeparatorPair {
  readonly first: string;
  readonly second: string;
}

/** JSON schema text and xgrammar's layout options, shared by Grammar.FromJSONSchema and CompileJSONSchema. */
export type JsonSchemaArgs = [
  schema: string,
  anyWhitespace: boolean,
  indent: number | undefined,
  separators: SeparatorPair | undefined,
  strictMode: boolean,
  maxWhitespaceCnt: number | undefined,
];

export interface GrammarCompilerHandle extends EmbindHandle {
  CompileJSONSchema(...args: JsonSchemaArgs): CompiledGrammarHandle;
  CompileBuiltinJSONGrammar(): CompiledGrammarHandle;
  CompileGrammar(grammar: GrammarHandle): CompiledGrammarHandle;
  /** A structural tag as JSON text; kiln uses its "regex" format, the build's only regex entry. */
  CompileStructuralTag(structuralTagJson: string): CompiledGrammarHandle;
}

export interface GrammarMatcherHandle extends EmbindHandle {
  AcceptToken(tokenId: number, verbose: boolean): boolean;
  /** [ceil(vocabSize / 32)] int32 words, bit (id % 32) of word (id / 32) set = id allowed. */
  GetNextTokenBitmask(vocabSize: number): VectorIntHandle;
  IsTerminated(): boolean;
  Reset(): void;
  Rollback(numTokens: number): void;
  FindJumpForwardString(): string;
  GetMaxRollbackTokens(): number;
}

export interface GrammarStatics {
  FromEBNF(ebnf: string, rootRule: string): GrammarHandle;
  FromJSONSchema(...args: [...JsonSchemaArgs, printConvertedEbnf: boolean]): GrammarHandle;
  FromStructuralTag(structuralTagJson: string): GrammarHandle;
}

/** One instantiated module: what the emscripten factory leaves on the object it was given. */
export interface XgrammarBinding {
  vecStringFromJSArray(values: readonly string[]): VectorStringHandle;
  vecIntFromJSArray(values: readonly number[]): VectorIntHandle;
  /** A view of the vector's memory inside the wasm heap, valid until the vector is deleted. */
  vecIntToView(vector: VectorIntHandle): Int32Array;
  readonly TokenizerInfo: new (
    encodedVocab: VectorStringHandle,
    vocabType: string,
    vocabSize: number | undefined,
    stopTokenIds: VectorIntHandle | undefined,
    addPrefixSpace: boolean,
  ) => TokenizerInfoHandle;
  readonly GrammarCompiler: new (tokenizerInfo: TokenizerInfoHandle, maxThreads: number, cacheEnabled: boolean) => GrammarCompilerHandle;
  readonly GrammarMatcher: new (
    compiled: CompiledGrammarHandle,
    overrideStopTokens: VectorIntHandle | undefined,
    terminateWithoutStopToken: boolean,
    maxRollbackTokens: number,
  ) => GrammarMatcherHandle;
  readonly Grammar: GrammarStatics;
}

/** The parts of WebAssembly the loader uses (@types/node does not declare the global). */
export interface WasmModule {
  readonly kind?: "wasm-module";
}
export interface WasmInstance {
  readonly exports: object;
}
export interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => WasmModule;
  readonly Instance: new (module: WasmModule, imports: object) => WasmInstance;
  compile(bytes: Uint8Array): Promise<WasmModule>;
}

/**
 * What kiln hands the emscripten factory: its own console lines (so an abort's message can be
 * read back), and a synchronous instantiation (so a fresh instance can replace a broken one
 * between two engine steps).
 */
export interface EmscriptenModuleArg {
  print(line: string): void;
  printErr(line: string): void;
  instantiateWasm(imports: object, receive: (instance: WasmInstance, module: WasmModule) => void): object;
}

export type EmscriptenFactory = (arg: EmscriptenModuleArg) => Promise<unknown>;
