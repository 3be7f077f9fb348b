// Learned position tables on the CUDA backend (CPU emulator): token ids are bounded by the
// vocabulary alone, positions by the position table, each checked on the host before a kernel
// reads a row.
import { expect, it } from "vitest";
import { CudaExecutor } from "../../runtime/backends/cuda/executor.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { packStep } from "../../runtime/backends/kv_cache.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { copyFixture, editConfig, editWeights } from "../fixture_copy.ts";
import { emulatedSuite } from "./emulated_suite.ts";

emulatedSuite("learned positions on the emulated CUDA backend", (backend) => {
  it("a GPT-2 with 64 positions and 512 tokens takes token ids past 64 and refuses position 64", async () => {
    const dir = copyFixture("gpt2");
    editConfig(dir, (cfg) => {
      cfg["n_positions"] = 64;
    });
    editWeights(dir, (ts) =>
      ts.map((t) => (t.name === "transformer.wpe.weight" ? { ...t, shape: [64, t.shape[1]!], data: new Uint8Array(t.data.buffer, t.data.byteOffset, 64 * t.shape[1]! * 4) } : t)),
    );
    const { graph, weights } = await loadModel(dir);
    const ex = CudaExecutor.fromGraph(graph, weights, backend(), { numBlocks: 8, blockSize: 16 });
    try {
      const table = Array.from({ length: 8 }, (_, i) => i);
      const tokens = Array.from({ length: 63 }, (_, i) => 100 + ((i * 7) % 400)); // every id past the position table's 64 rows
      expect(ex.run(packStep([{ tokens, numCached: 0, blockTable: table }], 16)).length).toBe(512);
      expect(ex.run(packStep([{ tokens: [500], numCached: 63, blockTable: table }], 16)).length).toBe(512); // position 63: the last row
      let err: unknown;
      try {
        ex.run(packStep([{ tokens: [500], numCached: 64, blockTable: table }], 16)); // position 64
      } catch (e) {
        err = e;
      }
      expect(isKilnError(err) && err.code).toBe("INVALID_ARGUMENT");
      expect(String(err)).toMatch(/position 64 is outside the learned position table \(64\)/);
    } finally {
      ex.dispose();
    }
  });
});
