/**
 * An engine artifact compiled from a quantized checkpoint stores the dequantized weights as the
 * program reads them (f32 on the CPU) and runs them with nothing re-read from the packed tensors:
 * its logits are the quantized folder's, bit for bit.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { compileArtifact } from "../../runtime/io/artifact.ts";
import { maxAbsDiff, referencePromptLogits } from "./logits.ts";
import { writeQuantizedFixture } from "./quantize_fixture.ts";

const fx = writeQuantizedFixture("llama", { kind: "gptq", bits: 4, groupSize: 32, sym: true, descAct: true });
const out = join(mkdtempSync(join(tmpdir(), "kiln-quant-artifact-")), "artifact");
afterAll(() => {
  fx.cleanup();
  rmSync(join(out, ".."), { recursive: true, force: true });
});

it("a GPTQ checkpoint's CPU artifact gives the folder's logits", async () => {
  await compileArtifact({ modelDir: fx.quantized, outDir: out, target: { kind: "cpu" }, maxModelLen: 256 });
  const fromFolder = await referencePromptLogits(fx.quantized, 2);
  const fromArtifact = await referencePromptLogits(out, 2, "cpu", {}, fx.quantized);
  expect(maxAbsDiff(fromArtifact, fromFolder)).toBe(0);
});
