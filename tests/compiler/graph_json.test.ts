/** graph.json: the IR round-trips exactly, and a damaged file is refused naming the node at fault. */
import { describe, expect, it } from "vitest";
import { graphFromJson, graphToJson } from "../../compiler/graph_json.ts";
import { optimizeGraph } from "../../compiler/pipeline.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { loadModel } from "../../runtime/io/model_loader.ts";
import { fixture } from "../fixture_copy.ts";

describe("graph JSON", () => {
  it.each(["llama", "qwen3", "mistral-swa", "gpt2", "lfm2", "jamba", "bamba", "minimax"])("round-trips the %s graph", async (name) => {
    const graph = optimizeGraph((await loadModel(fixture(name))).graph);
    const back = graphFromJson(graphToJson(graph), "graph.json");
    expect(graphToJson(back)).toBe(graphToJson(graph));
    expect(back.nodes.find((n) => n.kind === "rope")).toEqual(graph.nodes.find((n) => n.kind === "rope"));
  });

  it("refuses unknown kinds, bad fields, extra fields, dangling ids and other versions", async () => {
    const text = graphToJson((await loadModel(fixture("llama"))).graph);
    const edit = (f: (g: { version: number; nodes: Record<string, unknown>[] }) => void): string => {
      const g = JSON.parse(text) as { version: number; nodes: Record<string, unknown>[] };
      f(g);
      return JSON.stringify(g);
    };
    const cases: [string, RegExp][] = [
      [edit((g) => (g.nodes[3]!["kind"] = "conv2d")), /node 3: unknown kind "conv2d"/],
      [edit((g) => (g.nodes.find((n) => n["kind"] === "rms_norm")!["eps"] = "1e-5")), /bad field 'eps'/],
      [edit((g) => (g.nodes.find((n) => n["kind"] === "slice")!["stride"] = 2)), /unexpected field 'stride'/],
      [edit((g) => (g.nodes.find((n) => n["kind"] === "linear")!["bias"] = -1)), /bad field 'bias' \(id\?\)/],
      [edit((g) => delete g.nodes.find((n) => n["kind"] === "attention")!["numKvHeads"]), /bad field 'numKvHeads' \(int\)/],
      [edit((g) => (g.nodes.find((n) => n["kind"] === "linear")!["x"] = 9999)), /inconsistent: node \d+ \(linear.*reads value 9999/],
      [edit((g) => (g.version = 7)), /graph version 7; this kiln reads version 1/],
      ["[1, 2", /not valid JSON/],
    ];
    for (const [bad, message] of cases) {
      try {
        graphFromJson(bad, "graph.json");
        throw new Error(`accepted: ${String(message)}`);
      } catch (e) {
        expect(isKilnError(e, "CONFIG_INVALID"), String(e)).toBe(true);
        expect(String(e)).toMatch(message);
      }
    }
  });
});
