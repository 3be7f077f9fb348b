/**
 * Test support: mutations of a model folder's files other than config.json's numbers: the
 * safetensors header and data, the tokenizer files, generation_config.json, and config.json's
 * structure (lists, rope settings, divisibility, agreement with the checkpoint).
 */
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { configEdit, ONE_PER_ARCHITECTURE, readConfig, refused, typed, type Mutation } from "./config_mutations.ts";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => v as Obj;

/** Replaces a file by `body` (a directory when `{ dir: true }`, removed when undefined). */
function replaceFile(dir: string, file: string, body: string | Buffer | { readonly dir: true } | undefined): void {
  const path = join(dir, file);
  rmSync(path, { recursive: true, force: true });
  if (body === undefined) return;
  if (typeof body === "string" || Buffer.isBuffer(body)) writeFileSync(path, body);
  else mkdirSync(path);
}

function editJsonFile(dir: string, file: string, edit: (o: Obj) => void): void {
  const o = obj(JSON.parse(readFileSync(join(dir, file), "utf8")));
  edit(o);
  writeFileSync(join(dir, file), JSON.stringify(o));
}

/** The safetensors file's parts: its header object (parsed) and its data bytes. */
function splitWeights(dir: string): { header: Obj; data: Buffer; raw: Buffer } {
  const raw = readFileSync(join(dir, "model.safetensors"));
  const n = Number(raw.readBigUInt64LE(0));
  return { header: obj(JSON.parse(raw.subarray(8, 8 + n).toString("utf8"))), data: raw.subarray(8 + n), raw };
}

/** Writes header text (padded to 8 with spaces, as the writer does) and data; `lenDelta` makes the length field lie. */
function writeWeights(dir: string, headerText: string, data: Buffer, lenDelta = 0n): void {
  const json = Buffer.from(headerText + " ".repeat((8 - (Buffer.byteLength(headerText) % 8)) % 8));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length) + lenDelta);
  writeFileSync(join(dir, "model.safetensors"), Buffer.concat([len, json, data]));
}

function headerEdit(name: string, edit: (h: Obj) => void, expect = refused("SAFETENSORS_INVALID")): Mutation {
  return {
    fixture: "llama",
    name: `model.safetensors ${name}`,
    apply: (dir) => {
      const { header, data } = splitWeights(dir);
      edit(header);
      writeWeights(dir, JSON.stringify(header), data);
    },
    expect,
  };
}

function bytesEdit(name: string, edit: (raw: Buffer) => Buffer, expect = refused("SAFETENSORS_INVALID")): Mutation {
  return { fixture: "llama", name: `model.safetensors ${name}`, apply: (dir) => writeFileSync(join(dir, "model.safetensors"), edit(splitWeights(dir).raw)), expect };
}

const EMBED = "model.embed_tokens.weight";
const tensor = (h: Obj, name = EMBED): Obj => obj(h[name]);
const offsets = (h: Obj, name: string): number[] => tensor(h, name)["data_offsets"] as number[];
/** The tensor whose data follows `name`'s. */
const nextOf = (h: Obj, name: string): string =>
  Object.keys(h).find((k) => k !== "__metadata__" && offsets(h, k)[0] === offsets(h, name)[1]) ?? name;
const withLength = (raw: Buffer, f: (n: bigint) => bigint): Buffer => {
  const out = Buffer.from(raw);
  out.writeBigUInt64LE(BigInt.asUintN(64, f(raw.readBigUInt64LE(0))));
  return out;
};

