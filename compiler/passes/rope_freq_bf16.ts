/**
 * Pass: round every rotary inverse frequency to bfloat16.
 *
 * Hugging Face models instantiated in bf16 and then upcast with `.float()` keep their rotary
 * `inv_freq` buffer rounded to bf16, so float32 references made that way rotate by slightly
 * different angles than the exact float32 frequencies. This pass reproduces that computation
 * when a reference (or a user) asks for it; by default kiln uses the exact frequencies.
 */
import type { Graph, Node } from "../ir.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function roundToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  u32[0] = (((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16) >>> 0;
  return f32[0];
}

export function ropeFreqBf16(graph: Graph): Graph {
  const nodes = graph.nodes.map((n): Node => (n.kind === "rope" ? { ...n, invFreq: n.invFreq.map(roundToBf16) } : n));
  return { ...graph, nodes };
}
