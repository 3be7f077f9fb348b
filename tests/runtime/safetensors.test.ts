import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Checkpoint } from "../../runtime/io/checkpoint.ts";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { writeSafetensors, type TensorToWrite } from "../../runtime/io/safetensors_writer.ts";

const FIXTURES = nodePath.resolve(import.meta.dirname, "../fixtures");
const FORTUNE = nodePath.resolve(import.meta.dirname, "../../assets/fortune-llama");
const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "kiln-safetensors-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

let tmpCount = 0;
function tmpPath(name: string): string {
  const dir = nodePath.join(tmpRoot, String(tmpCount++));
  fs.mkdirSync(dir);
  return nodePath.join(dir, name);
}

/** Expect `fn` to throw a KilnError with `code` whose message contains every one of `parts`. */
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

/** A file with a hand-written header (and optionally a lying header length) followed by `dataBytes` zeros. */
function rawFile(header: string, dataBytes: number, headerLen?: bigint): string {
  const path = tmpPath("bad.safetensors");
  const json = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  fs.writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return path;
}

describe("SafetensorsFile on the fixtures", () => {
  // Spot values read independently with Python's struct module:
  //   struct.unpack('<f', f.read(4)) at 8 + header_len + data_offsets[0] + 4 * index (F32),
  //   and for BF16 the u16 at 2 * index, widened by struct.pack('<I', bits << 16).
  it("reads F32 tensors (llama)", () => {
    const f = SafetensorsFile.open(nodePath.join(FIXTURES, "llama/model.safetensors"));
    const info = f.tensors.get("model.embed_tokens.weight");
    expect(info?.dtype).toBe("F32");
    expect(info?.shape).toEqual([512, 64]);
    expect(f.metadata).toEqual({ format: "pt" });
    const emb = f.readF32("model.embed_tokens.weight");
    expect(emb.length).toBe(512 * 64);
    expect(emb[0]).toBe(Math.fround(-1.1258398294448853));
    expect(emb[1]).toBe(Math.fround(-1.152360200881958));
    expect(emb[64 * 511 + 63]).toBe(Math.fround(1.1253758668899536));
    const norm = f.readF32("model.norm.weight");
    expect(norm[5]).toBe(Math.fround(1.1844409704208374));
    f.close();
  });

  it("reads q/k/v biases (qwen2)", () => {
    const f = SafetensorsFile.open(nodePath.join(FIXTURES, "qwen2/model.safetensors"));
    const b = f.readF32("model.layers.0.self_attn.q_proj.bias");
    expect(b[0]).toBe(Math.fround(-0.02203725464642048));
    expect(b[3]).toBe(Math.fround(-0.008606540970504284));
    f.close();
  });

  it("reads BF16 tensors as bits and as f32 (llama-bf16, fortune-llama)", () => {
    const f = SafetensorsFile.open(nodePath.join(FIXTURES, "llama-bf16/model.safetensors"));
    const bits = f.readBf16Bits("model.embed_tokens.weight");
    expect([bits[0], bits[1], bits[64 * 511 + 63]]).toEqual([16025, 49193, 48394]);
    const vals = f.readF32("model.embed_tokens.weight");
    expect([vals[0], vals[1], vals[64 * 511 + 63]]).toEqual([0.298828125, -2.640625, -0.03369140625]);
    expectKilnError(() => f.readI32("model.embed_tokens.weight"), "SAFETENSORS_DTYPE", "BF16", "model.embed_tokens.weight");
    f.close();

    const fortune = SafetensorsFile.open(nodePath.join(FORTUNE, "model.safetensors"));
    const emb = fortune.readF32("model.embed_tokens.weight");
    expect([emb[0], emb[1], emb[256 * 2047 + 255]]).toEqual([-0.099609375, 0.1123046875, 0.0035400390625]);
    fortune.close();
  });

  it("reads I32 reference prompts", () => {
    const f = SafetensorsFile.open(nodePath.join(FIXTURES, "llama/reference.safetensors"));
    expect(Array.from(f.readI32("prompt_0"))).toEqual([89, 342, 48, 451, 411, 374, 280]);
    expectKilnError(() => f.readBf16Bits("prompt_0"), "SAFETENSORS_DTYPE", "prompt_0", "reference.safetensors");
    expectKilnError(() => f.readF32("no_such"), "TENSOR_MISSING", "no_such");
    f.close();
    expectKilnError(() => f.readI32("prompt_0"), "INVALID_ARGUMENT", "closed");
    f.close(); // idempotent
  });
});