export function safetensorsMutations(): Mutation[] {
  const lengthCases: [string, (n: bigint) => bigint][] = [
    ["- 1", (n) => n - 1n], ["+ 1", (n) => n + 1n], ["- 8", (n) => n - 8n], ["+ 8", (n) => n + 8n],
    ["= 2^63", () => 1n << 63n], ["= 2^64 - 1", () => (1n << 64n) - 1n], ["= 0", () => 0n], ["= 2", () => 2n],
  ];
  const truncations: [string, (raw: Buffer) => Buffer][] = [
    ["emptied", () => Buffer.alloc(0)], ["cut to 4 bytes", (r) => r.subarray(0, 4)], ["cut to 8 bytes", (r) => r.subarray(0, 8)],
    ["cut inside the header", (r) => r.subarray(0, 200)], ["cut after the header", (r) => r.subarray(0, 8 + Number(r.readBigUInt64LE(0)))],
    ["cut 1 data byte short", (r) => r.subarray(0, r.length - 1)], ["cut 4 data bytes short", (r) => r.subarray(0, r.length - 4)],
    ["with 1 byte appended", (r) => Buffer.concat([r, Buffer.alloc(1)])], ["with 8 bytes appended", (r) => Buffer.concat([r, Buffer.alloc(8)])],
  ];
  const corrupt = (at: (r: Buffer) => number, byte: number) => (r: Buffer): Buffer => {
    const out = Buffer.from(r);
    out[at(r)] = byte;
    return out;
  };
  const badDtypes: unknown[] = ["F33", "f32", "", 32, null, "F16"];
  return [
    ...lengthCases.map(([label, f]) => bytesEdit(`header length ${label}`, (r) => withLength(r, f))),
    ...truncations.map(([label, f]) => bytesEdit(label, f)),
    bytesEdit("with its first header byte corrupted", corrupt(() => 8, 0x78)),
    bytesEdit("with an invalid UTF-8 byte in the header", corrupt(() => 12, 0xff)),
    bytesEdit("with a NUL in the header", corrupt(() => 20, 0)),
    bytesEdit("with its header's closing brace removed", (r) => {
      const n = Number(r.readBigUInt64LE(0));
      const text = r.subarray(8, 8 + n).toString("utf8").trimEnd();
      const out = Buffer.from(r);
      out[8 + text.length - 1] = 0x20;
      return out;
    }),
    // 0x7f7f bytes are NaN in bf16: the sampler refuses NaN logits rather than pick a token
    { ...bytesEdit("with flipped data bytes", (r) => Buffer.concat([r.subarray(0, r.length - 64), Buffer.alloc(64, 0x7f)])), expect: { ...typed, codes: [...typed.codes, "SAMPLING_FAILED"] } },
    {
      fixture: "llama", name: "model.safetensors header length one short of its space padding", expect: refused("SAFETENSORS_INVALID"),
      apply: (dir) => {
        const { header, data } = splitWeights(dir);
        const text = JSON.stringify(header);
        writeWeights(dir, text + " ".repeat(8 - (Buffer.byteLength(text) % 8) || 8), data, -1n);
      },
    },
    {
      fixture: "llama", name: "model.safetensors with a tensor declared twice", expect: refused("SAFETENSORS_INVALID"),
      apply: (dir) => {
        const { header, data } = splitWeights(dir);
        const text = JSON.stringify(header);
        writeWeights(dir, `{"${EMBED}":${JSON.stringify(header[EMBED])},${text.slice(1)}`, data);
      },
    },
    {
      fixture: "llama", name: "model.safetensors header with leading spaces", expect: refused("SAFETENSORS_INVALID"),
      apply: (dir) => {
        const { header, data } = splitWeights(dir);
        writeWeights(dir, `  ${JSON.stringify(header)}`, data);
      },
    },
    headerEdit("tensors overlapping", (h) => void (offsets(h, nextOf(h, EMBED))[0] = offsets(h, EMBED)[1]! - 4)),
    headerEdit("a tensor shifted 4 bytes on", (h) => {
      const o = offsets(h, EMBED);
      tensor(h)["data_offsets"] = [o[0]! + 4, o[1]! + 4];
    }),
    headerEdit("a tensor's entry removed (a gap)", (h) => void delete h[nextOf(h, EMBED)]),
    headerEdit("the first tensor starting at 4", (h) => {
      const first = Object.keys(h).find((k) => k !== "__metadata__" && offsets(h, k)[0] === 0) ?? EMBED;
      tensor(h, first)["data_offsets"] = [4, offsets(h, first)[1]];
    }),
    headerEdit("two equal-sized tensors' offsets swapped", (h) => {
      const [a, b] = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight"];
      [tensor(h, a)["data_offsets"], tensor(h, b)["data_offsets"]] = [offsets(h, b), offsets(h, a)];
    }, typed),
    headerEdit("shape disagreeing with its offsets", (h) => void (tensor(h)["shape"] = [512, 65])),
    headerEdit("shape transposed (same size)", (h) => void (tensor(h)["shape"] = [64, 512]), refused("CONFIG_INVALID", "TENSOR_SHAPE")),
    ...[[-512, 64], [512.5, 64], "x", [2 ** 53, 2 ** 53, 0], null].map((shape) =>
      headerEdit(`shape ${JSON.stringify(shape)}`, (h) => void (tensor(h)["shape"] = shape)),
    ),
    ...[[0], [0, 1, 2], ["0", "4"], [-4, 0], [1.5, 2], null].map((o) =>
      headerEdit(`data_offsets ${JSON.stringify(o)}`, (h) => void (tensor(h)["data_offsets"] = o)),
    ),
    ...badDtypes.map((d) => headerEdit(`dtype ${JSON.stringify(d)}`, (h) => void (tensor(h)["dtype"] = d), refused("SAFETENSORS_INVALID", "SAFETENSORS_DTYPE"))),
    headerEdit('dtype "I32" (same size)', (h) => void (tensor(h, "model.norm.weight")["dtype"] = "I32"), refused("SAFETENSORS_DTYPE")),
    headerEdit("a tensor renamed", (h) => {
      h["model.embed_tokenz.weight"] = h[EMBED] ?? null;
      delete h[EMBED];
    }, refused("TENSOR_UNUSED", "TENSOR_MISSING")),
    ...[{ format: 1 }, [], "pt"].map((m) => headerEdit(`__metadata__ ${JSON.stringify(m)}`, (h) => void (h["__metadata__"] = m))),
    { fixture: "llama", name: "model.safetensors is a directory", apply: (d) => replaceFile(d, "model.safetensors", { dir: true }), expect: refused("SAFETENSORS_INVALID") },
    { fixture: "llama", name: "model.safetensors is /dev/zero", expect: refused("SAFETENSORS_INVALID"), apply: (d) => {
      replaceFile(d, "model.safetensors", undefined);
      symlinkSync("/dev/zero", join(d, "model.safetensors"));
    } },
    { fixture: "llama", name: "model.safetensors is a dangling link", expect: refused("MODEL_NOT_FOUND"), apply: (d) => {
      replaceFile(d, "model.safetensors", undefined);
      symlinkSync(join(d, "nowhere"), join(d, "model.safetensors"));
    } },
    { fixture: "llama", name: "model.safetensors missing", apply: (d) => replaceFile(d, "model.safetensors", undefined), expect: refused("MODEL_NOT_FOUND") },
    { fixture: "llama-bf16", name: "model.safetensors (bf16) header length - 1", apply: (d) => writeFileSync(join(d, "model.safetensors"), withLength(splitWeights(d).raw, (n) => n - 1n)), expect: refused("SAFETENSORS_INVALID") },
    ...[{ weight_map: "x" }, { weight_map: { [EMBED]: "../model.safetensors" } }, { weight_map: { [EMBED]: "missing.safetensors" } }, "[]"].map((index): Mutation => ({
      fixture: "llama",
      name: `model.safetensors.index.json ${JSON.stringify(index)}`,
      apply: (d) => replaceFile(d, "model.safetensors.index.json", typeof index === "string" ? index : JSON.stringify(index)),
      expect: refused("SAFETENSORS_INVALID", "MODEL_NOT_FOUND"),
    })),
  ];
}

