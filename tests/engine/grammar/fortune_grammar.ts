/** The fortune model's tokenizer (2048 byte-level BPE tokens) and a grammar compiler over it. */
import { fileURLToPath } from "node:url";
import { GrammarCompiler } from "../../../runtime/engine/grammar/grammar_compiler.ts";
import { KilnTokenizer } from "../../../runtime/io/tokenizer.ts";

export const FORTUNE_DIR = fileURLToPath(new URL("../../../assets/fortune-llama", import.meta.url));

export interface FortuneGrammar {
  readonly tokenizer: KilnTokenizer;
  readonly compiler: GrammarCompiler;
  /** The stop token every grammar ends with. */
  readonly eos: number;
}

export async function fortuneGrammar(): Promise<FortuneGrammar> {
  const tokenizer = KilnTokenizer.load(FORTUNE_DIR);
  const eos = tokenizer.eosTokenId;
  if (eos === undefined) throw new Error(`${FORTUNE_DIR}: no eos_token`);
  return { tokenizer, compiler: await GrammarCompiler.create(tokenizer), eos };
}
