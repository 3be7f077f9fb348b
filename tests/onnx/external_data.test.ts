/**
 * Initializers stored outside the .onnx file (ONNX external data, as exporters write models over
 * 2 GiB): read from the file their `location` names beside the model; a missing file or a range
 * past its end is ONNX_INVALID.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import onnxProto from "onnx-proto";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { ModelRunner } from "../../runtime/backends/model_runner.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { llamaReference, maxAbsDiff, mutatedModel, TINY_LLAMA } from "./onnx_fixtures.ts";

/** tiny_llama with every initializer of 1 KiB or more moved into `weights.bin` beside it. */
function externalCopy(): string {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const path = mutatedModel(TINY_LLAMA, (e) => {
    for (const t of e.initializers) {
      const raw = t.rawData;
      if (!raw || raw.length < 1024) continue;
      chunks.push(Uint8Array.from(raw));
      t.externalData = [
        { key: "location", value: "weights.bin" },
        { key: "offset", value: String(offset) },
        { key: "length", value: String(raw.length) },
      ];
      t.dataLocation = onnxProto.onnx.TensorProto.DataLocation.EXTERNAL;
      t.rawData = new Uint8Array();
      offset += raw.length;
    }
  }, "model.onnx");
  writeFileSync(join(dirname(path), "weights.bin"), Buffer.concat(chunks));
  return path;
}

describe("external data", () => {
  it("loads initializers from the data file beside the model and computes the reference logits", async () => {
    const path = externalCopy();
    const ref = llamaReference();
    const { graph, weights, model } = await loadModel(path);
    const runner = ModelRunner.forGraph(graph, weights, model.vocabSize, { numBlocks: 1, blockSize: 16 });
    const ours = runner.execute([{ tokens: ref.ids, numCached: 0, blockTable: [0], allLogits: true }]);
    runner.dispose();
    expect(maxAbsDiff(ours, ref.logits)).toBeLessThan(1e-4);
  });

  it("a missing or short data file is ONNX_INVALID", async () => {
    const path = externalCopy();
    const data = join(dirname(path), "weights.bin");
    writeFileSync(data, new Uint8Array(100));
    await expect(loadModel(path)).rejects.toSatisfy((e) => isKilnError(e, "ONNX_INVALID") && /outside .*weights\.bin/.test(e.message));
    rmSync(data);
    expect(existsSync(data)).toBe(false);
    await expect(loadModel(path)).rejects.toSatisfy((e) => isKilnError(e, "ONNX_INVALID") && /weights\.bin does not exist/.test(e.message));
  });
});
