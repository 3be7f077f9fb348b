/**
 * `kiln compile <model-dir> --target cuda:sm_90|cpu --dtype bf16|f16|f32 --max-model-len N
 *  --max-num-seqs N -o <dir>`: writes an engine artifact (runtime/io/artifact.ts) that `kiln run` and
 * `kiln serve` load without tracing. Long steps draw progress bars on a terminal; the summary
 * (kernels, kernels per layer before/after fusion, times, sizes) goes to stdout.
 */
import cliProgress from "cli-progress";
import { Command } from "commander";
import { compileArtifact, parseDtype, parseKvDtype, parseTarget, type ArtifactSummary, type ProgressReporter } from "../runtime/io/artifact.ts";
import { intFlag } from "./options.ts";

interface CompileFlags {
  target: string;
  dtype?: string;
  kvCacheDtype?: string;
  maxModelLen?: number;
  maxNumSeqs: number;
  output: string;
  force?: boolean;
  ropeFreqBf16?: boolean;
}

/** One bar per long step, on stderr; cli-progress draws nothing when stderr is not a terminal. */
function progressBars(): ProgressReporter {
  let bar: cliProgress.SingleBar | undefined;
  return {
    start(label, total) {
      bar = new cliProgress.SingleBar(
        { format: `${label.padEnd(28)} [{bar}] {value}/{total}`, stream: process.stderr, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
    },
    advance(by) {
      bar?.increment(by);
    },
    finish() {
      bar?.stop();
      bar = undefined;
    },
  };
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}

export function formatSummary(s: ArtifactSummary): string {
  const t = s.seconds;
  return [
    `artifact ${s.outDir} (${s.target}, ${s.dtype})`,
    `  kernels: ${s.kernels} generated, ${s.steps} steps per forward pass`,
    `  per decoder layer: ${s.kernelsPerLayer.before[0] ?? 0} kernels before fusion, ${s.kernelsPerLayer.after[0] ?? 0} after`,
    `  binary: ${s.compiler === undefined ? "none (no compiler found; compiled at load)" : s.compiler}`,
    `  time: load+trace ${t.load.toFixed(2)} s, passes+lowering+render ${t.compile.toFixed(2)} s, kernel compile ${t.binary.toFixed(2)} s, ` +
      `weights ${t.weights.toFixed(2)} s, hashing ${t.hash.toFixed(2)} s, total ${t.total.toFixed(2)} s`,
    `  size: ${mib(s.bytes.total)} (weights ${mib(s.bytes.weights)}, kernel source ${s.bytes.kernelSource} B, binary ${s.bytes.binary} B)`,
  ].join("\n");
}

export function compileCommand(): Command {
  return new Command("compile")
    .description("compile a model folder into an engine artifact")
    .argument("<model-dir>", "a Hugging Face model folder")
    .requiredOption("-o, --output <dir>", "the artifact folder to write")
    .option("--target <target>", "cpu or cuda:sm_XX", "cpu")
    .option("--dtype <dtype>", "storage: bf16, f16 or f32 (default: the checkpoint's)")
    .option("--kv-cache-dtype <dtype>", "cuda: the KV cache's storage, bf16, f16, f32 or fp8 (e4m3) (default: as --dtype)")
    .option("--max-model-len <n>", "context length (default: the model's)", intFlag("--max-model-len", 1))
    .option("--max-num-seqs <n>", "sequences per step; sets the CUDA-graph capture sizes", intFlag("--max-num-seqs", 1), 256)
    .option("--force", "replace an existing artifact folder")
    .option("--rope-freq-bf16", "round rotary frequencies to bf16, as HF models upcast from bf16 do")
    .action(async (dir: string, flags: CompileFlags) => {
      const summary = await compileArtifact({
        modelDir: dir,
        outDir: flags.output,
        target: parseTarget(flags.target),
        ...(flags.dtype !== undefined ? { dtype: parseDtype(flags.dtype) } : {}),
        ...(flags.kvCacheDtype !== undefined ? { kvCacheDtype: parseKvDtype(flags.kvCacheDtype) } : {}),
        ...(flags.maxModelLen !== undefined ? { maxModelLen: flags.maxModelLen } : {}),
        maxNumSeqs: flags.maxNumSeqs,
        force: flags.force === true,
        ropeFreqBf16: flags.ropeFreqBf16 === true,
        progress: progressBars(),
      });
      process.stdout.write(formatSummary(summary) + "\n");
    });
}
