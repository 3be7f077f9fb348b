/**
 * A config checked against its checkpoint before the model is built, from the safetensors headers
 * alone (names and shapes; no tensor data is read): the layer count must match the layer indices
 * the checkpoint holds, and vocab_size / the hidden size must match the token embedding's
 * [vocab, hidden] shape. Building first would size the model from the config: a config claiming a
 * million layers would build a million layers before the first weight was compared.
 *
 * The check reads the standard HF field and checkpoint names, so it covers every built-in
 * architecture and most plugins; a checkpoint without recognisable names is left to the loaders'
 * own per-tensor shape checks.
 */
import type { Checkpoint } from "./checkpoint.ts";
import { LAYERS, VOCAB, WIDTH } from "../../models/config_limits.ts";
import type { ConfigReader } from "../../models/hf_config.ts";

/** Where HF configs put the layer count and the hidden size (GPT-2 has its own names). */
const LAYER_COUNT_KEYS = ["num_hidden_layers", "n_layer"] as const;
const HIDDEN_SIZE_KEYS = ["hidden_size", "n_embd"] as const;
/** `model.layers.3.…`, `backbone.layers.3.…`, `transformer.h.3.…`: the stack's prefix and the index. */
const LAYER_NAME = /^((?:.*\.)?(?:layers|h))\.(\d{1,9})\./;
/** The token embedding (`embed_tokens`, GPT-2's `wte`, Mamba's `embeddings`), not a position table. */
const EMBEDDING_NAME = /(?:^|\.)(?:embed_tokens|wte|embeddings)\.weight$/;

export function checkConfigAgainstCheckpoint(config: ConfigReader, ckpt: Checkpoint): void {
  const names = ckpt.names();
  checkLayerCount(config, ckpt, names);
  checkEmbedding(config, ckpt, names);
}

function checkLayerCount(config: ConfigReader, ckpt: Checkpoint, names: readonly string[]): void {
  const key = LAYER_COUNT_KEYS.find((k) => config.has(k));
  if (key === undefined) return;
  const numLayers = config.int(key, LAYERS);
  const stacks = new Map<string, Set<number>>();
  for (const name of names) {
    const m = LAYER_NAME.exec(name);
    if (m === null || m[1] === undefined || m[2] === undefined) continue;
    const indices = stacks.get(m[1]) ?? new Set<number>();
    indices.add(Number(m[2]));
    stacks.set(m[1], indices);
  }
  if (stacks.size === 0) return;
  // A checkpoint may hold more than one stack (a vision tower beside the decoder): one must match.
  const matches = (s: ReadonlySet<number>): boolean => s.size === numLayers && [...s].every((i) => i < numLayers);
  if ([...stacks.values()].some(matches)) return;
  const held = [...stacks].map(([prefix, s]) => `${describeIndices(s)} (${prefix}.*)`).join("; ");
  throw config.error(key, `is ${numLayers}, but the checkpoint in ${ckpt.dir} holds layers ${held}`);
}

function checkEmbedding(config: ConfigReader, ckpt: Checkpoint, names: readonly string[]): void {
  const embeddings = names.filter((n) => EMBEDDING_NAME.test(n)).map((n) => ({ name: n, shape: ckpt.info(n).shape }));
  const first = embeddings.find((e) => e.shape.length === 2);
  if (first === undefined) return;
  const vocab = config.has("vocab_size") ? config.int("vocab_size", VOCAB) : undefined;
  const hiddenKey = HIDDEN_SIZE_KEYS.find((k) => config.has(k));
  const hidden = hiddenKey === undefined ? undefined : config.int(hiddenKey, WIDTH);
  const agrees = (shape: readonly number[]): boolean =>
    shape.length === 2 && (vocab === undefined || shape[0] === vocab) && (hidden === undefined || shape[1] === hidden);
  if (embeddings.some((e) => agrees(e.shape))) return;
  const [rows, cols] = first.shape;
  const where = `the token embedding "${first.name}" in ${ckpt.pathOf(first.name)} is [${first.shape.join(", ")}]`;
  if (vocab !== undefined && rows !== vocab) throw config.error("vocab_size", `is ${vocab}, but ${where} (${rows} rows)`);
  throw config.error(hiddenKey ?? "hidden_size", `is ${hidden ?? "absent"}, but ${where} (${cols} columns)`);
}

/** "0..1" for a run from 0, else the sorted indices (the first few). */
function describeIndices(s: ReadonlySet<number>): string {
  const sorted = [...s].sort((a, b) => a - b);
  const last = sorted[sorted.length - 1] ?? 0;
  if (sorted[0] === 0 && last === sorted.length - 1) return `0..${last}`;
  const shown = sorted.slice(0, 8).join(", ");
  return sorted.length > 8 ? `${shown}, … (${sorted.length} in all)` : shown;
}