describe("SafetensorsFile conversions (files written by writeSafetensors)", () => {
  const tensors: TensorToWrite[] = [
    // binary16 bits: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf, NaN
    { name: "half", dtype: "F16", shape: [6], data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x7e00]) },
    { name: "double", dtype: "F64", shape: [2], data: new Float64Array([0.1, -3.5]) },
    { name: "long", dtype: "I64", shape: [3], data: new BigInt64Array([0n, -7n, 2147483647n]) },
    { name: "too_long", dtype: "I64", shape: [1], data: new BigInt64Array([2147483648n]) },
    { name: "bytes", dtype: "U8", shape: [2, 2], data: new Uint8Array([1, 2, 3, 4]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  ];
  const path = tmpPath("conv.safetensors");
  writeSafetensors(path, tensors, { note: "test" });

  it("round-trips header, metadata and raw bytes, with an 8-aligned data area", () => {
    const f = SafetensorsFile.open(path);
    expect([...f.tensors.keys()]).toEqual(tensors.map((t) => t.name));
    expect(f.metadata).toEqual({ note: "test" });
    expect(Number(fs.readFileSync(path).readBigUInt64LE(0)) % 8).toBe(0);
    expect(Array.from(f.readBytes("bytes"))).toEqual([1, 2, 3, 4]);
    expect(f.readF32("empty").length).toBe(0);
    f.close();
  });

  it("converts F16, F64 and I64", () => {
    const f = SafetensorsFile.open(path);
    const h = f.readF32("half");
    expect(Array.from(h.slice(0, 5))).toEqual([1, -2, 65504, 2 ** -24, Infinity]);
    expect(Number.isNaN(h[5])).toBe(true);
    expect(Array.from(f.readF32("double"))).toEqual([Math.fround(0.1), -3.5]);
    expect(Array.from(f.readI32("long"))).toEqual([0, -7, 2147483647]);
    expectKilnError(() => f.readI32("too_long"), "SAFETENSORS_DTYPE", "too_long", "int32");
    expectKilnError(() => f.readF32("bytes"), "SAFETENSORS_DTYPE", "U8", "bytes");
    f.close();
  });

  it("rejects data whose size does not match the shape", () => {
    const bad = tmpPath("bad.safetensors");
    expect(() =>
      writeSafetensors(bad, [{ name: "x", dtype: "F32", shape: [3], data: new Float32Array(2) }]),
    ).toThrow(/"x".*8 bytes/);
    expect(fs.readdirSync(nodePath.dirname(bad))).toEqual([]);
  });
});

describe("SafetensorsFile header validation", () => {
  const ok = (offsets: string, dtype = '"F32"', shape = "[2]"): string =>
    `{"t":{"dtype":${dtype},"shape":${shape},"data_offsets":${offsets}}}`;

  it("accepts a well-formed hand-written file", () => {
    const f = SafetensorsFile.open(rawFile(ok("[0,8]"), 8));
    expect(f.tensors.get("t")?.byteLength).toBe(8);
    f.close();
  });

  it("rejects a file shorter than 8 bytes", () => {
    const path = tmpPath("short.safetensors");
    fs.writeFileSync(path, Buffer.from([1, 2, 3]));
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, "8-byte");
  });

  it("rejects a header length past the end of the file", () => {
    const path = rawFile(ok("[0,8]"), 8, 1000n);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, "header length 1000");
  });

  it("rejects a corrupt header", () => {
    const path = rawFile('{"t": {"dtype": "F32", "sha', 8);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, "JSON");
    const arr = rawFile("[1,2]", 0);
    expectKilnError(() => SafetensorsFile.open(arr), "SAFETENSORS_INVALID", arr, "not a JSON object");
  });

  it("rejects missing or malformed fields, naming the tensor", () => {
    const cases: [string, string][] = [
      ['{"t":{"shape":[2],"data_offsets":[0,8]}}', "dtype"],
      ['{"t":{"dtype":"F32","data_offsets":[0,8]}}', "shape"],
      [ok("[0,8]", '"F32"', "[-2]"), "shape"],
      ['{"t":{"dtype":"F32","shape":[2]}}', "data_offsets"],
      [ok("[0]"), "data_offsets"],
      [ok("[0.5,8]"), "data_offsets"],
      ['{"t": 3}', "not an object"],
      ['{"__metadata__":{"a":1}}', "__metadata__"],
    ];
    for (const [header, what] of cases) {
      const path = rawFile(header, 8);
      expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, what);
    }
  });

  it("rejects offsets out of range, inconsistent with the shape, or overlapping", () => {
    const past = rawFile(ok("[0,16]", '"F32"', "[4]"), 8);
    expectKilnError(() => SafetensorsFile.open(past), "SAFETENSORS_INVALID", past, '"t"', "out of range");
    const backwards = rawFile(ok("[8,0]"), 8);
    expectKilnError(() => SafetensorsFile.open(backwards), "SAFETENSORS_INVALID", backwards, "out of range");
    const size = rawFile(ok("[0,8]", '"F32"', "[3]"), 16);
    expectKilnError(() => SafetensorsFile.open(size), "SAFETENSORS_INVALID", size, '"t"', "needs 12");
    const overlap = rawFile(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
      12,
    );
    expectKilnError(() => SafetensorsFile.open(overlap), "SAFETENSORS_INVALID", overlap, '"a"', '"b"', "overlap");
  });

  it("rejects an unknown dtype with SAFETENSORS_DTYPE", () => {
    const path = rawFile(ok("[0,8]", '"F33"'), 8);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_DTYPE", path, '"t"', "F33");
  });

  it("reports a missing file as MODEL_NOT_FOUND", () => {
    const path = nodePath.join(tmpRoot, "nope.safetensors");
    expectKilnError(() => SafetensorsFile.open(path), "MODEL_NOT_FOUND", path);
  });
});

