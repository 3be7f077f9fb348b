/**
 * kiln's command line. Each command lives in its own file; this one wires them to commander,
 * loads plugins first (--plugin, KILN_PLUGINS) and turns typed errors into one clear line.
 */
import { Command } from "commander";
import { isKilnError } from "../runtime/engine/errors.ts";
import { loadPlugins, pluginsFromEnv } from "../models/registry.ts";
import { checkModelCommand } from "./check_model.ts";
import { compileCommand } from "./compile.ts";
import { newModelCommand } from "./new_model.ts";
import { goldenCommand } from "./golden.ts";
import { runCommand } from "./run.ts";
import { serveCommand } from "./serve.ts";
import { verifyCommand } from "./verify.ts";

const program = new Command()
  .name("kiln")
  .description("An LLM inference compiler and serving engine")
  .option(
    "--plugin <module>",
    "a plugin module whose register() runs at start-up; repeatable (also KILN_PLUGINS, comma-separated)",
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .hook("preAction", async (cmd) => {
    const flags = cmd.opts<{ plugin?: string[] }>();
    await loadPlugins([...pluginsFromEnv(), ...(flags.plugin ?? [])]);
  });

program.addCommand(runCommand());
program.addCommand(goldenCommand());
program.addCommand(compileCommand());
program.addCommand(serveCommand());
program.addCommand(verifyCommand());
program.addCommand(checkModelCommand());
program.addCommand(newModelCommand());

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (isKilnError(e)) {
    process.stderr.write(`kiln: error [${e.code}]: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
