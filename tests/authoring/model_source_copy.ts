/** Test support: a copy of one of kiln's model files, edited, that still imports kiln's own modules. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** models/<name>.ts with `edits` applied (each must match), written to a temp folder with its relative imports made absolute. */
export function seededModel(name: string, edits: readonly (readonly [string, string])[], append = ""): string {
  const path = join(ROOT, "models", `${name}.ts`);
  let text = readFileSync(path, "utf8").replace(/from "(\.{1,2}\/[^"]+)"/g, (_m, rel: string) => `from ${JSON.stringify(resolve(dirname(path), rel))}`);
  for (const [from, to] of edits) {
    if (!text.includes(from)) throw new Error(`seed edit not found in models/${name}.ts: ${from}`);
    text = text.replace(from, to);
  }
  const dir = mkdtempSync(join(tmpdir(), "kiln-check-"));
  const out = join(dir, `${name}_seeded.ts`);
  writeFileSync(out, text + append);
  return out;
}
