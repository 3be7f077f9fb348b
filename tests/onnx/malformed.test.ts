/** Files the importer cannot map fail with a typed error that names what is wrong, never a wrong result. */
import { describe, expect, it } from "vitest";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { MLP_BLOCK, mutatedModel, TINY_LLAMA, truncatedModel } from "./onnx_fixtures.ts";

async function loadError(path: string): Promise<{ code: ErrorCode; message: string }> {
  try {
    await loadModel(path);
  } catch (e) {
    if (isKilnError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error(`${path} loaded`);
}

describe("malformed and unsupported ONNX files", () => {
  it("a truncated protobuf is ONNX_INVALID", async () => {
    for (const bytes of [1000, 400_000]) {
      const e = await loadError(truncatedModel(TINY_LLAMA, bytes));
      expect(e.code).toBe("ONNX_INVALID");
    }
  });

  it("a node reading a missing initializer is ONNX_INVALID naming the node", async () => {
    const path = mutatedModel(TINY_LLAMA, (e) => {
      e.initializers = e.initializers.filter((t) => t.name !== "val_89");
    });
    const e = await loadError(path);
    expect(e.code).toBe("ONNX_INVALID");
    expect(e.message).toMatch(/node 8 'node_linear' \(MatMul\).*'val_89'/);
  });

  it("an op the importer does not know is ONNX_UNSUPPORTED naming the node, its op type and index", async () => {
    const path = mutatedModel(TINY_LLAMA, (e) => {
      e.nodes[55]!.opType = "HardSigmoid";
    });
    const e = await loadError(path);
    expect(e.code).toBe("ONNX_UNSUPPORTED");
    expect(e.message).toContain("node 55 'node_Sigmoid_192' (HardSigmoid): op type HardSigmoid is not supported");
  });

  it("an attention mask that is not causal is refused, not mapped to causal attention", async () => {
    const path = mutatedModel(TINY_LLAMA, (e) => {
      const mask = e.initializers.find((t) => t.name === "where")!;
      mask.rawData = new Uint8Array(mask.rawData?.length ?? 0);
    });
    const e = await loadError(path);
    expect(e.code).toBe("ONNX_UNSUPPORTED");
    expect(e.message).toMatch(/MatMul\).*attention mask is not causal/);
  });

  it("a rotary table that is not cos/sin of position · frequency is refused", async () => {
    const path = mutatedModel(TINY_LLAMA, (e) => {
      const cos = e.initializers.find((t) => t.name === "unsqueeze_16")!;
      const bytes = Uint8Array.from(cos.rawData ?? []);
      new DataView(bytes.buffer).setFloat32(4 * (5 * 16 + 3), 0.25, true);
      cos.rawData = bytes;
    });
    const e = await loadError(path);
    expect(e.code).toBe("ONNX_UNSUPPORTED");
    expect(e.message).toContain("rotary tables");
  });

  it("an opset outside 13-21 and a float graph input are ONNX_UNSUPPORTED", async () => {
    const old = mutatedModel(MLP_BLOCK, (e) => {
      e.model.opsetImport[0]!.version = 9;
    });
    expect((await loadError(old)).code).toBe("ONNX_UNSUPPORTED");
    const e = await loadError(MLP_BLOCK);
    expect(e.code).toBe("ONNX_UNSUPPORTED");
    expect(e.message).toContain("graph input 'x' is a float tensor");
  });
});
