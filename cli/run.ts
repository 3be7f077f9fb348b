/**
 * `kiln run`: generate from a prompt on the engine `kiln serve` uses (the same sampler, stop
 * checks and prefix cache; CUDA with --backend cuda), streaming text to the terminal as it comes.
 * The embedded fortune model is the default; `--model` takes a model folder or an engine artifact.
 * The KV pool holds this one generation (prompt + --max-tokens), not the model's whole context
 * window: a long-context model costs nothing until the tokens are there.
 */
import { existsSync, statSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { createEngine } from "../runtime/engine/create_engine.ts";
import type { FinishReason } from "../runtime/engine/sequence.ts";
import type { SamplingParamsInput } from "../runtime/engine/sampling_params.ts";
import { isKilnError, KilnError } from "../runtime/engine/errors.ts";
import { loadGenerationConfig } from "../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import type { BackendName, KernelOrigin } from "../runtime/backends/step_executor.ts";
import { KilnTokenizer } from "../runtime/io/tokenizer.ts";
import { isOnnxModelPath, modelFolderOf } from "../models/onnx/onnx_path.ts";
import { backendFlag, cudaDtypeFlag, type CudaDtypeChoice, type CudaKvDtypeChoice, kvCacheDtypeFlag, floatFlag, intFlag, registerCudaFromFlags } from "./options.ts";

/** What one `kiln run` generates, besides the flags of the backend it runs on. */
export interface RunOptions {
  readonly model: string;
  readonly prompt: string;
  /** an engine artifact: hash every file, the weights too, before loading */
  readonly verify?: boolean | undefined;
  readonly maxTokens: number;
  /** undefined: generation_config.json's, else the engine's default */
  readonly temperature?: number | undefined;
  readonly topP?: number | undefined;
  readonly topK?: number | undefined;
  readonly minP?: number | undefined;
  readonly repetitionPenalty?: number | undefined;
  readonly presencePenalty?: number | undefined;
  readonly frequencyPenalty?: number | undefined;
  /** undefined: a random seed */
  readonly seed?: number | undefined;
  readonly stop?: readonly string[] | undefined;
  readonly stopTokenIds?: readonly number[] | undefined;
  readonly minTokens?: number | undefined;
  readonly ignoreEos?: boolean | undefined;
  readonly skipSpecialTokens?: boolean | undefined;
  readonly backend?: BackendName | undefined;
  /** tokens per KV block (default 16) */
  readonly blockSize?: number | undefined;
  /** context window (default: the model's) */
  readonly maxModelLen?: number | undefined;
  /** the quantization method the checkpoint's quantization_config must name (fp8, compressed-tensors, awq, gptq) */
  readonly quantization?: string | undefined;
}

export interface RunResult {
  readonly promptTokens: number;
  readonly tokenIds: readonly number[];
  readonly finishReason: FinishReason;
  /** performance.now() when the request went in and when its first token came out */
  readonly startedAt: number;
  readonly firstTokenAt: number;
  /** where the compiled program's kernels came from */
  readonly kernelOrigin: KernelOrigin | undefined;
}

/**
 * KV blocks one generation can fill: the prompt plus maxTokens, capped by the context window
 * (Infinity when none is given: the engine then stops at the model's). Sizing from the window alone
 * would allocate for max_position_embeddings tokens (millions, for long-context configs) to
 * generate a handful.
 */
export function blocksForGeneration(promptTokens: number, maxTokens: number, maxModelLen: number, blockSize: number): number {
  return Math.max(1, Math.ceil(Math.min(promptTokens + maxTokens, maxModelLen) / blockSize));
}

/** Generates from opts.prompt on an engine built for it, handing each piece of text to onText as it comes. */
export async function runPrompt(opts: RunOptions, onText: (text: string) => void = () => {}): Promise<RunResult> {
  const dir = opts.model;
  // the tokenizer sizes the pool, so it loads first: a missing folder must still say so
  // an .onnx model is a file; its tokenizer and generation config are in the folder beside it
  const onnx = isOnnxModelPath(dir);
  if (!existsSync(dir) || statSync(dir).isDirectory() === onnx) throw new KilnError("MODEL_NOT_FOUND", `model ${onnx ? "file" : "folder"} ${dir} does not exist`);
  const tokenizer = KilnTokenizer.load(modelFolderOf(dir));
  const prompt = tokenizer.encode(opts.prompt, { addSpecialTokens: true });
  const blockSize = opts.blockSize ?? 16;
  const { engine, runner, model } = await createEngine({
    modelDir: dir,
    tokenizer,
    load: { ...(opts.verify === true ? { verify: true } : {}), ...(opts.quantization === undefined ? {} : { quantization: opts.quantization }) },
    blockSize,
    numBlocks: blocksForGeneration(prompt.length, opts.maxTokens, opts.maxModelLen ?? Infinity, blockSize),
    maxNumSeqs: 1,
    // an explicit window the pool does not hold is cut to this generation's length (the engine stops there)
    ...(opts.maxModelLen === undefined ? {} : { maxModelLen: Math.min(opts.maxModelLen, prompt.length + opts.maxTokens) }),
    ...(opts.backend === undefined ? {} : { backend: opts.backend }),
  });
  try {
    // the window given was cut to this generation; it must still be one the model has
    if (opts.maxModelLen !== undefined && opts.maxModelLen > model.model.maxPositions) {
      throw new KilnError("INVALID_ARGUMENT", `--max-model-len ${opts.maxModelLen} exceeds the model's ${model.model.maxPositions} positions`);
    }
    const stream = engine.generate({ prompt, params: samplingParams(opts, modelFolderOf(dir)) });
    const startedAt = performance.now();
    let firstTokenAt: number | undefined;
    const tokenIds: number[] = [];
    let finishReason: FinishReason | undefined;
    for await (const d of stream) {
      if (d.tokenIds.length > 0) firstTokenAt ??= performance.now();
      tokenIds.push(...d.tokenIds);
      if (d.text !== "") onText(d.text);
      finishReason ??= d.finishReason;
    }
    if (finishReason === undefined || firstTokenAt === undefined) throw new Error("the request ended without a finished completion");
    return { promptTokens: prompt.length, tokenIds, finishReason, startedAt, firstTokenAt, kernelOrigin: runner.kernelOrigin };
  } catch (e) {
    // NaN or infinite logits come from the model's weights (or the backend running them): name the model
    if (isKilnError(e, "SAMPLING_FAILED")) throw new KilnError("SAMPLING_FAILED", `${dir}: ${e.message}`, { cause: e });
    throw e;
  } finally {
    engine.close();
    runner.dispose(); // device memory on GPU backends
  }
}

/** The flags, with generation_config.json filling in what they leave out (as `kiln serve` does). */
function samplingParams(opts: RunOptions, dir: string): SamplingParamsInput {
  const defaults = loadGenerationConfig(dir);
  return {
    maxTokens: opts.maxTokens,
    temperature: opts.temperature ?? defaults.temperature,
    topP: opts.topP ?? defaults.topP,
    topK: opts.topK ?? defaults.topK,
    minP: opts.minP,
    repetitionPenalty: opts.repetitionPenalty ?? defaults.repetitionPenalty,
    presencePenalty: opts.presencePenalty,
    frequencyPenalty: opts.frequencyPenalty,
    seed: opts.seed,
    stop: opts.stop,
    stopTokenIds: opts.stopTokenIds,
    minTokens: opts.minTokens,
    ignoreEos: opts.ignoreEos,
    skipSpecialTokens: opts.skipSpecialTokens,
  };
}

interface RunFlags extends RunOptions {
  readonly stats?: boolean;
  readonly enforceEager?: boolean;
  readonly dtype: CudaDtypeChoice;
  readonly kvCacheDtype: CudaKvDtypeChoice;
  readonly backend: BackendName;
}

/** A number x with lo < x ≤ hi. */
function floatAbove(name: string, lo: number, hi = Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n <= lo || n > hi) {
      throw new InvalidArgumentError(`${name} must be a number above ${lo}${hi === Infinity ? "" : ` and at most ${hi}`}`);
    }
    return n;
  };
}

