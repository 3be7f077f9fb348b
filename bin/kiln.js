#!/usr/bin/env node
// The installed `kiln` command. It runs the JavaScript compiled at install time (build/js, from
// `npm run build:js`, which `npm ci` / `npm install` run through `prepare`) when that is at least
// as new as every TypeScript source, so a start does not pay for transpiling; otherwise (a fresh
// edit, no build) and whenever plugins are loaded (they may be TypeScript importing kiln's DSL,
// which must be the same modules the CLI runs), it runs the TypeScript through tsx's loader.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const stamp = join(root, "build/js/.stamp");

/** The newest modification time of the .ts files under the compiled folders. */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts") || e.name.endsWith(".mjs")) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ["cli", "compiler", "runtime", "models"]) walk(join(root, d));
  return newest;
}

const plugins = process.argv.includes("--plugin") || (process.env["KILN_PLUGINS"] ?? "") !== "";
const compiled = !plugins && existsSync(stamp) && statSync(stamp).mtimeMs >= newestSource();
if (compiled) {
  await import("../build/js/cli/kiln.js");
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../cli/kiln.ts");
}
