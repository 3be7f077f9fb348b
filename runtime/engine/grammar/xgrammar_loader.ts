/**
 * Loading @mlc-ai/web-xgrammar in Node.
 *
 * `lib/index.js` is a UMD bundle in a `"type": "module"` package, so Node's ESM loader sees no
 * exports, and every class it exports creates its objects asynchronously. kiln instead evaluates
 * the file as the CommonJS module it is written as (vm.compileFunction with the CommonJS wrapper's
 * parameters) and takes the emscripten factory from inside it. Three details make instances
 * synchronous and recoverable:
 * - one statement is added after the last statement of the UMD factory, exporting its `Module`
 *   (the emscripten factory); that anchor is checked to occur exactly once, so another build fails
 *   loudly here (GRAMMAR_UNAVAILABLE) rather than mid-request;
 * - `process` is shadowed as undefined, so emscripten takes its plain (non-Node) path, whose only
 *   `await` (a dynamic `import("module")`) is in the Node branch;
 * - the wasm bytes (embedded as a base64 data URI) are compiled once, and each instance is made
 *   with `instantiateWasm` calling `new WebAssembly.Instance`, so the factory runs to completion
 *   before it returns (~20 ms) and a broken instance can be replaced between two engine steps.
 */
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import nodePath from "node:path";
import vm from "node:vm";
import { KilnError } from "../errors.ts";
import type { EmscriptenFactory, EmscriptenModuleArg, WasmApi, WasmModule, XgrammarBinding } from "./xgrammar_binding.ts";
import { CapturedConsole, XgrammarInstance } from "./xgrammar_instance.ts";

declare const WebAssembly: WasmApi;

const PACKAGE = "@mlc-ai/web-xgrammar";
/** The bundle's last statement, after which `Module` is still in scope. */
const ANCHOR = "Object.defineProperty(exports, '__esModule', { value: true });";
const FACTORY_EXPORT = "__kilnEmscriptenFactory";
const WASM_DATA_URI = /wasmBinaryFile="data:application\/octet-stream;base64,([A-Za-z0-9+/=]+)"/;
/** Members kiln calls; checked on every instance so a different build fails at load, not mid-request. */
const BINDING_FUNCTIONS = ["vecStringFromJSArray", "vecIntFromJSArray", "vecIntToView", "TokenizerInfo", "GrammarCompiler", "GrammarMatcher"] as const;
const GRAMMAR_FUNCTIONS = ["FromEBNF", "FromJSONSchema", "FromStructuralTag"] as const;

/** The loaded library: compiled wasm plus the factory that instantiates it. */
export class Xgrammar {
  private probe: XgrammarInstance | undefined;

  constructor(
    private readonly factory: EmscriptenFactory,
    private readonly wasm: WasmModule,
    /** The bundle's path, named in errors. */
    readonly path: string,
  ) {}

  /** A fresh instance (its own heap, ~17 MB to start). */
  createInstance(): XgrammarInstance {
    const console = new CapturedConsole();
    const arg: EmscriptenModuleArg = {
      print: (line) => console.write(line),
      printErr: (line) => console.write(line),
      instantiateWasm: (imports, receive) => {
        const instance = new WebAssembly.Instance(this.wasm, imports);
        receive(instance, this.wasm);
        return instance.exports;
      },
    };
    // Emscripten rejects this promise on every later abort; the rejection carries nothing the
    // instance's own calls do not already report, and unhandled it would end the process.
    this.factory(arg).catch(() => undefined);
    if (!isBinding(arg)) {
      throw new KilnError("GRAMMAR_UNAVAILABLE", `${this.path}: the module did not initialise synchronously with the members kiln calls (${BINDING_FUNCTIONS.join(", ")}, Grammar.${GRAMMAR_FUNCTIONS.join("/")}); is ${PACKAGE} another build than 0.1.27?`);
    }
    return new XgrammarInstance(arg, console);
  }

  /**
   * Runs a parse of user input on a throwaway instance, so an abort (which damages the instance it
   * happens in) never touches an instance that holds a vocabulary. A broken probe is replaced.
   */
  validate<T>(what: string, fn: (binding: XgrammarBinding) => T): T {
    if (this.probe === undefined || this.probe.broken) this.probe = this.createInstance();
    return this.probe.call("GRAMMAR_INVALID", what, fn);
  }
}

let loading: Promise<Xgrammar> | undefined;

/** Loads xgrammar once per process; later calls share the first load. Everything after is synchronous. */
export function loadXgrammar(): Promise<Xgrammar> {
  loading ??= load().catch((e: unknown) => {
    // A failed load is not remembered: the next call tries again.
    loading = undefined;
    throw e;
  });
  return loading;
}

async function load(): Promise<Xgrammar> {
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve(PACKAGE);
  } catch (e) {
    throw new KilnError("GRAMMAR_UNAVAILABLE", `${PACKAGE} is not installed (structured outputs need it)`, { cause: e });
  }
  const unavailable = (problem: string, cause?: unknown): KilnError =>
    new KilnError("GRAMMAR_UNAVAILABLE", `${path}: ${problem}`, cause === undefined ? {} : { cause });
  let source: string;
  try {
    source = await fs.readFile(path, "utf8");
  } catch (e) {
    throw unavailable("cannot read the bundle", e);
  }
  const wasmBase64 = WASM_DATA_URI.exec(source)?.[1];
  if (wasmBase64 === undefined) throw unavailable("no embedded wasm binary (a base64 data URI) in the bundle");
  let wasm: WasmModule;
  try {
    wasm = await WebAssembly.compile(Buffer.from(wasmBase64, "base64"));
  } catch (e) {
    throw unavailable("the embedded wasm binary does not compile", e);
  }
  return new Xgrammar(evaluateBundle(source, path, unavailable), wasm, path);
}

function evaluateBundle(source: string, path: string, unavailable: (problem: string, cause?: unknown) => KilnError): EmscriptenFactory {
  if (source.split(ANCHOR).length !== 2) throw unavailable(`expected the statement ${ANCHOR} exactly once; is this another build than 0.1.27?`);
  const patched = source.replace(ANCHOR, `${ANCHOR} exports.${FACTORY_EXPORT} = Module;`);
  const exports: Record<string, unknown> = {};
  try {
    const body = vm.compileFunction(patched, ["exports", "require", "module", "__filename", "__dirname", "process"], { filename: path });
    body(exports, createRequire(path), { exports }, path, nodePath.dirname(path), undefined);
  } catch (e) {
    throw unavailable("the bundle does not evaluate as CommonJS", e);
  }
  const factory = exports[FACTORY_EXPORT];
  if (!isFactory(factory)) throw unavailable("the bundle's Module is not the emscripten factory");
  return factory;
}

function isFactory(value: unknown): value is EmscriptenFactory {
  return typeof value === "function";
}

function isBinding(arg: EmscriptenModuleArg): arg is EmscriptenModuleArg & XgrammarBinding {
  const grammar = member(arg, "Grammar");
  return (
    BINDING_FUNCTIONS.every((name) => typeof member(arg, name) === "function") &&
    typeof grammar === "function" &&
    GRAMMAR_FUNCTIONS.every((name) => typeof member(grammar, name) === "function")
  );
}

/** An own property read without indexing an untyped object. */
function member(value: object, name: string): unknown {
  const descriptor: PropertyDescriptor | undefined = Object.getOwnPropertyDescriptor(value, name);
  return descriptor?.value;
}