function tokenizerEdit(name: string, edit: (o: Obj) => void, expect = refused("TOKENIZER_INVALID")): Mutation {
  return { fixture: "llama", name: `tokenizer.json ${name}`, apply: (d) => editJsonFile(d, "tokenizer.json", edit), expect };
}

function fileReplaced(file: string, body: string | { readonly dir: true } | undefined, label: string, expect: Mutation["expect"]): Mutation {
  return { fixture: "llama", name: `${file} ${label}`, apply: (d) => replaceFile(d, file, body), expect };
}

/** Broken JSON files, each as truncated, empty, not an object, a directory and missing. */
function brokenJson(file: string, codeIfBad: "TOKENIZER_INVALID" | "CONFIG_INVALID", missing: Mutation["expect"]): Mutation[] {
  return [
    { fixture: "llama", name: `${file} truncated`, expect: refused(codeIfBad), apply: (d) => {
      const text = readFileSync(join(d, file), "utf8");
      writeFileSync(join(d, file), text.slice(0, Math.floor(text.length / 2)));
    } },
    fileReplaced(file, "", "empty", refused(codeIfBad)),
    fileReplaced(file, "[]", "a list", refused(codeIfBad)),
    fileReplaced(file, "null", "null", refused(codeIfBad)),
    fileReplaced(file, { dir: true }, "a directory", refused(codeIfBad)),
    fileReplaced(file, undefined, "missing", missing),
  ];
}

