import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { loadGenerationConfig } from "../../runtime/io/generation_config.ts";
import {
  architectures,
  ConfigReader,
  configDtype,
  loadConfigJson,
  parseRope,
  ropeAttentionScaling,
  ropeInvFreq,
  ropeInvFreqForLength,
  type JsonObject,
  type RopeConfig,
} from "../../models/hf_config.ts";

const FIXTURES = nodePath.resolve(import.meta.dirname, "../fixtures");
const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "kiln-config-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

let dirCount = 0;
/** A model folder holding the given files (objects are written as JSON). */
function modelDir(files: Readonly<Record<string, string | JsonObject>>): string {
  const dir = nodePath.join(tmpRoot, String(dirCount++));
  fs.mkdirSync(dir);
  for (const [name, body] of Object.entries(files)) {
    fs.writeFileSync(nodePath.join(dir, name), typeof body === "string" ? body : JSON.stringify(body));
  }
  return dir;
}

function expectKilnError(fn: () => unknown, code: ErrorCode, ...parts: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isKilnError(caught, code), `expected ${code}, got ${String(caught)}`).toBe(true);
  for (const p of parts) expect(String(caught)).toContain(p);
}

const reader = (raw: JsonObject): ConfigReader => new ConfigReader(raw, "/m/config.json");

describe("ConfigReader", () => {
  it("reads the fixtures' config.json", () => {
    const c = loadConfigJson(nodePath.join(FIXTURES, "llama"));
    expect(c.int("hidden_size")).toBe(64);
    expect(c.float("rms_norm_eps")).toBe(1e-5);
    expect(c.bool("tie_word_embeddings")).toBe(false);
    expect(c.string("model_type")).toBe("llama");
    expect(architectures(c)).toEqual(["LlamaForCausalLM"]);
    expect(configDtype(c)).toBe("float32");
    expect(configDtype(loadConfigJson(nodePath.join(FIXTURES, "llama-bf16")))).toBe("bfloat16");
    const q = loadConfigJson(nodePath.join(FIXTURES, "qwen2"));
    expect(q.has("sliding_window")).toBe(false); // null counts as absent
    expect(q.optInt("sliding_window")).toBeUndefined();
    expect(q.stringList("layer_types")).toEqual(["full_attention", "full_attention"]);
  });

  it("names the file and field when a required field is missing or mistyped", () => {
    const dir = modelDir({ "config.json": { num_attention_heads: 4, vocab_size: "512", flags: [1, "x"] } });
    const c = loadConfigJson(dir);
    const path = nodePath.join(dir, "config.json");
    expectKilnError(() => c.int("hidden_size"), "CONFIG_INVALID", path, '"hidden_size"', "missing");
    expectKilnError(() => c.optInt("vocab_size"), "CONFIG_INVALID", path, '"vocab_size"', "integer");
    expectKilnError(() => c.intList("flags"), "CONFIG_INVALID", '"flags"');
    expectKilnError(() => reader({ n: 1.5 }).int("n"), "CONFIG_INVALID", '"n"', "1.5");
    expect(reader({}).optFloat("x")).toBeUndefined();
  });

  it("names nested fields with their dotted path", () => {
    const c = reader({ rope_parameters: { rope_type: "linear" } });
    expectKilnError(() => c.object("rope_parameters").float("factor"), "CONFIG_INVALID", '"rope_parameters.factor"');
  });

  it("accepts transformers 5's {__float__} spellings of non-finite floats", () => {
    const c = reader({
      limit: [{ __float__: "-Infinity" }, { __float__: "Infinity" }, 0.5],
      nan: { __float__: "NaN" },
      bad: { __float__: "Huge" },
    });
    expect(c.floatList("limit")).toEqual([-Infinity, Infinity, 0.5]);
    expect(Number.isNaN(c.float("nan"))).toBe(true);
    expectKilnError(() => c.float("bad"), "CONFIG_INVALID", '"bad"');
    expectKilnError(() => c.int("nan"), "CONFIG_INVALID", '"nan"');
  });

  it("reports a missing config.json as MODEL_NOT_FOUND and bad JSON as CONFIG_INVALID", () => {
    const empty = modelDir({});
    expectKilnError(() => loadConfigJson(empty), "MODEL_NOT_FOUND", nodePath.join(empty, "config.json"));
    const bad = modelDir({ "config.json": "{ not json" });
    expectKilnError(() => loadConfigJson(bad), "CONFIG_INVALID", nodePath.join(bad, "config.json"));
  });

  it("reads dtype from dtype or the older torch_dtype", () => {
    expect(configDtype(reader({ torch_dtype: "float16" }))).toBe("float16");
    expect(configDtype(reader({ dtype: "bfloat16", torch_dtype: "float32" }))).toBe("bfloat16");
    expect(configDtype(reader({}))).toBeUndefined();
    expectKilnError(() => configDtype(reader({ dtype: "int4" })), "CONFIG_INVALID", '"dtype"', "int4");
  });
});

