/**
 * Test support: quantizes a float fixture (tests/fixtures/llama) into each format kiln loads,
 * packed as the public formats define them (written here from the definitions, independently of
 * models/dsl/quantization/), and writes beside it a reference: the same model with every
 * quantized weight replaced by its dequantized values, computed here from the integers and scales
 * before packing, as a plain f32 checkpoint that the verified f32 path runs.
 *
 *   writeQuantizedFixture("llama", { kind: "awq", groupSize: 32 }) → { quantized, reference } folders
 *
 * From a shell (the folders are left in the temporary directory, their paths printed):
 *   npx tsx tests/quantization/quantize_fixture.ts llama '{"kind":"gptq","bits":4,"groupSize":32,"sym":true,"descAct":true}'
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { f32ToF16 } from "../../runtime/io/artifact_weights.ts";
import { f16BitsToF32, SafetensorsFile, type DType } from "../../runtime/io/safetensors.ts";
import { writeSafetensors, type TensorToWrite } from "../../runtime/io/safetensors_writer.ts";
import { E4M3_TO_F32, f32ToE4m3 } from "../../models/dsl/quantization/fp8.ts";
import { fixture } from "../fixture_copy.ts";

export type FixtureFormat =
  | { readonly kind: "fp8"; readonly config: "fp8" | "compressed-tensors"; readonly strategy: "tensor" | "channel" | "block"; readonly block?: readonly [number, number]; readonly staticInput?: boolean }
  | { readonly kind: "awq"; readonly groupSize: number }
  | { readonly kind: "gptq"; readonly bits: 4 | 8; readonly groupSize: number; readonly sym: boolean; readonly descAct: boolean; readonly v2?: boolean };

export interface QuantizedTensors {
  /** suffix under the layer (qweight, scales, ...) → tensor */
  readonly tensors: readonly { readonly suffix: string; readonly dtype: DType; readonly shape: readonly number[]; readonly data: ArrayBufferView }[];
  /** W [out, in] as the format's integers and scales define it */
  readonly dequantized: Float32Array;
}

const f16 = (x: number): number => f16BitsToF32(Uint16Array.of(f32ToF16(x)))[0]!;
const f16Bits = (xs: Float32Array): Uint16Array => Uint16Array.from(xs, (x) => f32ToF16(x));

/** AutoAWQ's GEMM order: nibble n of a word holds output column 8·word + ORDER[n]. */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];

/** Packs int values [rows, cols] (0 ≤ v < 16) into AWQ words [rows, cols/8]. */
export function packAwq(values: readonly number[][], cols: number): Int32Array {
  const rows = values.length;
  const out = new Int32Array((rows * cols) / 8);
  for (let r = 0; r < rows; r++) {
    for (let w = 0; w < cols / 8; w++) {
      let word = 0;
      for (let n = 0; n < 8; n++) word |= (values[r]![w * 8 + AWQ_ORDER[n]!]! & 0xf) << (4 * n);
      out[r * (cols / 8) + w] = word;
    }
  }
  return out;
}

/** Packs values [rows, cols] of `bits` bits along the rows: word (r/P, c) holds rows r..r+P-1 at bits·k. */
export function packGptqRows(values: readonly number[][], cols: number, bits: number): Int32Array {
  const P = 32 / bits;
  const out = new Int32Array((values.length / P) * cols);
  for (let w = 0; w < values.length / P; w++) {
    for (let c = 0; c < cols; c++) {
      let word = 0;
      for (let k = 0; k < P; k++) word |= values[w * P + k]![c]! << (bits * k);
      out[w * cols + c] = word;
    }
  }
  return out;
}

/** Packs values [rows, cols] along the columns: word (r, c/P) holds columns c..c+P-1 at bits·k. */
export function packGptqCols(values: readonly number[][], cols: number, bits: number): Int32Array {
  const P = 32 / bits;
  const out = new Int32Array((values.length * cols) / P);
  for (let r = 0; r < values.length; r++) {
    for (let w = 0; w < cols / P; w++) {
      let word = 0;
      for (let k = 0; k < P; k++) word |= (values[r]![w * P + k]! & ((1 << bits) - 1)) << (bits * k);
      out[r * (cols / P) + w] = word;
    }
  }
  return out;
}

