/** Test support: copies of fixture folders that a test may alter (the originals stay untouched). */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../runtime/io/safetensors.ts";
import { writeSafetensors, type TensorToWrite } from "../runtime/io/safetensors_writer.ts";
import { FIXTURES as INDEX } from "./fixtures/index.ts";

export const FIXTURES = fileURLToPath(new URL("./fixtures", import.meta.url));
/** A fixture's folder: one of tests/fixtures, or the fortune model's in assets/ (tests/fixtures/index.ts). */
export const fixture = (name: string): string => INDEX.find((f) => f.name === name)?.dir ?? join(FIXTURES, name);

/** A writable copy of a fixture folder. */
export function copyFixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kiln-${name}-`));
  cpSync(fixture(name), dir, { recursive: true });
  return dir;
}

export function editConfig(dir: string, edit: (cfg: Record<string, unknown>) => void): void {
  const path = join(dir, "config.json");
  const cfg = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(path, JSON.stringify(cfg));
}

/** Rewrites model.safetensors through `edit`, which gets and returns the tensor list. */
export function editWeights(dir: string, edit: (ts: TensorToWrite[]) => TensorToWrite[]): void {
  const path = join(dir, "model.safetensors");
  const f = SafetensorsFile.open(path);
  const tensors: TensorToWrite[] = [...f.tensors.values()].map((info) => ({
    name: info.name,
    dtype: info.dtype,
    shape: info.shape,
    data: f.readBytes(info.name),
  }));
  f.close();
  writeSafetensors(path, edit(tensors));
}
