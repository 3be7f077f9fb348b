/**
 * The model registry: HF `architectures` names → model classes. Built-in models are registered
 * here; out-of-tree models register a class or a lazy "module-path:ExportName" spec (imported on
 * first use), usually from a plugin module whose `register()` runs at start-up (`--plugin`,
 * `KILN_PLUGINS`), as vLLM's plugins do.
 */
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { KilnError } from "../runtime/engine/errors.ts";
import type { CausalLMClass } from "./dsl/causal_lm.ts";
import { LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM } from "./llama.ts";
import { BambaForCausalLM } from "./bamba.ts";
import { Gemma2ForCausalLM, Gemma3ForCausalLM } from "./gemma.ts";
import { GPT2LMHeadModel } from "./gpt2.ts";
import { JambaForCausalLM } from "./jamba.ts";
import { Lfm2ForCausalLM } from "./lfm2.ts";
import { Mamba2ForCausalLM, MambaForCausalLM } from "./mamba.ts";
import { MiniMaxForCausalLM } from "./minimax.ts";
import { OPTForCausalLM } from "./opt.ts";
import { Qwen3MoeForCausalLM } from "./qwen3_moe.ts";
import { genericDecoderFallback } from "./authoring/generic_decoder.ts";
import { OnnxArtifactModel } from "./onnx/onnx_artifact_model.ts";
import { ONNX_ARCH } from "./onnx/onnx_path.ts";

type Entry = { readonly kind: "class"; readonly cls: CausalLMClass } | { readonly kind: "lazy"; readonly spec: string };

/** Serves an architecture no entry names (the generic decoder); undefined: it does not try. `unknown` is the refusal so far. */
export type ArchitectureFallback = (arch: string, unknown: string) => CausalLMClass | undefined;

export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  /** register() calls so far (a plugin that re-registers a known name still counts) */
  private registrations = 0;

  constructor(private readonly fallback?: ArchitectureFallback) {}

  register(arch: string, model: CausalLMClass | string): void {
    if (typeof model === "string" && !/^.+:[A-Za-z_$][\w$]*$/.test(model)) {
      throw new KilnError("PLUGIN_INVALID", `model spec '${model}' for ${arch} must look like "module-path:ExportName"`);
    }
    this.entries.set(arch, typeof model === "string" ? { kind: "lazy", spec: model } : { kind: "class", cls: model });
    this.registrations++;
  }

  get registrationCount(): number {
    return this.registrations;
  }

  has(arch: string): boolean {
    return this.entries.has(arch);
  }

  architectures(): string[] {
    return [...this.entries.keys()].sort();
  }

  /** The class for the first of `archs` that is registered. */
  async resolve(archs: readonly string[]): Promise<{ arch: string; cls: CausalLMClass }> {
    for (const arch of archs) {
      const e = this.entries.get(arch);
      if (!e) continue;
      if (e.kind === "class") return { arch, cls: e.cls };
      const cls = await importExport(e.spec, arch);
      this.entries.set(arch, { kind: "class", cls });
      return { arch, cls };
    }
    const unknown =
      `no registered model for architecture ${archs.map((a) => `'${a}'`).join(", ") || "(none given)"}; ` +
      `known: ${this.architectures().join(", ")}. Register one with registerModel() or a --plugin.`;
    const first = archs[0];
    // the fallback's class decides fit from the checkpoint when built, and refuses with ARCH_UNKNOWN
    const generic = first === undefined ? undefined : this.fallback?.(first, unknown);
    if (first !== undefined && generic !== undefined) return { arch: first, cls: generic };
    throw new KilnError("ARCH_UNKNOWN", unknown);
  }
}

function moduleUrl(path: string): string {
  if (path.startsWith("file:")) return path;
  if (isAbsolute(path) || path.startsWith(".")) return pathToFileURL(resolve(path)).href;
  return path; // a package name
}

async function importModule(path: string, what: string): Promise<Record<string, unknown>> {
  try {
    return (await import(moduleUrl(path))) as Record<string, unknown>;
  } catch (e) {
    throw new KilnError("PLUGIN_INVALID", `cannot import ${what} '${path}': ${(e as Error).message}`, { cause: e });
  }
}

async function importExport(spec: string, arch: string): Promise<CausalLMClass> {
  const cut = spec.lastIndexOf(":");
  const path = spec.slice(0, cut);
  const name = spec.slice(cut + 1);
  const mod = await importModule(path, `model module for ${arch}`);
  const cls = mod[name];
  if (typeof cls !== "function") {
    throw new KilnError("PLUGIN_INVALID", `module '${path}' has no exported class '${name}' (for ${arch})`);
  }
  return cls as CausalLMClass;
}

export function builtinRegistry(): ModelRegistry {
  const r = new ModelRegistry(genericDecoderFallback);
  r.register("LlamaForCausalLM", LlamaForCausalLM);
  r.register("MistralForCausalLM", MistralForCausalLM);
  r.register("Qwen2ForCausalLM", Qwen2ForCausalLM);
  r.register("Qwen3ForCausalLM", Qwen3ForCausalLM);
  r.register("Qwen3MoeForCausalLM", Qwen3MoeForCausalLM);
  r.register("Lfm2ForCausalLM", Lfm2ForCausalLM);
  r.register("MiniMaxForCausalLM", MiniMaxForCausalLM);
  r.register("MambaForCausalLM", MambaForCausalLM);
  r.register("Mamba2ForCausalLM", Mamba2ForCausalLM);
  r.register("JambaForCausalLM", JambaForCausalLM);
  r.register("BambaForCausalLM", BambaForCausalLM);
  r.register("OPTForCausalLM", OPTForCausalLM);
  r.register("GPT2LMHeadModel", GPT2LMHeadModel);
  r.register("Gemma2ForCausalLM", Gemma2ForCausalLM);
  r.register("Gemma3ForCausalLM", Gemma3ForCausalLM);
  // what an engine artifact of an imported ONNX graph names (its program runs; nothing is traced)
  r.register(ONNX_ARCH, OnnxArtifactModel);
  return r;
}

/** The process's registry, which plugins extend. */
export const defaultRegistry = builtinRegistry();

export function registerModel(arch: string, model: CausalLMClass | string): void {
  defaultRegistry.register(arch, model);
}

/** Imports each plugin module and runs its `register()` export. */
export async function loadPlugins(paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    const mod = await importModule(path, "plugin");
    const register = mod["register"];
    if (typeof register !== "function") throw new KilnError("PLUGIN_INVALID", `plugin '${path}' exports no register() function`);
    const before = defaultRegistry.registrationCount;
    await (register as () => unknown)();
    // a plugin that registered nothing here most often reached another copy of kiln's modules: a
    // .ts file outside a "type": "module" package loads as CommonJS, with its own registry
    if (defaultRegistry.registrationCount === before) {
      throw new KilnError(
        "PLUGIN_INVALID",
        `plugin '${path}' ran register() but registered no architecture in kiln's registry; if it is a .ts file loaded as CommonJS ` +
          `(no "type": "module" in its package.json), it imported its own copy of kiln: name it .mts, or call registerModel() from kiln/dsl`,
      );
    }
  }
}

/** Plugin paths from `KILN_PLUGINS` (comma-separated). */
export function pluginsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env["KILN_PLUGINS"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