// Reference inverse frequencies: a numpy float32 transcription of transformers 5's
// modeling_rope_utils (_compute_default/linear/dynamic_ntk/llama3/yarn_parameters), run with
// numpy 2.4 (python scalars act as float32, as torch's do), values printed with repr().
const REF = {
  default_1e4_16: [1.0, 0.3162277638912201, 0.10000000149011612, 0.03162277862429619, 0.009999999776482582, 0.003162277862429619, 0.0010000000474974513, 0.0003162277862429619],
  linear_1e4_16_f4: [0.25, 0.07905694097280502, 0.02500000037252903, 0.007905694656074047, 0.0024999999441206455, 0.0007905694656074047, 0.0002500000118743628, 7.905694656074047e-5],
  // theta 500000, dim 64, factor 8, low 1, high 4, original 8192
  llama3_5e5_64: [1.0, 0.663601279258728, 0.44036662578582764, 0.2922278344631195, 0.193922758102417, 0.12868738174438477, 0.08539710193872452, 0.05666961893439293, 0.03760603070259094, 0.02495540864765644, 0.016560440883040428, 0.010989529080688953, 0.00729266507551074, 0.00483942124992609, 0.0032114461064338684, 0.0013718936825171113, 0.0005248460220173001, 0.0001785077911335975, 7.784655463183299e-5, 5.165906986803748e-5, 3.428102354519069e-5, 2.2748929040972143e-5, 1.5096217794052791e-5, 1.0017868589784484e-5, 6.647869668086059e-6, 4.411534519022098e-6, 2.927499735960737e-6, 1.9426925064180978e-6, 1.289173155782919e-6, 8.554969213037111e-7, 5.677088097399974e-7, 3.76732259610435e-7],
  // dynamic, theta 1e4, dim 16, factor 2, max positions 512, sequence of 1024 positions
  dynamic_1e4_16_f2_512_1024: [1.0, 0.2702961266040802, 0.07305999845266342, 0.019747832790017128, 0.005337762646377087, 0.0014427766436710954, 0.00038997692172415555, 0.00010540925723034889],
  // yarn, theta 1e6, dim 32, factor 4, original 4096, beta 32/1, truncate
  yarn_1e6_32_f4_4096: [1.0, 0.4216965138912201, 0.17782793939113617, 0.07498941570520401, 0.026879360899329185, 0.009334650821983814, 0.0030928771011531353, 0.0009485494811087847, 0.0002500000118743628, 0.00010542412201175466, 4.4456985051510856e-5, 1.8747356079984456e-5, 7.905693564680405e-6, 3.3338035336782923e-6, 1.405853367941745e-6, 5.928434347879374e-7],
} as const;

/** Equal within one float32 ulp: pow may round differently in the last bit between libms. */
function expectF32Close(actual: Float32Array, expected: readonly number[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => {
    const e = expected[i] ?? NaN;
    expect(Math.abs(a - e), `index ${i}: ${a} vs ${e}`).toBeLessThanOrEqual(Math.abs(e) * 2 ** -23);
  });
}

/** The same rope settings in the transformers 5 spelling and in the older one. */
function bothSpellings(theta: number, scaling: JsonObject | undefined, extra: JsonObject = {}): [RopeConfig, RopeConfig] {
  const params: JsonObject = { rope_theta: theta, rope_type: "default", ...scaling };
  const newer = parseRope(reader({ ...extra, rope_parameters: params }));
  const older = parseRope(reader({ ...extra, rope_theta: theta, rope_scaling: scaling ?? null }));
  return [newer, older];
}