/** "2,13": token ids */
function tokenIdsFlag(v: string): number[] {
  return v.split(",").map((x) => intFlag("--stop-token-ids", 0)(x.trim()));
}

export function runCommand(): Command {
  return new Command("run")
    .description("generate text from a prompt (default model: the embedded fortune model)")
    .requiredOption("-p, --prompt <text>", "the prompt")
    .option("-m, --model <dir>", "a Hugging Face model folder or an engine artifact (kiln compile)", DEFAULT_MODEL_DIR)
    .option("--max-tokens <n>", "tokens to generate", intFlag("--max-tokens", 1), 64)
    .option("--temperature <t>", "0 is greedy (default: generation_config.json, else 1)", floatFlag("--temperature", 0))
    .option("--top-p <p>", "nucleus sampling mass, in (0, 1] (default: generation_config.json, else 1)", floatAbove("--top-p", 0, 1))
    .option("--top-k <k>", "keep the k most likely tokens (default: generation_config.json, else all)", intFlag("--top-k", 1))
    .option("--min-p <p>", "drop tokens below p × the most likely token's probability", floatFlag("--min-p", 0, 1))
    .option("--repetition-penalty <x>", "> 1 discourages tokens of the prompt and output so far (default: generation_config.json, else 1)", floatAbove("--repetition-penalty", 0))
    .option("--presence-penalty <x>", "in [-2, 2]: subtracted once from each token already generated", floatFlag("--presence-penalty", -2, 2))
    .option("--frequency-penalty <x>", "in [-2, 2]: subtracted per time a token was generated", floatFlag("--frequency-penalty", -2, 2))
    .option("--seed <n>", "sampling seed (default: random)", intFlag("--seed", 0))
    .option("--stop <text>", "stop when the text contains this (not printed); repeatable", (v: string, acc: string[] | undefined) => [...(acc ?? []), v])
    .option("--stop-token-ids <ids>", "comma-separated token ids that also end generation", tokenIdsFlag)
    .option("--min-tokens <n>", "generate at least this many tokens before EOS or a stop may end it", intFlag("--min-tokens", 0))
    .option("--ignore-eos", "keep generating past the end-of-sequence token")
    .option("--no-skip-special-tokens", "print special tokens such as <|eos|>")
    .option("--max-model-len <n>", "context window: prompt + output (default: the model's)", intFlag("--max-model-len", 2))
    .option("--block-size <n>", "tokens per KV block", intFlag("--block-size", 1), 16)
    .option("--backend <name>", "where the model runs: cpu or cuda", backendFlag, "cpu")
    .option("--verify", "an engine artifact: hash every file against its manifest, the weights too, before loading (kiln verify)")
    .option("--enforce-eager", "cuda: run every step eagerly instead of replaying CUDA graphs")
    .option("--dtype <dtype>", "cuda: weight precision, auto (the checkpoint's), float32, bfloat16 or float16", cudaDtypeFlag("--dtype"), "auto")
    .option("--kv-cache-dtype <dtype>", "cuda: KV cache precision, auto (as the weights), float32, bfloat16, float16 or fp8 (e4m3)", kvCacheDtypeFlag("--kv-cache-dtype"), "auto")
    .option("--stats", "print token counts and speed to stderr")
    .option("--quantization <method>", "the checkpoint's quantization method (fp8, compressed-tensors, awq, gptq); checked against its quantization_config")
    .action(async (flags: RunFlags) => {
      if (flags.minTokens !== undefined && flags.minTokens > flags.maxTokens) {
        throw new KilnError("INVALID_ARGUMENT", `--min-tokens (${flags.minTokens}) must be at most --max-tokens (${flags.maxTokens})`);
      }
      // the CUDA backend is loaded only when asked for, and its device opened before the model
      const cuda = await registerCudaFromFlags(flags, "auto", flags.model);
      try {
        cuda?.backend();
        const result = await runPrompt(flags, (text) => process.stdout.write(text));
        process.stdout.write("\n");
        // a stored binary that did not fit this machine was rebuilt: say so, it costs every start
        if (result.kernelOrigin?.note !== undefined) process.stderr.write(`kiln: ${result.kernelOrigin.note}\n`);
        if (flags.stats) {
          const end = performance.now();
          const generated = result.tokenIds.length;
          const decodeS = (end - result.firstTokenAt) / 1000;
          process.stderr.write(
            `prompt ${result.promptTokens} tokens, generated ${generated} (${result.finishReason}); ` +
              `first token ${(result.firstTokenAt - result.startedAt).toFixed(1)} ms, ` +
              `decode ${((generated - 1) / Math.max(decodeS, 1e-9)).toFixed(0)} tokens/s` +
              (cuda ? ` on ${cuda.backend().describe()}` : "") +
              "\n",
          );
        }
      } finally {
        cuda?.dispose();
      }
    });
}
