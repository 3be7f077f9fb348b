/**
 * HF activation names (`hidden_act`, `activation_function`, `hidden_activation`) → the IR's
 * unary ops. Names transformers spells differently for the same function map to one op:
 * "gelu_new", "gelu_fast" and "gelu_pytorch_tanh" are all GELU's tanh approximation.
 */
import type { UnaryOp } from "../../compiler/ir.ts";
import type { ConfigReader } from "../hf_config.ts";

export const HF_ACTIVATIONS = {
  relu: "relu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  silu: "silu",
  swish: "silu",
} as const satisfies Record<string, UnaryOp>;

export type HfActivation = keyof typeof HF_ACTIVATIONS;

function isHfActivation(name: string): name is HfActivation {
  return Object.hasOwn(HF_ACTIVATIONS, name);
}

/**
 * The activation under the first of `keys` the config sets, else `fallback` (the architecture's
 * default); an unknown name is CONFIG_INVALID.
 */
export function parseActivation(c: ConfigReader, keys: readonly string[], fallback: HfActivation): UnaryOp {
  const key = keys.find((k) => c.has(k));
  const name = key === undefined ? fallback : c.string(key);
  if (!isHfActivation(name)) {
    throw c.error(key ?? keys[0] ?? "hidden_act", `is "${name}", which is not a supported activation (${Object.keys(HF_ACTIVATIONS).join(", ")})`);
  }
  return HF_ACTIVATIONS[name];
}
