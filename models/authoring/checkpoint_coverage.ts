/**
 * Rule "checkpoint" (`kiln check-model --checkpoint <hf-folder>`): the file's model class, built
 * from the folder's config and loaded from its checkpoint through its own loadWeights, leaves no
 * checkpoint tensor unclaimed and no parameter unfilled. Loading is the reliable reader of how
 * prefixes compose (stacked maps, renames and ties included); the diagnostics point at the
 * construction (file:line from ts-morph) whose literal prefix segment the unfilled parameter runs
 * through, preferring a segment no checkpoint tensor has (the likely misspelling).
 */
import { pathToFileURL } from "node:url";
import type { ClassDeclaration, SourceFile } from "ts-morph";
import { architectures, loadConfigJson } from "../hf_config.ts";
import type { CausalLM } from "../dsl/causal_lm.ts";
import { LLAMA_STACKED } from "../dsl/load_weights.ts";
import { SINGLE_DEVICE } from "../dsl/module.ts";
import { Checkpoint } from "../../runtime/io/checkpoint.ts";
import { checkpointSource } from "../../runtime/io/model_loader.ts";
import { classChain, diagnosticAt, type Diagnostic } from "./model_source.ts";
import { moduleConstructions, type ConstructionSite } from "./prefix_check.ts";
import { modelClasses, type Registration } from "./registration_check.ts";

/** `model.layers.3.mlp` → `model.layers.{i}.mlp`: one line per kind of tensor, not per layer. */
export const perLayer = (name: string): string => name.replace(/\.\d+\./g, ".{i}.");
const dedupe = (names: readonly string[]): string[] => [...new Set(names.map(perLayer))];

function isModelClass(v: unknown): v is new (args: { config: unknown; ctx: unknown }) => CausalLM {
  return typeof v === "function";
}

/** The class the checkpoint's architecture is registered to, else the class named as it, else the file's only model class. */
function pickClass(classes: readonly ClassDeclaration[], regs: readonly Registration[], archs: readonly string[]): ClassDeclaration | string {
  const byArch = archs.map((a) => regs.find((r) => r.arch === a)?.className).find((n) => n !== undefined);
  const named = classes.find((c) => c.getName() === byArch) ?? classes.find((c) => archs.includes(c.getName() ?? ""));
  if (named) return named;
  const [only, ...more] = classes;
  if (only !== undefined && more.length === 0) return only;
  return `cannot tell which of ${classes.map((c) => c.getName()).join(", ") || "(no model classes)"} reads a checkpoint of ${archs.join(", ") || "(no architectures)"}`;
}

/** The construction an unfilled parameter most likely went wrong at. */
function siteFor(param: string, sites: readonly ConstructionSite[], known: ReadonlySet<string>): ConstructionSite | undefined {
  const segments = param.split(".");
  const hits = sites.filter((s) => s.segments.some((seg) => segments.includes(seg)));
  const unknown = hits.filter((s) => s.segments.some((seg) => segments.includes(seg) && !known.has(seg)));
  const deepest = (xs: readonly ConstructionSite[]): ConstructionSite | undefined =>
    [...xs].sort((a, b) => Math.max(...b.segments.map((s) => segments.indexOf(s))) - Math.max(...a.segments.map((s) => segments.indexOf(s))))[0];
  return deepest(unknown) ?? deepest(hits);
}

function codeOf(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

export async function checkCheckpointCoverage(source: SourceFile, regs: readonly Registration[], dir: string): Promise<Diagnostic[]> {
  const config = loadConfigJson(dir);
  const picked = pickClass(modelClasses(source), regs, architectures(config));
  if (typeof picked === "string") return [{ file: source.getFilePath(), line: 1, rule: "checkpoint", message: picked }];
  const mod = (await import(pathToFileURL(source.getFilePath()).href)) as Record<string, unknown>;
  const cls = mod[picked.getName() ?? ""];
  if (!isModelClass(cls)) return [diagnosticAt(picked, "checkpoint", `${picked.getName() ?? "the model class"} is not exported, so it cannot be loaded`)];
  const ckpt = Checkpoint.open(dir);
  const names = ckpt.names();
  let model: CausalLM;
  let failure: unknown;
  try {
    model = new cls({ config, ctx: { parallel: SINGLE_DEVICE, weightStorage: "f32" } });
    try {
      model.loadWeights(checkpointSource(ckpt));
    } catch (e) {
      failure = e;
    }
  } catch (e) {
    return [diagnosticAt(picked, "checkpoint", `building ${picked.getName() ?? "the model"} from ${dir}/config.json failed: ${e instanceof Error ? e.message : String(e)}`)];
  } finally {
    ckpt.close();
  }
  if (failure === undefined) return [];
  const code = codeOf(failure);
  const message = failure instanceof Error ? failure.message : String(failure);
  if (code !== "TENSOR_MISSING" && code !== "TENSOR_UNUSED") return [diagnosticAt(picked, "checkpoint", `loading ${dir} failed: ${message}`)];

  const out: Diagnostic[] = [];
  const sites = moduleConstructions(source);
  // segments the checkpoint spells (kiln's stacked names count: qkv_proj is filled from q_proj)
  const known = new Set([...names.flatMap((n) => n.split(".")), ...LLAMA_STACKED.map((s) => s.param.slice(1))]);
  const unfilled = dedupe([...model.parameters().values()].filter((p) => p.missingShards.length > 0).map((p) => p.name));
  for (const name of unfilled) {
    const site = siteFor(name, sites, known);
    const where = site ? ` (built here with prefix ${site.node.getArguments()[0]?.getText() ?? ""})` : "";
    out.push(site ? diagnosticAt(site.node, "checkpoint", `parameter ${name}${where} is filled by no checkpoint tensor`) : diagnosticAt(picked, "checkpoint", `parameter ${name} is filled by no checkpoint tensor`));
  }
  const listed = /checkpoint tensors not consumed by any parameter: ([^;]*)/.exec(message)?.[1];
  const unused = dedupe(listed === undefined ? [] : listed.split(", ").map((s) => s.trim()).filter((s) => s !== ""));
  if (unused.length > 0) {
    // the loadWeights that decides which names are read (own or inherited)
    const at = classChain(picked).map((c) => c.getMethod("loadWeights")).find((m) => m !== undefined) ?? picked;
    out.push(diagnosticAt(at, "checkpoint", `checkpoint tensors no module claims: ${unused.join(", ")}`));
  }
  return out;
}
