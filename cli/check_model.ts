/**
 * `kiln check-model <file.ts> [--checkpoint <hf-folder>]`: checks a model file the way a reviewer
 * would (models/authoring/model_check.ts): prefixes, forward written in tensor ops, registration,
 * tensor-parallel pairs, and with a checkpoint the tensors no module claims and the parameters no
 * tensor fills. One `file:line: [rule] message` per problem; exit status 1 when there is any.
 */
import { Command } from "commander";

interface CheckModelFlags {
  checkpoint?: string;
}

export function checkModelCommand(): Command {
  return new Command("check-model")
    .description("statically check a DSL model file (prefixes, forward, registration, tensor parallelism), optionally against a checkpoint")
    .argument("<file>", "a TypeScript model file written with kiln's DSL")
    .option("--checkpoint <hf-folder>", "also load this model folder through the file's model class and list tensors no module claims and parameters no tensor fills")
    .action(async (file: string, flags: CheckModelFlags) => {
      if (flags.checkpoint !== undefined) {
        // the model file is TypeScript, imported to load the checkpoint: the CLI may be running compiled JavaScript
        const { register } = await import("tsx/esm/api");
        register();
      }
      // ts-morph (a whole TypeScript compiler) is loaded only for this command, not at every start
      const { checkModelFile } = await import("../models/authoring/model_check.ts");
      const { formatDiagnostic } = await import("../models/authoring/model_source.ts");
      const diagnostics = await checkModelFile(file, { checkpoint: flags.checkpoint });
      for (const d of diagnostics) process.stdout.write(`${formatDiagnostic(d)}\n`);
      const against = flags.checkpoint === undefined ? "" : ` against ${flags.checkpoint}`;
      process.stdout.write(diagnostics.length === 0 ? `${file}: ok${against}\n` : `${file}: ${diagnostics.length} problem(s)${against}\n`);
      if (diagnostics.length > 0) process.exitCode = 1;
    });
}
