/**
 * `kiln new-model <hf-folder> [-o file.mts] [--arch Name]`: writes a DSL model file for a checkpoint
 * (models/authoring/model_writer.ts) from the closest architecture kiln knows, registered by a
 * plugin `register()` under the checkpoint's architecture name (or --arch). It says what it
 * matched and every TODO it left; load the file with `kiln --plugin <file>`.
 */
import { Command } from "commander";

interface NewModelFlags {
  output?: string;
  arch?: string;
}

export function newModelCommand(): Command {
  return new Command("new-model")
    .description("write a DSL model file (a plugin) for a Hugging Face model folder, from the closest architecture kiln knows")
    .argument("<hf-folder>", "a model folder with config.json and safetensors")
    .option("-o, --output <file>", "where to write the model file (default: <architecture>.mts; .mts loads as an ES module wherever it lies)")
    .option("--arch <name>", "the architecture name to register (default: config.json's architectures[0])")
    .action(async (dir: string, flags: NewModelFlags) => {
      // ts-morph is loaded only for this command, not at every start
      const { writeNewModel } = await import("../models/authoring/model_writer.ts");
      const { architectures, loadConfigJson } = await import("../models/hf_config.ts");
      const arch = flags.arch ?? architectures(loadConfigJson(dir))[0] ?? "Generated";
      const out = flags.output ?? `${arch}.mts`;
      const r = await writeNewModel(dir, out, { arch: flags.arch });
      process.stdout.write(`wrote ${r.file}: ${r.arch}, closest to ${r.closest.family.arch} (${r.closest.family.file}, tensor-name similarity ${r.closest.similarity.toFixed(2)})\n`);
      for (const t of r.todos) process.stdout.write(`TODO: ${t}\n`);
      process.stdout.write(`check it: kiln check-model ${out} --checkpoint ${dir}\nrun it:   kiln --plugin ${out} golden ${dir}   (or run/serve)\n`);
    });
}
