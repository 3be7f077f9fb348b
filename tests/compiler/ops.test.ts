/**
 * The op catalogue (compiler/ops.ts): its entries describe the nodes the models really build,
 * and what derives from it (inputs, input remapping, classes, state) says what the entries say.
 */
import { describe, expect, it } from "vitest";
import { mapInputs } from "../../compiler/graph_rewrite.ts";
import type { Node, NodeKind } from "../../compiler/ir.ts";
import {
  CUSTOM_OP_KINDS,
  fieldsOf,
  fusionClass,
  inputFields,
  isCustomOp,
  isFusible,
  isOpaqueOp,
  NODE_KINDS,
  nodeInputs,
  OPAQUE_OP_KINDS,
  OPS,
  stateKeyOf,
  stateOf,
  type FieldsOf,
} from "../../compiler/ops.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";

const COMMON = ["id", "kind", "shape", "dtype", "scope"];

/** One node of every kind, from fixtures that together use them all. */
async function oneOfEach(): Promise<Map<NodeKind, Node>> {
  const seen = new Map<NodeKind, Node>();
  for (const name of ["gpt2", "gemma2", "lfm2", "jamba", "bamba", "minimax"]) {
    for (const n of (await loadModel(fixture(name))).graph.nodes) if (!seen.has(n.kind)) seen.set(n.kind, n);
  }
  return seen;
}

describe("the op catalogue", () => {
  it("lists exactly the fields of every node kind the models build", async () => {
    const nodes = await oneOfEach();
    expect([...nodes.keys()].sort()).toEqual([...NODE_KINDS].sort());
    for (const [kind, n] of nodes) {
      const own = Object.keys(n).filter((k) => !COMMON.includes(k));
      expect(Object.keys(fieldsOf(kind)).sort(), kind).toEqual(expect.arrayContaining(own.sort()));
      // optional fields may be absent from a node; no other field may be
      for (const [field, type] of Object.entries(fieldsOf(kind))) {
        if (!own.includes(field)) expect(type.endsWith("?"), `${kind}.${field}`).toBe(true);
      }
    }
  });

  it("derives a node's inputs and their remapping from its id fields, in field order", async () => {
    for (const n of (await oneOfEach()).values()) {
      const record: Readonly<Record<string, unknown>> = n;
      const expected = Object.entries(fieldsOf(n.kind))
        .filter(([, t]) => t === "id" || t === "id?")
        .map(([f]) => record[f])
        .filter((v) => v !== undefined);
      expect(nodeInputs(n), n.kind).toEqual(expected);
      const moved = mapInputs(n, (id) => id + 1000);
      expect(nodeInputs(moved)).toEqual(expected.map((id) => Number(id) + 1000));
      for (const [k, v] of Object.entries(moved)) {
        if (!inputFields(fieldsOf(n.kind)).some((f) => f.name === k)) expect(v, `${n.kind}.${k}`).toEqual(record[k]);
      }
      if (nodeInputs(n).length === 0) expect(moved).toBe(n);
    }
  });

  it("keeps an absent optional input absent, and reads list inputs", () => {
    const linear: Node = { id: 3, kind: "linear", shape: ["T", 4], dtype: "f32", scope: "", x: 1, weight: 2, bias: undefined };
    expect(nodeInputs(linear)).toEqual([1, 2]);
    expect(mapInputs(linear, (id) => id + 1)).toEqual({ ...linear, x: 2, weight: 3, bias: undefined });
    expect(inputFields({ xs: "ids", n: "int", b: "id?", y: "id" })).toEqual([
      { name: "xs", type: "ids" },
      { name: "b", type: "id?" },
      { name: "y", type: "id" },
    ]);
  });

  it("derives the custom and opaque kinds, fusion classes and state from the entries' classes", async () => {
    expect(CUSTOM_OP_KINDS).toEqual(["attention", "short_conv", "linear_attention", "selective_scan", "ssd_scan"]);
    expect(OPAQUE_OP_KINDS).toEqual(["moe"]);
    const nodes = await oneOfEach();
    const classes = Object.fromEntries([...nodes].map(([k, n]) => [k, fusionClass(n)]));
    expect(classes).toEqual({
      input: "source",
      param: "source",
      embedding: "fusible",
      linear: "gemm",
      rms_norm: "fusible",
      layer_norm: "fusible",
      binary: "fusible",
      unary: "fusible",
      scale: "fusible",
      slice: "fusible",
      gather_rows: "fusible",
      rope: "fusible",
      attention: "custom",
      moe: "opaque",
      short_conv: "custom",
      linear_attention: "custom",
      selective_scan: "custom",
      ssd_scan: "custom",
    });
    for (const n of nodes.values()) {
      expect(isCustomOp(n)).toBe(OPS[n.kind].class === "custom");
      expect(isOpaqueOp(n)).toBe(OPS[n.kind].class === "opaque");
      expect(isFusible(n)).toBe(classes[n.kind] === "fusible");
    }
    const att = nodes.get("attention")!;
    expect(stateOf(att)).toEqual({ kind: "kv_cache", key: att.kind === "attention" ? att.cacheKey : "" });
    expect(stateKeyOf(att)).toBeUndefined();
    for (const kind of ["short_conv", "linear_attention", "selective_scan", "ssd_scan"] as const) {
      const n = nodes.get(kind)!;
      expect(stateOf(n)?.kind, kind).toBe("state_slots");
      const record: Readonly<Record<string, unknown>> = n;
      expect(stateKeyOf(n), kind).toBe(record["stateKey"]);
    }
    expect(stateOf(nodes.get("moe")!)).toBeUndefined();
  });

  it("ties each entry's fields to the node type (checked by tsc)", () => {
    // @ts-expect-error an entry must list every field of its node
    const missing: FieldsOf<"short_conv"> = { x: "id", weight: "id", bias: "id?", stateKey: "str" };
    // @ts-expect-error an optional input is "id?", not "id"
    const required: FieldsOf<"short_conv"> = { x: "id", weight: "id", bias: "id", stateKey: "str", kernelSize: "int" };
    const extra: FieldsOf<"scale"> = {
      x: "id",
      factor: "num",
      // @ts-expect-error a field the node does not have
      offset: "num",
    };
    expect([missing, required, extra].length).toBe(3);
  });
});
