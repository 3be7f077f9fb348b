/**
 * The IR as JSON (an engine artifact's graph.json), and back. Reading validates every node
 * against its kind's fields as the op catalogue (ops.ts) lists them, then the graph invariants,
 * so a corrupt or hand-edited file is refused with the node and field at fault rather than
 * failing somewhere in a kernel.
 *
 *   { "format": "kiln-graph", "version": 1, "nodes": [...], "outputs": {...}, "kvLayers": [...], "stateLayers": [...] }
 *
 * (`stateLayers` may be absent in files written before mamba-like layers existed: none.)
 */
import { KilnError } from "../runtime/engine/errors.ts";
import { checkGraph } from "./invariants.ts";
import {
  assertNever,
  BINARY_OPS,
  INPUT_NAMES,
  MOE_ACTIVATIONS,
  MOE_ROUTINGS,
  UNARY_OPS,
  type Graph,
  type KvLayerSpec,
  type Node,
  type StateLayerSpec,
  type StateTensorSpec,
} from "./ir.ts";
import { fieldsOf, isNodeKind, type FieldType } from "./ops.ts";

export const GRAPH_FORMAT = "kiln-graph";
export const GRAPH_VERSION = 1;

export function graphToJson(graph: Graph): string {
  return JSON.stringify({ format: GRAPH_FORMAT, version: GRAPH_VERSION, ...graph });
}

/** Whether v is a valid JSON value of a field of type f (the types the op catalogue uses). */
function fieldOk(f: FieldType, v: unknown): boolean {
  const isInt = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0;
  switch (f) {
    case "id":
    case "int":
      return isInt(v);
    case "ids":
      return Array.isArray(v) && v.every(isInt);
    case "id?":
    case "int?":
      return v === undefined || isInt(v);
    case "num":
      return typeof v === "number" && Number.isFinite(v);
    case "num?":
      return v === undefined || (typeof v === "number" && Number.isFinite(v));
    case "str":
      return typeof v === "string";
    case "bool":
      return typeof v === "boolean";
    case "nums":
      return Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));
    case "storage":
      return v === "f32" || v === "bf16";
    case "input":
      return (INPUT_NAMES as readonly unknown[]).includes(v);
    case "unary":
      return (UNARY_OPS as readonly unknown[]).includes(v);
    case "binary":
      return (BINARY_OPS as readonly unknown[]).includes(v);
    case "moe_routing":
      return (MOE_ROUTINGS as readonly unknown[]).includes(v);
    case "moe_activation":
      return (MOE_ACTIVATIONS as readonly unknown[]).includes(v);
    default:
      return assertNever(f, "field type");
  }
}

/** Checks one parsed node: common fields, then exactly its kind's fields. */
function isNode(v: Record<string, unknown>, fail: (msg: string) => never): v is Node & Record<string, unknown> {
  const kind = v["kind"];
  if (!isNodeKind(kind)) return fail(`unknown kind ${JSON.stringify(kind)}`);
  const shape = v["shape"];
  if (!Array.isArray(shape) || !shape.every((d) => d === "T" || d === "S" || (Number.isInteger(d) && d > 0))) fail("bad shape");
  if (v["dtype"] !== "f32" && v["dtype"] !== "i32") fail("bad dtype");
  if (typeof v["scope"] !== "string") fail("bad scope");
  const fields = fieldsOf(kind);
  for (const [name, f] of Object.entries(fields)) if (!fieldOk(f, v[name])) fail(`bad field '${name}' (${f})`);
  const allowed = new Set(["id", "kind", "shape", "dtype", "scope", ...Object.keys(fields)]);
  for (const key of Object.keys(v)) if (!allowed.has(key)) fail(`unexpected field '${key}'`);
  return true;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses graph.json; `where` names the file in errors. */
export function graphFromJson(text: string, where: string): Graph {
  const fail = (msg: string): never => {
    throw new KilnError("CONFIG_INVALID", `${where}: ${msg}`);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new KilnError("CONFIG_INVALID", `${where}: not valid JSON`, { cause: e });
  }
  if (!isRecord(raw) || raw["format"] !== GRAPH_FORMAT) return fail(`not a ${GRAPH_FORMAT} file`);
  if (raw["version"] !== GRAPH_VERSION) fail(`graph version ${String(raw["version"])}; this kiln reads version ${GRAPH_VERSION}`);
  const nodesRaw = raw["nodes"];
  if (!Array.isArray(nodesRaw)) return fail("no node list");
  const nodes: Node[] = [];
  nodesRaw.forEach((n: unknown, i) => {
    if (!isRecord(n) || n["id"] !== i) fail(`node ${i} is malformed`);
    if (isRecord(n) && isNode(n, (msg) => fail(`node ${i}: ${msg}`))) nodes.push(n);
  });
  const outputs = raw["outputs"];
  const logits = isRecord(outputs) ? outputs["logits"] : undefined;
  if (typeof logits !== "number") return fail("no logits output");
  const kvRaw = raw["kvLayers"];
  if (!Array.isArray(kvRaw)) return fail("no KV layer list");
  const kvLayers: KvLayerSpec[] = kvRaw.map((l: unknown, i) => {
    const ok =
      isRecord(l) &&
      typeof l["cacheKey"] === "string" &&
      fieldOk("int", l["numKvHeads"]) &&
      fieldOk("int", l["headDim"]) &&
      fieldOk("int?", l["slidingWindow"]);
    if (!ok) return fail(`KV layer ${i} is malformed`);
    return { cacheKey: String(l["cacheKey"]), numKvHeads: Number(l["numKvHeads"]), headDim: Number(l["headDim"]), slidingWindow: typeof l["slidingWindow"] === "number" ? l["slidingWindow"] : undefined };
  });
  const stateRaw = raw["stateLayers"] ?? [];
  if (!Array.isArray(stateRaw)) return fail("the state layer list is malformed");
  const stateLayers: StateLayerSpec[] = stateRaw.map((l: unknown, i) => {
    const tensorsRaw = isRecord(l) ? l["tensors"] : undefined;
    if (!isRecord(l) || typeof l["stateKey"] !== "string" || !Array.isArray(tensorsRaw)) return fail(`state layer ${i} is malformed`);
    const tensors: StateTensorSpec[] = tensorsRaw.map((t: unknown, j) => {
      const shape = isRecord(t) ? t["shape"] : undefined;
      const dtype = isRecord(t) ? t["dtype"] : undefined;
      const okShape = Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d > 0);
      if (!isRecord(t) || typeof t["name"] !== "string" || !okShape || (dtype !== "f32" && dtype !== "bf16")) {
        return fail(`state layer ${i}, tensor ${j} is malformed`);
      }
      return { name: t["name"], shape: shape.map(Number), dtype };
    });
    return { stateKey: l["stateKey"], tensors };
  });
  const graph: Graph = { nodes, outputs: { logits }, kvLayers, stateLayers };
  const errors = checkGraph(graph);
  if (errors.length > 0) fail(`the graph is inconsistent: ${errors.slice(0, 3).join("; ")}`);
  return graph;
}
