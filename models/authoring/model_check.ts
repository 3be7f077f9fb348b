/**
 * `kiln check-model`: a static read of a model file with ts-morph, and, given a checkpoint, a
 * load of it. The rules, each in its own file:
 *
 *   prefix           every DSL module built with a checkpoint prefix that composes (prefix_check.ts)
 *   forward          forward is DSL tensor ops, no JavaScript computing values (forward_check.ts)
 *   tensor-parallel  no column-parallel output into a column-parallel input (forward_check.ts)
 *   registration     every model class registered under an HF name (registration_check.ts)
 *   checkpoint       with --checkpoint: tensors no module claims, parameters no tensor fills
 *                    (checkpoint_coverage.ts)
 *
 * Every diagnostic cites file:line.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { KilnError } from "../../runtime/engine/errors.ts";
import { checkCheckpointCoverage } from "./checkpoint_coverage.ts";
import { checkForwards } from "./forward_check.ts";
import { openModelSources, type Diagnostic } from "./model_source.ts";
import { checkPrefixes } from "./prefix_check.ts";
import { checkRegistration, findRegistrations } from "./registration_check.ts";

export interface ModelCheckOptions {
  /** an HF model folder to check the file's prefixes against (loads it) */
  readonly checkpoint?: string | undefined;
}

export async function checkModelFile(file: string, opts: ModelCheckOptions = {}): Promise<Diagnostic[]> {
  return (await checkModelFiles([file], opts))[0] ?? [];
}

/** Each file's diagnostics, in order; the files share one type checker (building it is most of the cost). */
export async function checkModelFiles(files: readonly string[], opts: ModelCheckOptions = {}): Promise<Diagnostic[][]> {
  const paths = files.map((f) => resolve(f));
  for (const [i, path] of paths.entries()) if (!existsSync(path)) throw new KilnError("INVALID_ARGUMENT", `model file ${files[i] ?? path} does not exist`);
  if (opts.checkpoint !== undefined && !existsSync(resolve(opts.checkpoint, "config.json"))) {
    throw new KilnError("MODEL_NOT_FOUND", `${opts.checkpoint} is not a model folder (no config.json)`);
  }
  const { project, sources } = openModelSources(paths);
  const out: Diagnostic[][] = [];
  for (const source of sources) {
    const diagnostics = [...checkPrefixes(source), ...checkForwards(source), ...checkRegistration(project, source)];
    if (opts.checkpoint !== undefined) {
      diagnostics.push(...(await checkCheckpointCoverage(source, findRegistrations(project, source), resolve(opts.checkpoint))));
    }
    out.push(diagnostics.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line));
  }
  return out;
}
