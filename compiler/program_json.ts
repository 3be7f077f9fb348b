/**
 * A Program as JSON, for engine artifacts (program.json). A Program is plain data (numbers,
 * strings, arrays, records), so JSON carries it as is; the one thing JSON cannot hold is a
 * non-finite number, which writing refuses rather than turning it into null. Reading checks the
 * top-level shape and the format tag; the artifact's manifest digest vouches for the rest.
 */
import type { Program } from "./program.ts";

export const PROGRAM_FORMAT = "kiln-program/1";

export function programToJson(program: Program): string {
  return JSON.stringify({ format: PROGRAM_FORMAT, program }, (key, value: unknown) => {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`program field '${key}' is ${value}, which JSON cannot hold`);
    return value;
  });
}

const PROGRAM_ARRAYS = ["buffers", "kernels", "steps", "pieces", "kvLayers", "stateLayers", "inputBounds"] as const;

/** Parses program.json; throws an Error saying what is wrong (the caller adds where). */
export function programFromJson(text: string): Program {
  const raw: unknown = JSON.parse(text);
  if (typeof raw !== "object" || raw === null || !("format" in raw) || raw.format !== PROGRAM_FORMAT || !("program" in raw)) {
    throw new Error(`not a ${PROGRAM_FORMAT} program`);
  }
  const p: unknown = raw.program;
  if (typeof p !== "object" || p === null) throw new Error("the program is not an object");
  const record = p as Record<string, unknown>;
  for (const key of PROGRAM_ARRAYS) if (!Array.isArray(record[key])) throw new Error(`the program lacks its ${key}`);
  if (typeof record["logits"] !== "number" || typeof record["options"] !== "object" || record["options"] === null) {
    throw new Error("the program lacks its options or logits buffer");
  }
  return p as Program;
}
