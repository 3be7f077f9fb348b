/**
 * AWQ 4-bit, GEMM packing (AutoAWQ's WQLinear_GEMM), transposed against PyTorch's Linear:
 *
 *   qweight [in, out/8] int32   eight 4-bit values along the output per word
 *   qzeros  [in/G, out/8] int32 the groups' zero points, packed the same way
 *   scales  [in/G, out] f16
 *
 * Within a word, nibble n (bits 4n..4n+3) holds output column 8·word + ORDER[n] with
 * ORDER = [0, 2, 4, 6, 1, 3, 5, 7] (the order AutoAWQ packs in); so column c sits in nibble
 * AWQ_NIBBLE_OF_COLUMN[c % 8] = [0, 4, 1, 5, 2, 6, 3, 7][c % 8].
 *
 *   W[o, i] = (q[i, o] − z[i/G, o]) · s[i/G, o]
 */
import { KilnError } from "../../../runtime/engine/errors.ts";
import type { AwqQuantization } from "./config.ts";
import type { QuantizedFormat } from "./linear_method.ts";
import type { LinearGeometry } from "./packed_parameter.ts";

/** output column (mod 8) → the nibble of its word that holds it */
export const AWQ_NIBBLE_OF_COLUMN = [0, 4, 1, 5, 2, 6, 3, 7] as const;
/** nibble → output column (mod 8): the order AutoAWQ packs in */
export const AWQ_PACK_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

/** The 4-bit value of column `c` from row `words` ([cols/8] int32 of one input row). */
export function awqNibble(words: Int32Array, rowBase: number, c: number): number {
  return (words[rowBase + (c >> 3)]! >>> (4 * AWQ_NIBBLE_OF_COLUMN[c & 7]!)) & 0xf;
}

export function awqFormat(q: AwqQuantization, g: LinearGeometry): QuantizedFormat {
  const G = q.groupSize;
  if (g.inPerRank % G !== 0 || g.inStart % G !== 0) {
    throw new KilnError("QUANT_UNSUPPORTED", `layer '${g.prefix}': AWQ group size ${G} does not divide its ${g.inPerRank} input features`);
  }
  const odd = g.shards.find((sh) => sh.rows % 8 !== 0);
  if (odd) throw new KilnError("QUANT_UNSUPPORTED", `layer '${g.prefix}': AWQ packs 8 outputs per word, which does not divide shard '${odd.id}' of ${odd.rows} outputs`);
  return {
    name: "awq",
    tensors: {
      qweight: { axes: [{ along: "in", per: 1 }, { along: "out", per: 8 }], dtypes: ["I32"] },
      qzeros: { axes: [{ along: "in", per: G }, { along: "out", per: 8 }], dtypes: ["I32"] },
      scales: { axes: [{ along: "in", per: G }, { along: "out", per: 1 }], dtypes: ["F16", "BF16", "F32"] },
    },
    dequantize: (t) => {
      const O = g.outPerRank;
      const I = g.inPerRank;
      const qw = t("qweight").int32();
      const qz = t("qzeros").int32();
      const s = t("scales").float32();
      const words = O / 8;
      // the zero points unpacked once per group: [in/G, out]
      const zeros = new Float32Array(s.length);
      for (let grp = 0; grp < zeros.length / O; grp++) for (let o = 0; o < O; o++) zeros[grp * O + o] = awqNibble(qz, grp * words, o);
      const out = new Float32Array(O * I);
      for (let i = 0; i < I; i++) {
        const gBase = Math.floor(i / G) * O;
        for (let word = 0; word < words; word++) {
          const packed = qw[i * words + word]!;
          for (let n = 0; n < 8; n++) {
            const o = word * 8 + AWQ_PACK_ORDER[n]!;
            out[o * I + i] = (((packed >>> (4 * n)) & 0xf) - zeros[gBase + o]!) * s[gBase + o]!;
          }
        }
      }
      return out;
    },
  };
}
