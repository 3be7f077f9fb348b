/**
 * The folder of kiln's package.json, found by walking up from this file: the same answer whether
 * the TypeScript runs from the source tree (runtime/io/) or the JavaScript compiled at install
 * time (build/js/runtime/io/). Undefined where no kiln package.json is above (the GPU check's bundle
 * copied out of the tree).
 * Files that ship beside the code (assets/, kernels/, the native addon) are found from it.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function isKilnPackage(dir: string): boolean {
  const path = join(dir, "package.json");
  if (!existsSync(path)) return false;
  try {
    return (JSON.parse(readFileSync(path, "utf8")) as { name?: unknown }).name === "kiln";
  } catch {
    return false;
  }
}

function findPackageRoot(from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    if (isKilnPackage(dir)) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

export const PACKAGE_ROOT: string | undefined = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/**
 * A path inside kiln's package. Without a package above (a bundle copied elsewhere) it is taken
 * from the source tree's layout, two folders above this file's; whoever reads it then reports a
 * missing file.
 */
export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT ?? dirname(dirname(dirname(fileURLToPath(import.meta.url)))), ...parts);
}