describe("parseRope and ropeInvFreq", () => {
  it("reads the fixtures' rope_parameters", () => {
    const rope = parseRope(loadConfigJson(nodePath.join(FIXTURES, "qwen3")));
    expect(rope).toEqual({ theta: 10000, scaling: { type: "default" }, partialRotaryFactor: 1 });
    expectF32Close(ropeInvFreq(rope, 16), REF.default_1e4_16);
    // Cross-check against the closed form in float64: 1 / theta^(2i/d).
    ropeInvFreq(rope, 16).forEach((x, i) => expect(x).toBeCloseTo(1 / 10000 ** ((2 * i) / 16), 7));
  });

  it("defaults theta to 10000 and accepts partial_rotary_factor", () => {
    expect(parseRope(reader({}))).toEqual({ theta: 10000, scaling: { type: "default" }, partialRotaryFactor: 1 });
    expect(parseRope(reader({ partial_rotary_factor: 0.5 })).partialRotaryFactor).toBe(0.5);
    expectKilnError(() => parseRope(reader({ partial_rotary_factor: 2 })), "CONFIG_INVALID", "partial_rotary_factor");
  });

  it("linear, in both spellings", () => {
    const [a, b] = bothSpellings(10000, { rope_type: "linear", factor: 4.0 });
    expect(a).toEqual(b);
    expect(a.scaling).toEqual({ type: "linear", factor: 4 });
    expectF32Close(ropeInvFreq(a, 16), REF.linear_1e4_16_f4);
    // the oldest spelling used "type" instead of "rope_type"
    expect(parseRope(reader({ rope_scaling: { type: "linear", factor: 4.0 } })).scaling).toEqual(a.scaling);
  });

  it("llama3, in both spellings", () => {
    const scaling = {
      rope_type: "llama3",
      factor: 8.0,
      low_freq_factor: 1.0,
      high_freq_factor: 4.0,
      original_max_position_embeddings: 8192,
    };
    const [a, b] = bothSpellings(500000, scaling, { max_position_embeddings: 131072 });
    expect(a).toEqual(b);
    expectF32Close(ropeInvFreq(a, 64), REF.llama3_5e5_64);
  });

  it("dynamic NTK: default table within the trained length, rescaled past it", () => {
    const [a, b] = bothSpellings(10000, { rope_type: "dynamic", factor: 2.0 }, { max_position_embeddings: 512 });
    expect(a).toEqual(b);
    expect(a.scaling).toEqual({ type: "dynamic", factor: 2, originalMaxPositionEmbeddings: 512 });
    expectF32Close(ropeInvFreq(a, 16), REF.default_1e4_16);
    expectF32Close(ropeInvFreqForLength(a, 16, 300, 512), REF.default_1e4_16);
    expectF32Close(ropeInvFreqForLength(a, 16, 1024, 512), REF.dynamic_1e4_16_f2_512_1024);
    expectKilnError(
      () => parseRope(reader({ rope_scaling: { type: "dynamic", factor: 2.0 } })),
      "CONFIG_INVALID",
      '"max_position_embeddings"',
    );
  });

  it("yarn, in both spellings, with transformers 5's factor and attention factor", () => {
    const scaling = { rope_type: "yarn", factor: 4.0, original_max_position_embeddings: 4096 };
    const [a, b] = bothSpellings(1e6, scaling, { max_position_embeddings: 16384 });
    expect(a).toEqual(b);
    expectF32Close(ropeInvFreq(a, 32), REF.yarn_1e6_32_f4_4096);
    expect(ropeAttentionScaling(a)).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    // with both lengths given, the factor is their ratio (here 8, not the configured 4)
    const [c] = bothSpellings(1e6, scaling, { max_position_embeddings: 32768 });
    expect(c.scaling.type === "yarn" && c.scaling.factor).toBe(8);
  });

  it("picks one layer type from per-layer rope_parameters", () => {
    const c = reader({
      rope_parameters: {
        full_attention: { rope_type: "linear", factor: 8.0, rope_theta: 1e6 },
        sliding_attention: { rope_type: "default", rope_theta: 1e4 },
      },
    });
    expect(parseRope(c, "full_attention")).toEqual({ theta: 1e6, scaling: { type: "linear", factor: 8 }, partialRotaryFactor: 1 });
    expect(parseRope(c, "sliding_attention").theta).toBe(1e4);
    expectKilnError(() => parseRope(c), "CONFIG_INVALID", '"rope_parameters"', "layer type");
  });

  it("rejects unsupported rope types and missing factors, naming the field", () => {
    expectKilnError(
      () => parseRope(reader({ rope_parameters: { rope_type: "longrope", rope_theta: 1e4 } })),
      "CONFIG_INVALID",
      '"rope_parameters.rope_type"',
      "longrope",
    );
    expectKilnError(() => parseRope(reader({ rope_scaling: { type: "linear" } })), "CONFIG_INVALID", '"rope_scaling.factor"');
    expectKilnError(() => ropeInvFreq(parseRope(reader({})), 7), "INVALID_ARGUMENT", "7");
  });
});

describe("loadGenerationConfig", () => {
  it("reads the fixture's generation_config.json", () => {
    expect(loadGenerationConfig(nodePath.join(FIXTURES, "llama"))).toEqual({ eosTokenIds: [2], bosTokenId: 1, padTokenId: 0 });
  });

  it("accepts an eos list and sampling defaults", () => {
    const dir = modelDir({
      "generation_config.json": { eos_token_id: [2, 7], temperature: 0.6, top_p: 0.9, top_k: 20, do_sample: true, max_new_tokens: 64, repetition_penalty: 1.1 },
    });
    expect(loadGenerationConfig(dir)).toEqual({
      eosTokenIds: [2, 7],
      temperature: 0.6,
      topP: 0.9,
      topK: 20,
      doSample: true,
      maxNewTokens: 64,
      repetitionPenalty: 1.1,
    });
  });

  it("top_k 0 (transformers' \"no top-k\") is no default, not a top-k of 0", () => {
    expect(loadGenerationConfig(modelDir({ "generation_config.json": { top_k: 0, temperature: 0.7 } }))).toEqual({ eosTokenIds: [], temperature: 0.7 });
  });

  it("has no defaults when the file is absent, and names file and field when invalid", () => {
    expect(loadGenerationConfig(modelDir({}))).toEqual({ eosTokenIds: [] });
    const dir = modelDir({ "generation_config.json": { eos_token_id: "two" } });
    expectKilnError(() => loadGenerationConfig(dir), "CONFIG_INVALID", nodePath.join(dir, "generation_config.json"), '"eos_token_id"');
    const neg = modelDir({ "generation_config.json": { temperature: -1 } });
    expectKilnError(() => loadGenerationConfig(neg), "CONFIG_INVALID", '"temperature"');
  });
});
