/**
 * GPTQ 4- and 8-bit (AutoGPTQ / exllama layout), P = 32 / bits values per int32 word:
 *
 *   qweight [in/P, out] int32     packed along the input: input row i is word i/P, bits b·(i%P)
 *   qzeros  [groups, out/P] int32 packed along the output: column c is word c/P, bits b·(c%P)
 *   scales  [groups, out] f16
 *   g_idx   [in] int32            the group of each input row (i/G unless desc_act reordered them)
 *
 *   W[o, i] = (q[i, o] − (z[g, o] + offset)) · s[g, o],  g = desc_act ? g_idx[i] : i/G
 *
 * offset is 1 for legacy ("gptq", AutoGPTQ v1) checkpoints, which store zero − 1 (a symmetric
 * 4-bit layer's zero 8 is stored as 7: qzeros words 0x77777777), and 0 for gptq_v2.
 */
import { KilnError } from "../../../runtime/engine/errors.ts";
import type { GptqQuantization } from "./config.ts";
import type { QuantizedFormat } from "./linear_method.ts";
import type { LinearGeometry, PackedAxis } from "./packed_parameter.ts";

export function gptqFormat(q: GptqQuantization, g: LinearGeometry): QuantizedFormat {
  const bits = q.bits;
  const P = 32 / bits;
  const mask = (1 << bits) - 1;
  const G = q.groupSize === "whole" ? g.fullIn : q.groupSize;
  const keepWhole = q.descAct || q.groupSize === "whole";
  if (!keepWhole && (g.inPerRank % G !== 0 || g.inStart % G !== 0)) {
    throw new KilnError("QUANT_UNSUPPORTED", `layer '${g.prefix}': GPTQ group size ${G} does not divide its ${g.inPerRank} input features`);
  }
  if (g.inPerRank % P !== 0) {
    throw new KilnError("QUANT_UNSUPPORTED", `layer '${g.prefix}': GPTQ packs ${P} inputs per word, which does not divide its ${g.inPerRank} input features`);
  }
  const odd = g.shards.find((sh) => sh.rows % P !== 0);
  if (odd) throw new KilnError("QUANT_UNSUPPORTED", `layer '${g.prefix}': GPTQ packs ${P} zero points per word, which does not divide shard '${odd.id}' of ${odd.rows} outputs`);
  const groups = Math.ceil(g.fullIn / G);
  // with desc_act the groups follow g_idx, not the rank's input slice, and one whole-input group
  // spans every rank: then every rank keeps all groups
  const groupAxis: PackedAxis = keepWhole ? { along: "none", extent: groups } : { along: "in", per: G };
  const inGroups = keepWhole ? groups : g.inPerRank / G;
  return {
    name: `gptq ${bits}-bit`,
    tensors: {
      qweight: { axes: [{ along: "in", per: P }, { along: "out", per: 1 }], dtypes: ["I32"] },
      qzeros: { axes: [groupAxis, { along: "out", per: P }], dtypes: ["I32"] },
      scales: { axes: [groupAxis, { along: "out", per: 1 }], dtypes: ["F16", "BF16", "F32"] },
      g_idx: { axes: [{ along: "in", per: 1 }], dtypes: ["I32"], perShard: true, optional: !q.descAct },
    },
    dequantize: (t) => {
      const O = g.outPerRank;
      const I = g.inPerRank;
      const qw = t("qweight").int32();
      const qz = t("qzeros").int32();
      const s = t("scales").float32();
      const gIdx = q.descAct ? t("g_idx") : undefined;
      const gi = gIdx?.int32();
      const zWords = O / P;
      // the zero points unpacked once per group, offset included: [groups, out]
      const zeros = new Float32Array(s.length);
      for (let grp = 0; grp < zeros.length / O; grp++) {
        for (let o = 0; o < O; o++) zeros[grp * O + o] = ((qz[grp * zWords + Math.floor(o / P)]! >>> (bits * (o % P))) & mask) + q.zeroOffset;
      }
      const out = new Float32Array(O * I);
      g.shards.forEach((sh, k) => {
        for (let i = 0; i < I; i++) {
          // g_idx is stored per shard: [shards, inPerRank]
          const grp = gi ? gi[k * I + i]! : keepWhole ? Math.floor((g.inStart + i) / G) : Math.floor(i / G);
          if (!(grp >= 0 && grp < inGroups)) {
            throw new KilnError("QUANT_INVALID", `tensor '${g.prefix}.g_idx' (shard ${sh.id}) puts input ${i} in group ${grp}, outside the ${inGroups} groups of the scales`);
          }
          const wordRow = Math.floor(i / P) * O;
          const shift = bits * (i % P);
          const gBase = grp * O;
          for (let o = sh.dstStart; o < sh.dstStart + sh.rows; o++) {
            out[o * I + i] = (((qw[wordRow + o]! >>> shift) & mask) - zeros[gBase + o]!) * s[gBase + o]!;
          }
        }
      });
      return out;
    },
  };
}
