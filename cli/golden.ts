/**
 * `kiln golden <fixture-dir>`: parity against the fixture's HF reference. One JSON line per
 * prompt, then a summary line; exits non-zero when a check fails.
 */
import { Command, InvalidArgumentError } from "commander";
import { runGolden } from "./golden_check.ts";
import { BACKENDS, type BackendName } from "../runtime/backends/step_executor.ts";
import { cudaDtypeFlag, floatFlag, kvCacheDtypeFlag, registerCudaFromFlags, type CudaDtypeChoice, type CudaKvDtypeChoice } from "./options.ts";

interface GoldenFlags {
  backend: BackendName;
  tol: number;
  ropeFreqBf16?: boolean;
  enforceEager?: boolean;
  dtype: CudaDtypeChoice;
  kvCacheDtype: CudaKvDtypeChoice;
}

export function goldenCommand(): Command {
  return new Command("golden")
    .description("compare a fixture folder's model against its reference.safetensors")
    .argument("<fixture-dir>", "a folder with config.json, model.safetensors and reference.safetensors, or an x.onnx file with x.reference.safetensors beside it")
    .option("--backend <name>", `where the model runs: ${BACKENDS.join(" or ")}`, (v): BackendName => {
      const b = BACKENDS.find((name) => name === v);
      if (b === undefined) throw new InvalidArgumentError(`backend '${v}' is not available; use ${BACKENDS.join(" or ")}`);
      return b;
    }, "cpu")
    .option("--tol <x>", "relative error allowed for logits", floatFlag("--tol", 0), 1e-4)
    .option("--rope-freq-bf16", "round rotary frequencies to bf16, as HF models upcast from bf16 do")
    .option("--enforce-eager", "cuda: run every step eagerly instead of replaying CUDA graphs (full graphs for decode steps, pieces for prefill and mixed steps)")
    .option("--dtype <dtype>", "cuda: weight precision, float32, bfloat16, float16 or auto (the checkpoint's)", cudaDtypeFlag("--dtype"), "f32")
    .option("--kv-cache-dtype <dtype>", "cuda: KV cache precision, auto (as the weights), float32, bfloat16, float16 or fp8 (e4m3)", kvCacheDtypeFlag("--kv-cache-dtype"), "auto")
    .action(async (dir: string, flags: GoldenFlags) => {
      // the CUDA backend is loaded only when asked for, and its device opened before the model
      const cuda = await registerCudaFromFlags(flags, "f32", dir);
      try {
        cuda?.backend();
        const { results, summary } = await runGolden(dir, {
          tolerance: flags.tol,
          ropeFreqBf16: flags.ropeFreqBf16 === true,
          backend: flags.backend,
        });
        for (const r of results) process.stdout.write(JSON.stringify(r) + "\n");
        process.stdout.write(JSON.stringify({ summary }) + "\n");
        if (!summary.ok) process.exitCode = 1;
      } finally {
        cuda?.dispose();
      }
    });
}