/** A fixed permutation of [0, n) (desc_act's activation order, made up but deterministic). */
function permutation(n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  let s = 12345;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/** Integer quantization of W [O, I] with groups along the input: q[i][o], zero[g][o], scale[g][o] (f16-exact). */
function quantizeGroups(W: Float32Array, O: number, I: number, groupOf: (i: number) => number, groups: number, maxq: number, sym: boolean, minZero: number) {
  const scale = Array.from({ length: groups }, () => new Float32Array(O));
  const zero = Array.from({ length: groups }, () => new Array<number>(O).fill(0));
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < O; o++) {
      let lo = 0;
      let hi = 0;
      for (let i = 0; i < I; i++) {
        if (groupOf(i) !== g) continue;
        lo = Math.min(lo, W[o * I + i]!);
        hi = Math.max(hi, W[o * I + i]!);
      }
      if (sym) {
        const m = Math.max(Math.abs(lo), hi);
        const s = f16((2 * m) / maxq || 1e-3);
        scale[g]![o] = s;
        zero[g]![o] = (maxq + 1) / 2;
      } else {
        const s = f16((hi - lo) / maxq || 1e-3);
        scale[g]![o] = s;
        zero[g]![o] = Math.min(maxq, Math.max(minZero, Math.round(-lo / s)));
      }
    }
  }
  const q = Array.from({ length: I }, () => new Array<number>(O).fill(0));
  const dequantized = new Float32Array(O * I);
  for (let i = 0; i < I; i++) {
    const g = groupOf(i);
    for (let o = 0; o < O; o++) {
      const s = scale[g]![o]!;
      const z = zero[g]![o]!;
      const v = Math.min(maxq, Math.max(0, Math.round(W[o * I + i]! / s) + z));
      q[i]![o] = v;
      dequantized[o * I + i] = (v - z) * s;
    }
  }
  return { q, zero, scale, dequantized };
}

export function quantizeAwq(W: Float32Array, O: number, I: number, G: number): QuantizedTensors {
  const { q, zero, scale, dequantized } = quantizeGroups(W, O, I, (i) => Math.floor(i / G), I / G, 15, false, 0);
  const scales = new Float32Array((I / G) * O);
  scale.forEach((s, g) => scales.set(s, g * O));
  return {
    tensors: [
      { suffix: "qweight", dtype: "I32", shape: [I, O / 8], data: packAwq(q, O) },
      { suffix: "qzeros", dtype: "I32", shape: [I / G, O / 8], data: packAwq(zero, O) },
      { suffix: "scales", dtype: "F16", shape: [I / G, O], data: f16Bits(scales) },
    ],
    dequantized,
  };
}

export function quantizeGptq(W: Float32Array, O: number, I: number, f: Extract<FixtureFormat, { kind: "gptq" }>): QuantizedTensors {
  const maxq = (1 << f.bits) - 1;
  const groups = Math.ceil(I / f.groupSize);
  const order = f.descAct ? permutation(I) : Array.from({ length: I }, (_, i) => i);
  const gIdx = new Int32Array(I);
  order.forEach((i, j) => (gIdx[i] = Math.floor(j / f.groupSize)));
  const offset = f.v2 === true ? 0 : 1;
  // a legacy checkpoint cannot store zero 0 (it would be -1): keep asymmetric zeros ≥ 1 there
  const { q, zero, scale, dequantized } = quantizeGroups(W, O, I, (i) => gIdx[i]!, groups, maxq, f.sym, offset);
  const scales = new Float32Array(groups * O);
  scale.forEach((s, g) => scales.set(s, g * O));
  const stored = zero.map((row) => row.map((z) => z - offset));
  return {
    tensors: [
      { suffix: "qweight", dtype: "I32", shape: [I / (32 / f.bits), O], data: packGptqRows(q, O, f.bits) },
      { suffix: "qzeros", dtype: "I32", shape: [groups, O / (32 / f.bits)], data: packGptqCols(stored, O, f.bits) },
      { suffix: "scales", dtype: "F16", shape: [groups, O], data: f16Bits(scales) },
      { suffix: "g_idx", dtype: "I32", shape: [I], data: gIdx },
    ],
    dequantized,
  };
}

export function quantizeFp8(W: Float32Array, O: number, I: number, f: Extract<FixtureFormat, { kind: "fp8" }>): QuantizedTensors {
  const [bn, bk] = f.strategy === "block" ? (f.block ?? [128, 128]) : f.strategy === "channel" ? [1, I] : [O, I];
  const rowsB = Math.ceil(O / bn);
  const colsB = Math.ceil(I / bk);
  const scales = new Float32Array(rowsB * colsB);
  for (let rb = 0; rb < rowsB; rb++) {
    for (let cb = 0; cb < colsB; cb++) {
      let m = 0;
      for (let o = rb * bn; o < Math.min(O, (rb + 1) * bn); o++) for (let i = cb * bk; i < Math.min(I, (cb + 1) * bk); i++) m = Math.max(m, Math.abs(W[o * I + i]!));
      scales[rb * colsB + cb] = Math.fround(m / 448 || 1);
    }
  }
  const bits = new Uint8Array(O * I);
  const dequantized = new Float32Array(O * I);
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      const s = scales[Math.floor(o / bn) * colsB + Math.floor(i / bk)]!;
      const b = f32ToE4m3(W[o * I + i]! / s);
      bits[o * I + i] = b;
      dequantized[o * I + i] = E4M3_TO_F32[b]! * s;
    }
  }
  const scaleShape = f.strategy === "block" ? [rowsB, colsB] : f.strategy === "channel" ? [O, 1] : f.config === "fp8" ? [] : [1];
  const scaleName = f.strategy === "block" && f.config === "fp8" ? "weight_scale_inv" : "weight_scale";
  return {
    tensors: [
      { suffix: "weight", dtype: "F8_E4M3", shape: [O, I], data: bits },
      { suffix: scaleName, dtype: "F32", shape: scaleShape, data: scales },
      ...(f.staticInput === true ? [{ suffix: "input_scale", dtype: "F32" as const, shape: [], data: Float32Array.of(0.02) }] : []),
    ],
    dequantized,
  };
}

