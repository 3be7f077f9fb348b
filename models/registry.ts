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

type Entry = { readonly kind: "class"; readonly cls: CausalLMClass } | { readonly kind: "lazy"; readonly spec: string };

export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();

  register(arch: string, model: CausalLMClass | string): void {
    if (typeof model === "string" && !/^.+:[A-Za-z_$][\w$]*$/.test(model)) {
      throw new KilnError("PLUGIN_INVALID", `model spec '${model}' for ${arch} must look like "module-path:ExportName"`);
    }
    this.entries.set(arch, typeof model === "string" ? { kind: "lazy", spec: model } : { kind: "class", cls: model });
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
    throw new KilnError(
      "ARCH_UNKNOWN",
      `no registered model for architecture ${archs.map((a) => `'${a}'`).join(", ") || "(none given)"}; ` +
        `known: ${this.architectures().join(", ")}. Register one with registerModel() or a --plugin.`,
    );
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
  const r = new ModelRegistry();
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
    await (register as () => unknown)();
  }
}

/** Plugin paths from `KILN_PLUGINS` (comma-separated). */
export function pluginsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env["KILN_PLUGINS"] ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
