/**
 * `kiln run`: generate from a prompt on the CPU, streaming text to the terminal as it comes.
 * The embedded fortune model is the default; `--model` takes a model folder or an engine artifact.
 */
import { Command } from "commander";
import { IncrementalDetokenizer } from "../runtime/detokenizer.ts";
import { blocksForGeneration, generate } from "../runtime/generate.ts";
import { loadGenerationConfig } from "../runtime/generation_config.ts";
import { DEFAULT_MODEL_DIR, loadModel } from "../runtime/model_loader.ts";
import { ModelRunner } from "../runtime/model_runner.ts";
import { KilnTokenizer } from "../runtime/tokenizer.ts";
import { floatFlag, intFlag } from "./options.ts";

interface RunFlags {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  ignoreEos?: boolean;
  skipSpecialTokens: boolean;
  stats?: boolean;
}

export function runCommand(): Command {
  return new Command("run")
    .description("generate text from a prompt (default model: the embedded fortune model)")
    .requiredOption("-p, --prompt <text>", "the prompt")
    .option("-m, --model <dir>", "a Hugging Face model folder or an engine artifact (kiln compile)", DEFAULT_MODEL_DIR)
    .option("--max-tokens <n>", "tokens to generate", intFlag("--max-tokens", 1), 64)
    .option("--temperature <t>", "0 is greedy (default: generation_config.json, else 1)", floatFlag("--temperature", 0))
    .option("--top-p <p>", "nucleus sampling mass", floatFlag("--top-p", 0, 1))
    .option("--top-k <k>", "keep the k most likely tokens", intFlag("--top-k", 1))
    .option("--seed <n>", "sampling seed (default: random)", intFlag("--seed", 0))
    .option("--ignore-eos", "keep generating past the end-of-sequence token")
    .option("--no-skip-special-tokens", "print special tokens such as <|eos|>")
    .option("--stats", "print token counts and speed to stderr")
    .action(async (flags: RunFlags) => {
      const loaded = await loadModel(flags.model);
      const tokenizer = KilnTokenizer.load(flags.model);
      const defaults = loadGenerationConfig(flags.model);
      const prompt = tokenizer.encode(flags.prompt, { addSpecialTokens: true });
      const maxModelLen = loaded.artifact?.maxModelLen ?? loaded.model.maxPositions;
      const blockSize = 16;
      const runner = new ModelRunner(loaded.graph, loaded.weights, loaded.model.vocabSize, {
        numBlocks: blocksForGeneration(prompt.length, flags.maxTokens, maxModelLen, blockSize),
        blockSize,
      });
      const detok = new IncrementalDetokenizer(tokenizer, { skipSpecialTokens: flags.skipSpecialTokens });
      const start = performance.now();
      let firstAt = 0;
      const result = generate(
        runner,
        prompt,
        {
          maxTokens: flags.maxTokens,
          sampling: {
            temperature: flags.temperature ?? defaults.temperature ?? 1,
            topP: flags.topP ?? defaults.topP ?? 1,
            topK: flags.topK ?? defaults.topK,
            minP: 0,
          },
          seed: flags.seed ?? Math.floor(Math.random() * 2 ** 31),
          stopTokenIds: flags.ignoreEos ? [] : defaults.eosTokenIds,
          maxModelLen,
        },
        (id) => {
          if (firstAt === 0) firstAt = performance.now();
          process.stdout.write(detok.push(id));
        },
      );
      process.stdout.write(detok.flush() + "\n");
      if (flags.stats) {
        const end = performance.now();
        const decodeS = (end - firstAt) / 1000;
        process.stderr.write(
          `prompt ${result.promptTokens} tokens, generated ${result.tokens.length} (${result.finishReason}); ` +
            `first token ${(firstAt - start).toFixed(1)} ms, ` +
            `decode ${((result.tokens.length - 1) / Math.max(decodeS, 1e-9)).toFixed(0)} tokens/s\n`,
        );
      }
    });
}
