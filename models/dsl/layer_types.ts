/**
 * Per-layer lists in HF configs (`layer_types`, lists of layer indices), checked where they are
 * read: one entry per layer, each entry a kind the architecture builds, each index a real layer.
 */
import { layerIndex } from "../config_limits.ts";
import type { ConfigReader } from "../hf_config.ts";

/** `key` (default layer_types) as a list of exactly `numLayers` kinds from `allowed`. */
export function layerTypeList<T extends string>(
  c: ConfigReader,
  numLayers: number,
  allowed: readonly T[],
  key = "layer_types",
): T[] {
  const types = c.stringList(key);
  return checkLayerTypes(c, key, numLayers, types, allowed);
}

/** Checks a list of layer kinds already read (or derived from an older spelling) from `key`. */
export function checkLayerTypes<T extends string>(
  c: ConfigReader,
  key: string,
  numLayers: number,
  types: readonly string[],
  allowed: readonly T[],
): T[] {
  if (types.length !== numLayers) throw c.error(key, `has ${types.length} entries for ${numLayers} layers (num_hidden_layers)`);
  return types.map((t, i) => {
    const kind = allowed.find((a) => a === t);
    if (kind === undefined) throw c.error(key, `entry ${i} is '${t}' (expected ${allowed.join(" or ")})`);
    return kind;
  });
}

/** An optional list of layer indices (attention layers, dense-MLP layers), each within [0, numLayers). */
export function optLayerIndices(c: ConfigReader, key: string, numLayers: number): number[] | undefined {
  return c.optIntList(key, layerIndex(numLayers));
}
