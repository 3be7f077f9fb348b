/**
 * `kiln verify <artifact>`: hashes every file of an engine artifact, its weights too, against the
 * manifest. Loading checks only sizes and the small files' digests (hashing gigabytes of weights
 * at every start would cost more than the load); this is the full check, on request. Exit status
 * 0 when every file matches, 1 when any does not.
 */
import { Command } from "commander";
import { verifyArtifact } from "../runtime/io/artifact_loader.ts";

export function verifyCommand(): Command {
  return new Command("verify")
    .description("hash every file of an engine artifact against its manifest")
    .argument("<artifact>", "an engine artifact folder (kiln compile)")
    .action((dir: string) => {
      const t0 = performance.now();
      const files = verifyArtifact(dir);
      for (const f of files) process.stdout.write(`${f.ok ? "ok  " : "BAD "} ${f.file} (${f.bytes} bytes)${f.problem === undefined ? "" : `: ${f.problem}`}\n`);
      const bad = files.filter((f) => !f.ok).length;
      const seconds = ((performance.now() - t0) / 1000).toFixed(2);
      process.stdout.write(bad === 0 ? `${dir}: all ${files.length} files match the manifest (${seconds} s)\n` : `${dir}: ${bad} of ${files.length} files do not match the manifest\n`);
      if (bad > 0) process.exitCode = 1;
    });
}