export function tokenizerMutations(): Mutation[] {
  const model = (o: Obj): Obj => obj(o["model"]);
  const added = (o: Obj): Obj => obj((o["added_tokens"] as unknown[])[0]);
  const vocab = (o: Obj): Obj => obj(model(o)["vocab"]);
  return [
    ...["Nonsense", "bpe", 5].map((t) => tokenizerEdit(`model.type ${JSON.stringify(t)}`, (o) => void (model(o)["type"] = t))),
    tokenizerEdit("model.type deleted", (o) => void delete model(o)["type"], typed),
    ...[undefined, [], "x"].map((v) => tokenizerEdit(`model.vocab ${JSON.stringify(v) ?? "deleted"}`, (o) => void (model(o)["vocab"] = v))),
    ...[1e9, -1, 1.5, "3"].map((id) => tokenizerEdit(`vocab id ${JSON.stringify(id)}`, (o) => void (vocab(o)["a"] = id))),
    ...[undefined, "x", [[1, 2]], ["nospace"]].map((m) => tokenizerEdit(`model.merges ${JSON.stringify(m) ?? "deleted"}`, (o) => void (model(o)["merges"] = m))),
    ...[1e9, -1, 1.5, "0", null, 2 ** 53].map((id) => tokenizerEdit(`added token id ${JSON.stringify(id)}`, (o) => void (added(o)["id"] = id))),
    tokenizerEdit("added token content deleted", (o) => void delete added(o)["content"]),
    tokenizerEdit("added token content 5", (o) => void (added(o)["content"] = 5)),
    tokenizerEdit("added_tokens an object", (o) => void (o["added_tokens"] = {})),
    tokenizerEdit("added_tokens deleted", (o) => void delete o["added_tokens"], typed),
    ...["normalizer", "pre_tokenizer", "decoder", "post_processor"].map((k) => tokenizerEdit(`${k} type "Nonsense"`, (o) => void (o[k] = { type: "Nonsense" }))),
    ...brokenJson("tokenizer.json", "TOKENIZER_INVALID", refused("TOKENIZER_INVALID")),
    ...brokenJson("tokenizer_config.json", "TOKENIZER_INVALID", refused("TOKENIZER_INVALID")),
    { fixture: "llama", name: "tokenizer_config.json bos_token not in the vocabulary", expect: refused("TOKENIZER_INVALID"), apply: (d) => editJsonFile(d, "tokenizer_config.json", (o) => void (o["bos_token"] = "<|nope|>")) },
    { fixture: "llama", name: "tokenizer_config.json bos_token 5", expect: typed, apply: (d) => editJsonFile(d, "tokenizer_config.json", (o) => void (o["bos_token"] = 5)) },
    fileReplaced("chat_template.jinja", { dir: true }, "a directory", refused("TOKENIZER_INVALID")),
    fileReplaced("chat_template.jinja", "{% if %}", "not a template (parsed on first use)", typed),
  ];
}

export function generationConfigMutations(): Mutation[] {
  const edit = (label: string, e: (o: Obj) => void): Mutation => ({
    fixture: "llama", name: `generation_config.json ${label}`, expect: refused("CONFIG_INVALID"), apply: (d) => editJsonFile(d, "generation_config.json", e),
  });
  return [
    ...[1e9, -1, "x", [1, "x"], 1.5].map((v) => edit(`eos_token_id ${JSON.stringify(v)}`, (o) => void (o["eos_token_id"] = v))),
    ...([["temperature", { __float__: "NaN" }], ["temperature", -1], ["top_p", 2], ["top_k", -1], ["repetition_penalty", 0], ["max_new_tokens", 1.5]] as const).map(
      ([k, v]) => edit(`${k} ${JSON.stringify(v)}`, (o) => void (o[k] = v)),
    ),
    ...brokenJson("generation_config.json", "CONFIG_INVALID", typed),
  ];
}