describe("Checkpoint", () => {
  const f32 = (name: string, values: number[]): TensorToWrite => ({
    name,
    dtype: "F32",
    shape: [values.length],
    data: new Float32Array(values),
  });

  it("opens a single-file fixture and ignores other safetensors files beside it", () => {
    const ckpt = Checkpoint.open(nodePath.join(FIXTURES, "llama"));
    expect(ckpt.names()).toContain("lm_head.weight");
    expect(ckpt.has("prompt_0")).toBe(false); // reference.safetensors is not part of the weights
    expect(ckpt.info("model.norm.weight").shape).toEqual([64]);
    expect(ckpt.readF32("model.norm.weight")[0]).toBe(Math.fround(0.8292781710624695));
    expectKilnError(() => ckpt.readF32("model.nope"), "TENSOR_MISSING", "model.nope");
    ckpt.close();
  });

  it("follows model.safetensors.index.json across shards", () => {
    const dir = nodePath.dirname(tmpPath("x"));
    writeSafetensors(nodePath.join(dir, "model-00001-of-00002.safetensors"), [f32("a", [1, 2]), f32("b", [3])]);
    writeSafetensors(nodePath.join(dir, "model-00002-of-00002.safetensors"), [
      f32("c", [4, 5, 6]),
      { name: "ids", dtype: "I32", shape: [2], data: new Int32Array([7, 8]) },
      { name: "h", dtype: "BF16", shape: [1], data: new Uint16Array([0x3f80]) },
    ]);
    const weightMap = {
      a: "model-00001-of-00002.safetensors",
      b: "model-00001-of-00002.safetensors",
      c: "model-00002-of-00002.safetensors",
      ids: "model-00002-of-00002.safetensors",
      h: "model-00002-of-00002.safetensors",
    };
    fs.writeFileSync(nodePath.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const ckpt = Checkpoint.open(dir);
    expect(ckpt.names()).toEqual(["a", "b", "c", "h", "ids"]);
    expect(Array.from(ckpt.readF32("c"))).toEqual([4, 5, 6]);
    expect(Array.from(ckpt.readI32("ids"))).toEqual([7, 8]);
    expect(Array.from(ckpt.readBf16Bits("h"))).toEqual([0x3f80]);
    expect(ckpt.pathOf("b")).toContain("model-00001-of-00002");
    ckpt.close();

    // An index that puts a tensor in the wrong shard is rejected, naming the index.
    const wrong = { ...weightMap, a: "model-00002-of-00002.safetensors" };
    fs.writeFileSync(nodePath.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: wrong }));
    expectKilnError(() => Checkpoint.open(dir), "SAFETENSORS_INVALID", "model.safetensors.index.json", '"a"');
    fs.writeFileSync(nodePath.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../x.safetensors" } }));
    expectKilnError(() => Checkpoint.open(dir), "SAFETENSORS_INVALID", "leaves the model folder");
  });

  it("without an index, uses every *.safetensors file and rejects duplicates", () => {
    const dir = nodePath.dirname(tmpPath("x"));
    writeSafetensors(nodePath.join(dir, "part1.safetensors"), [f32("a", [1])]);
    writeSafetensors(nodePath.join(dir, "part2.safetensors"), [f32("b", [2])]);
    const ckpt = Checkpoint.open(dir);
    expect(ckpt.names()).toEqual(["a", "b"]);
    ckpt.close();
    writeSafetensors(nodePath.join(dir, "part3.safetensors"), [f32("a", [3])]);
    expectKilnError(() => Checkpoint.open(dir), "SAFETENSORS_INVALID", '"a"', "part1", "part3");
  });

  it("reports a folder without weights as MODEL_NOT_FOUND", () => {
    const dir = nodePath.dirname(tmpPath("x"));
    expectKilnError(() => Checkpoint.open(dir), "MODEL_NOT_FOUND", dir);
    expectKilnError(() => Checkpoint.open(nodePath.join(dir, "missing")), "MODEL_NOT_FOUND", "missing");
  });
});