/** config.json's quantization_config for the format */
export function quantizationConfig(f: FixtureFormat, exclude: readonly string[]): Record<string, unknown> {
  switch (f.kind) {
    case "awq":
      return { quant_method: "awq", bits: 4, group_size: f.groupSize, zero_point: true, version: "gemm", modules_to_not_convert: exclude };
    case "gptq":
      return {
        quant_method: "gptq",
        bits: f.bits,
        group_size: f.groupSize,
        desc_act: f.descAct,
        sym: f.sym,
        checkpoint_format: f.v2 === true ? "gptq_v2" : "gptq",
        modules_to_not_convert: exclude,
      };
    case "fp8":
      if (f.config === "fp8") {
        return {
          quant_method: "fp8",
          activation_scheme: f.staticInput === true ? "static" : "dynamic",
          ...(f.strategy === "block" ? { weight_block_size: f.block ?? [128, 128] } : {}),
          ignored_layers: exclude,
        };
      }
      return {
        quant_method: "compressed-tensors",
        format: "float-quantized",
        config_groups: {
          group_0: {
            targets: ["Linear"],
            weights: { num_bits: 8, type: "float", symmetric: true, dynamic: false, strategy: f.strategy, ...(f.strategy === "block" ? { block_structure: f.block ?? [128, 128] } : {}) },
            input_activations: { num_bits: 8, type: "float", symmetric: true, dynamic: f.staticInput !== true, strategy: "tensor" },
          },
        },
        ignore: ["lm_head", ...exclude],
      };
  }
}

/** The decoder's linear layers' float weights in a Llama-shaped checkpoint, the experts' too (not the router, mlp.gate). */
const LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(experts\.\d+\.)?(gate|up|down)_proj)\.weight$/;

export interface QuantizedFixture {
  readonly quantized: string;
  readonly reference: string;
  cleanup(): void;
}

/**
 * Writes `<tmp>/quantized` (the fixture in format `f`, layers matching `exclude` left float) and
 * `<tmp>/reference` (the dequantized weights as a float checkpoint); both keep the tokenizer,
 * generation config and reference prompts.
 */
export function writeQuantizedFixture(name: string, f: FixtureFormat, exclude: readonly string[] = []): QuantizedFixture {
  const root = mkdtempSync(join(tmpdir(), `kiln-quant-${f.kind}-`));
  const quantized = join(root, "quantized");
  const reference = join(root, "reference");
  cpSync(fixture(name), quantized, { recursive: true });
  cpSync(fixture(name), reference, { recursive: true });
  const src = SafetensorsFile.open(join(fixture(name), "model.safetensors"));
  const q: TensorToWrite[] = [];
  const ref: TensorToWrite[] = [];
  try {
    for (const info of src.tensors.values()) {
      const t = { name: info.name, dtype: info.dtype, shape: info.shape, data: src.readBytes(info.name) };
      const layer = info.name.slice(0, -".weight".length);
      const excluded = exclude.some((e) => `.${layer}.`.includes(`.${e}.`));
      if (!LINEAR.test(info.name) || excluded) {
        q.push(t);
        ref.push(t);
        continue;
      }
      const [O, I] = info.shape as [number, number];
      const W = src.readF32(info.name);
      const packed = f.kind === "awq" ? quantizeAwq(W, O, I, f.groupSize) : f.kind === "gptq" ? quantizeGptq(W, O, I, f) : quantizeFp8(W, O, I, f);
      for (const p of packed.tensors) q.push({ name: `${layer}.${p.suffix}`, dtype: p.dtype, shape: p.shape, data: p.data });
      ref.push({ name: info.name, dtype: "F32", shape: info.shape, data: packed.dequantized });
    }
  } finally {
    src.close();
  }
  writeSafetensors(join(quantized, "model.safetensors"), q);
  writeSafetensors(join(reference, "model.safetensors"), ref);
  const cfgPath = join(quantized, "config.json");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
  cfg["quantization_config"] = quantizationConfig(f, exclude);
  writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
  return { quantized, reference, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

// run as a script: write one quantized fixture and its reference, and say where
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [name, spec] = process.argv.slice(2);
  if (name === undefined || spec === undefined) {
    process.stderr.write("usage: npx tsx tests/quantization/quantize_fixture.ts <fixture> '<format json>'\n");
    process.exit(2);
  }
  const fx = writeQuantizedFixture(name, JSON.parse(spec) as FixtureFormat);
  process.stdout.write(`quantized: ${fx.quantized}\nreference: ${fx.reference}\n`);
}