/** config.json's structure: lists, rope settings, divisibility and agreement with the checkpoint. */
export function configStructureMutations(): Mutation[] {
  const bad = refused("CONFIG_INVALID");
  return [
    ...brokenJson("config.json", "CONFIG_INVALID", refused("MODEL_NOT_FOUND")),
    configEdit("llama", "architectures deleted", (c) => void delete c["architectures"], refused("ARCH_UNKNOWN")),
    configEdit("llama", 'architectures ["Nope"]', (c) => void (c["architectures"] = ["Nope"]), refused("ARCH_UNKNOWN")),
    configEdit("llama", "architectures a string", (c) => void (c["architectures"] = "LlamaForCausalLM"), bad),
    configEdit("llama", 'dtype "int4"', (c) => void (c["dtype"] = "int4"), bad),
    configEdit("llama", 'hidden_act "nonsense"', (c) => void (c["hidden_act"] = "nonsense"), bad),
    configEdit("gpt2", 'activation_function "nonsense"', (c) => void (c["activation_function"] = "nonsense"), bad),
    configEdit("llama", 'tie_word_embeddings "yes"', (c) => void (c["tie_word_embeddings"] = "yes"), bad),
    configEdit("llama", 'rope_parameters "x"', (c) => void (c["rope_parameters"] = "x"), bad),
    configEdit("llama", "rope_type nonsense", (c) => void (c["rope_parameters"] = { rope_type: "nonsense", rope_theta: 1e4 }), bad),
    configEdit("llama", "linear rope without a factor", (c) => void (c["rope_parameters"] = { rope_type: "linear", rope_theta: 1e4 }), bad),
    configEdit("llama", "llama3 rope with a NaN factor", (c) => void (c["rope_parameters"] = { rope_type: "llama3", rope_theta: 1e4, factor: 8, low_freq_factor: { __float__: "NaN" }, high_freq_factor: 4, original_max_position_embeddings: 64 }), bad),
    configEdit("llama", "yarn rope with original_max_position_embeddings 0", (c) => void (c["rope_parameters"] = { rope_type: "yarn", rope_theta: 1e4, factor: 4, original_max_position_embeddings: 0 }), bad),
    configEdit("bamba", "partial_rotary_factor giving an odd rotary dim", (c) => void (obj(c["rope_parameters"])["partial_rotary_factor"] = 0.3125), bad),
    ...ONE_PER_ARCHITECTURE.filter((f) => Array.isArray(readConfig(f.name)["layer_types"])).flatMap(({ name: f }) => [
      configEdit(f, "layer_types one short", (c) => void (c["layer_types"] = (c["layer_types"] as string[]).slice(1)), bad),
      configEdit(f, 'layer_types with "nonsense"', (c) => void ((c["layer_types"] as string[])[0] = "nonsense"), bad),
      configEdit(f, "layer_types a number", (c) => void (c["layer_types"] = 3), bad),
    ]),
    ...[[1, 9], [-1], [1.5], ["1"], "x"].map((v) => configEdit("bamba", `attn_layer_indices ${JSON.stringify(v)}`, (c) => void (c["attn_layer_indices"] = v), bad)),
    configEdit("qwen3-moe", "mlp_only_layers [5]", (c) => void (c["mlp_only_layers"] = [5]), bad),
    configEdit("mamba2", "time_step_limit [NaN, 1]", (c) => void (c["time_step_limit"] = [{ __float__: "NaN" }, 1]), bad),
    configEdit("mamba2", "time_step_limit [1, 0]", (c) => void (c["time_step_limit"] = [1, 0]), bad),
    configEdit("mamba2", "n_groups 3 (does not divide 8 heads)", (c) => void (c["n_groups"] = 3), bad),
    configEdit("mamba2", "num_heads 4 (heads × head_dim ≠ expand × hidden)", (c) => void (c["num_heads"] = 4), bad),
    configEdit("llama", "num_attention_heads 3 without head_dim", (c) => { c["num_attention_heads"] = 3; c["num_key_value_heads"] = 1; delete c["head_dim"]; }, bad),
    configEdit("llama", "num_key_value_heads 3", (c) => void (c["num_key_value_heads"] = 3), bad),
    configEdit("gpt2", "n_head 5", (c) => void (c["n_head"] = 5), bad),
    configEdit("jamba", "attn_layer_offset 2 for period 2", (c) => void (c["attn_layer_offset"] = 2), bad),
    configEdit("jamba", "num_experts_per_tok 5 of 4 experts", (c) => void (c["num_experts_per_tok"] = 5), bad),
    ...ONE_PER_ARCHITECTURE.flatMap(({ name: f }) => {
      const key = f === "gpt2" ? "n_layer" : "num_hidden_layers";
      return [-1, 1].map((d) => configEdit(f, `${key} ${d > 0 ? "one more" : "one fewer"} than the checkpoint holds`, (c) => void (c[key] = (c[key] as number) + d), bad));
    }),
    ...ONE_PER_ARCHITECTURE.map(({ name: f }) => configEdit(f, "vocab_size one more than the embedding", (c) => void (c["vocab_size"] = (c["vocab_size"] as number) + 1), bad)),
    configEdit("llama", "hidden_size 128 (embedding is 64 wide)", (c) => void (c["hidden_size"] = 128), bad),
    configEdit("qwen3", "head_dim 32 (projections are 16 per head)", (c) => void (c["head_dim"] = 32), refused("TENSOR_SHAPE")),
    configEdit("llama", "intermediate_size 256 (projections are 128)", (c) => void (c["intermediate_size"] = 256), refused("TENSOR_SHAPE")),
  ];
}