/**
 * The layout rules of the format's specification and its Rust reference implementation: the data
 * section starts exactly at 8 + header length, and the tensors tile it exactly. A header length one
 * byte short used to be accepted (the JSON's space padding still parses) with every weight read one
 * byte off.
 */
describe("SafetensorsFile exact layout", () => {
  /** Opens, reads what `read` wants and closes. */
  const inspect = <T>(path: string, read: (f: SafetensorsFile) => T): T => {
    const f = SafetensorsFile.open(path);
    try {
      return read(f);
    } finally {
      f.close();
    }
  };
  const two = (a: string, b: string): string =>
    `{"a":{"dtype":"F32","shape":[2],"data_offsets":${a}},"b":{"dtype":"F32","shape":[1],"data_offsets":${b}}}`;

  it("refuses a header length one byte short of the padded JSON (data would be read one byte off)", () => {
    const path = tmpPath("short-by-one.safetensors");
    writeSafetensors(path, [{ name: "x", dtype: "F32", shape: [3], data: new Float32Array([1, 2, 3]) }]);
    const bytes = fs.readFileSync(path);
    const n = bytes.readBigUInt64LE(0);
    expect(bytes[8 + Number(n) - 1]).toBe(0x20); // the writer pads with spaces, so N - 1 bytes still parse
    bytes.writeBigUInt64LE(n - 1n);
    fs.writeFileSync(path, bytes);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, "header length");
    bytes.writeBigUInt64LE(n + 1n); // one long: the data section loses a byte
    fs.writeFileSync(path, bytes);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path);
  });

  it("refuses gaps: before the first tensor, between tensors, and after the last", () => {
    const first = rawFile(two("[4,12]", "[12,16]"), 16);
    expectKilnError(() => SafetensorsFile.open(first), "SAFETENSORS_INVALID", first, '"a"', "gap");
    const between = rawFile(two("[0,8]", "[12,16]"), 16);
    expectKilnError(() => SafetensorsFile.open(between), "SAFETENSORS_INVALID", between, '"b"', "gap", '"a"');
    const tail = rawFile(two("[0,8]", "[8,12]"), 16);
    expectKilnError(() => SafetensorsFile.open(tail), "SAFETENSORS_INVALID", tail, "12 bytes", "16");
    const ok = rawFile(two("[0,8]", "[8,12]"), 12);
    expect(inspect(ok, (f) => [...f.tensors.keys()])).toEqual(["a", "b"]);
  });

  it("accepts empty tensors in place and refuses one that sits outside the tiling", () => {
    const empty = '{"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    expect(inspect(rawFile(empty, 8), (f) => f.tensors.get("e")?.byteLength)).toBe(0);
    const stray = '{"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
    expectKilnError(() => SafetensorsFile.open(rawFile(stray, 8)), "SAFETENSORS_INVALID", '"a"', '"e"', "overlap");
  });

  it("refuses a name declared twice (JSON.parse would keep only the last)", () => {
    const dup = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    const path = rawFile(dup, 4);
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, '"a"', "twice");
    // the same text inside a value is not a key
    const nested = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"a":"a"}}';
    expect(inspect(rawFile(nested, 4), (f) => f.metadata)).toEqual({ a: "a" });
  });

  it("refuses a header that is not UTF-8, or does not start with {", () => {
    const path = tmpPath("latin1.safetensors");
    const json = Buffer.concat([Buffer.from('{"__metadata__":{"k":"'), Buffer.from([0xff]), Buffer.from('"}}')]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path, Buffer.concat([len, json]));
    expectKilnError(() => SafetensorsFile.open(path), "SAFETENSORS_INVALID", path, "UTF-8");
    const lead = rawFile(` {"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8);
    expectKilnError(() => SafetensorsFile.open(lead), "SAFETENSORS_INVALID", lead, "begin");
  });

  it("refuses a shape whose size overflows, and a directory or device in place of the file", () => {
    const huge = rawFile('{"t":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}}', 0);
    expectKilnError(() => SafetensorsFile.open(huge), "SAFETENSORS_INVALID", huge, '"t"', "shape");
    const dir = tmpPath("model.safetensors");
    fs.mkdirSync(dir);
    expectKilnError(() => SafetensorsFile.open(dir), "SAFETENSORS_INVALID", dir, "not a regular file");
    expectKilnError(() => SafetensorsFile.open("/dev/zero"), "SAFETENSORS_INVALID", "/dev/zero", "not a regular file");
  });
});
