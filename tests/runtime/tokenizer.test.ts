import fs from "node:fs";
import os from "node:os";
import nodePath from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IncrementalDetokenizer } from "../../runtime/io/detokenizer.ts";
import { isKilnError, type ErrorCode } from "../../runtime/engine/errors.ts";
import { SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { KilnTokenizer } from "../../runtime/io/tokenizer.ts";

const FIXTURES = nodePath.resolve(import.meta.dirname, "../fixtures");
const FORTUNE = nodePath.resolve(import.meta.dirname, "../../assets/fortune-llama");
const tmpRoot = fs.mkdtempSync(nodePath.join(os.tmpdir(), "kiln-tokenizer-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

interface FortuneReference {
  readonly prompt: string;
  readonly greedy: string;
}
const reference: readonly FortuneReference[] = JSON.parse(fs.readFileSync(nodePath.join(FORTUNE, "reference.json"), "utf8"));
const refTensors = SafetensorsFile.open(nodePath.join(FORTUNE, "reference.safetensors"));
const refIds = (name: string): number[] => Array.from(refTensors.readI32(name));
afterAll(() => refTensors.close());

const fortune = KilnTokenizer.load(FORTUNE);

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

let dirCount = 0;
/** A copy of a tokenizer folder with some files replaced (undefined removes a file). */
function variantOf(src: string, changes: Readonly<Record<string, string | undefined>>): string {
  const dir = nodePath.join(tmpRoot, String(dirCount++));
  fs.mkdirSync(dir);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]) {
    if (fs.existsSync(nodePath.join(src, f))) fs.copyFileSync(nodePath.join(src, f), nodePath.join(dir, f));
  }
  for (const [name, body] of Object.entries(changes)) {
    if (body === undefined) fs.rmSync(nodePath.join(dir, name));
    else fs.writeFileSync(nodePath.join(dir, name), body);
  }
  return dir;
}

function editJson(path: string, edit: (o: Record<string, unknown>) => void): string {
  const o: Record<string, unknown> = JSON.parse(fs.readFileSync(path, "utf8"));
  edit(o);
  return JSON.stringify(o);
}

describe("KilnTokenizer on the fortune model", () => {
  it("encodes the reference prompts to exactly the ids HF produced (BOS included)", () => {
    reference.forEach((r, k) => {
      expect(fortune.encode(r.prompt), r.prompt).toEqual(refIds(`prompt_${k}`));
    });
  });

  it("adds BOS once with special tokens and not at all without", () => {
    const ids = fortune.encode("The secret of life is");
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(fortune.encode("The secret of life is", { addSpecialTokens: false })).toEqual(ids.slice(1));
  });

  it("decodes the reference greedy tokens to HF's text", () => {
    reference.forEach((r, k) => {
      expect(fortune.decode(refIds(`greedy_tokens_${k}`))).toBe(r.greedy);
    });
  });

  it("exposes special ids, vocabulary size and token strings", () => {
    expect(fortune.bosTokenId).toBe(1);
    expect(fortune.eosTokenId).toBe(2);
    expect(fortune.vocabSize).toBe(2048);
    expect(fortune.idToToken(1)).toBe("<|bos|>");
    expect(fortune.tokenToId("<|eos|>")).toBe(2);
    expect(fortune.idToToken(99999)).toBeUndefined();
  });

  it("skips special tokens on request and rejects ids outside the vocabulary", () => {
    const ids = fortune.encode("Never trust");
    expect(fortune.decode(ids)).toBe("<|bos|>Never trust");
    expect(fortune.decode(ids, { skipSpecialTokens: true })).toBe("Never trust");
    expect(fortune.decode([])).toBe("");
    expectKilnError(() => fortune.decode([5000]), "INVALID_ARGUMENT", "5000");
  });

  it("keeps spaces before punctuation, as transformers 5 does (no clean-up)", () => {
    const ids = fortune.encode("a , b .", { addSpecialTokens: false });
    expect(fortune.decode(ids)).toBe("a , b .");
  });
});

describe("KilnTokenizer BOS policy", () => {
  const tokJson = nodePath.join(FORTUNE, "tokenizer.json");
  const noPostProcessor = editJson(tokJson, (o) => {
    o["post_processor"] = null;
  });

  it("adds BOS itself when add_bos_token is set and the post-processor does not add it", () => {
    const tok = KilnTokenizer.load(variantOf(FORTUNE, { "tokenizer.json": noPostProcessor }));
    expect(tok.encode("You will")).toEqual(refIds("prompt_3"));
  });

  it("adds no BOS when neither the config nor the post-processor asks for one", () => {
    const config = editJson(nodePath.join(FORTUNE, "tokenizer_config.json"), (o) => {
      delete o["add_bos_token"];
    });
    const tok = KilnTokenizer.load(variantOf(FORTUNE, { "tokenizer.json": noPostProcessor, "tokenizer_config.json": config }));
    expect(tok.encode("You will")).toEqual(refIds("prompt_3").slice(1));
  });

  it("names the missing file", () => {
    const noJson = variantOf(FORTUNE, { "tokenizer.json": undefined });
    expectKilnError(() => KilnTokenizer.load(noJson), "TOKENIZER_INVALID", nodePath.join(noJson, "tokenizer.json"));
    const noConfig = variantOf(FORTUNE, { "tokenizer_config.json": undefined });
    expectKilnError(() => KilnTokenizer.load(noConfig), "TOKENIZER_INVALID", nodePath.join(noConfig, "tokenizer_config.json"));
  });
});

/**
 * tokenizer.json as a hostile file: the library guessed a model for an unknown type, and built a
 * dense array up to the largest token id (an added token with id 1e9 took 54 s).
 */
describe("KilnTokenizer refuses a malformed tokenizer.json", () => {
  const tokJson = nodePath.join(FIXTURES, "llama", "tokenizer.json");
  const refused = (edit: (o: Record<string, unknown>) => void, ...parts: string[]): void => {
    const dir = variantOf(nodePath.join(FIXTURES, "llama"), { "tokenizer.json": editJson(tokJson, edit) });
    const start = performance.now();
    expectKilnError(() => KilnTokenizer.load(dir), "TOKENIZER_INVALID", nodePath.join(dir, "tokenizer.json"), ...parts);
    expect(performance.now() - start, "refused within 2 s").toBeLessThan(2000);
  };
  const model = (o: Record<string, unknown>): Record<string, unknown> => o["model"] as Record<string, unknown>;
  const firstAdded = (o: Record<string, unknown>): Record<string, unknown> => (o["added_tokens"] as Record<string, unknown>[])[0]!;

  it("an unknown model type", () => refused((o) => void (model(o)["type"] = "Nonsense"), '"model.type"', "Nonsense"));
  it("an added token with an absurd id", () => refused((o) => void (firstAdded(o)["id"] = 1e9), '"added_tokens[0].id"', "1000000000"));
  it("an added token with a negative or fractional id", () => {
    refused((o) => void (firstAdded(o)["id"] = -1), '"added_tokens[0].id"');
    refused((o) => void (firstAdded(o)["id"] = 1.5), '"added_tokens[0].id"');
  });
  it("a vocabulary id out of range", () => refused((o) => void ((model(o)["vocab"] as Record<string, unknown>)["a"] = 1e9), "model.vocab"));
  it("a missing vocabulary or merges", () => {
    refused((o) => void delete model(o)["vocab"], '"model.vocab"');
    refused((o) => void delete model(o)["merges"], '"model.merges"');
    refused((o) => void delete o["model"], '"model"');
  });
  it("a component type the library does not know, named with the library's message", () => {
    refused((o) => void (o["normalizer"] = { type: "Nonsense" }), "Nonsense");
    refused((o) => void (o["pre_tokenizer"] = { type: "Nonsense" }), "Nonsense");
  });
  it("a directory where a file should be", () => {
    const dir = variantOf(nodePath.join(FIXTURES, "llama"), { "chat_template.jinja": undefined });
    fs.mkdirSync(nodePath.join(dir, "chat_template.jinja"));
    expectKilnError(() => KilnTokenizer.load(dir), "TOKENIZER_INVALID", nodePath.join(dir, "chat_template.jinja"));
  });
});

describe("applyChatTemplate", () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "hi" },
  ];
  // Expected strings rendered by Python jinja2 3.1.6 with transformers' settings:
  // ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template).render(...)
  const withPrompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
  const withoutPrompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n";

  it("renders the fixtures' chat_template.jinja", () => {
    const tok = KilnTokenizer.load(nodePath.join(FIXTURES, "tokenizer-512"));
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(withPrompt);
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(withoutPrompt);
    // and the rendered prompt tokenizes with the special tokens intact
    const ids = tok.encode(withPrompt, { addSpecialTokens: false });
    expect(ids[0]).toBe(3);
    expect(ids.filter((id) => id === 4).length).toBe(2);
  });

  it("falls back to tokenizer_config.json's chat_template and passes special tokens", () => {
    const src = nodePath.join(FIXTURES, "tokenizer-512");
    const config = editJson(nodePath.join(src, "tokenizer_config.json"), (o) => {
      o["chat_template"] = "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}";
    });
    const tok = KilnTokenizer.load(variantOf(src, { "chat_template.jinja": undefined, "tokenizer_config.json": config }));
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe("<|bos|>[system]Be brief.<|eos|>[user]hi<|eos|>");
  });

  it("fails with TOKENIZER_INVALID when there is no template, and INVALID_ARGUMENT when it raises", () => {
    const none = KilnTokenizer.load(variantOf(nodePath.join(FIXTURES, "tokenizer-512"), { "chat_template.jinja": undefined }));
    expect(none.chatTemplate).toBeUndefined();
    expectKilnError(() => none.applyChatTemplate(messages, { addGenerationPrompt: true }), "TOKENIZER_INVALID", "chat template");
    const strict = KilnTokenizer.load(
      variantOf(nodePath.join(FIXTURES, "tokenizer-512"), {
        "chat_template.jinja": "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok",
      }),
    );
    expectKilnError(() => strict.applyChatTemplate(messages, { addGenerationPrompt: true }), "INVALID_ARGUMENT", "chat_template.jinja", "user");
  });
});

describe("IncrementalDetokenizer", () => {
  const stream = (ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string[] => {
    const detok = new IncrementalDetokenizer(fortune, opts);
    const deltas = ids.map((id) => detok.push(id));
    deltas.push(detok.flush());
    expect(detok.text).toBe(deltas.join(""));
    return deltas;
  };

  it("never emits a partial UTF-8 character and matches a full decode", () => {
    const text = "café — 日本 says “naïve” 🙂 ok";
    const ids = fortune.encode(text, { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(Array.from(text).length); // multi-byte characters span several tokens
    const deltas = stream(ids);
    for (const d of deltas) expect(d).not.toContain("\uFFFD");
    expect(deltas.join("")).toBe(fortune.decode(ids));
    expect(deltas.join("")).toBe(text);
    expect(deltas.filter((d) => d === "").length).toBeGreaterThan(1); // some tokens were held back
  });

  it("handles special tokens both kept and skipped", () => {
    const ids = fortune.encode("You will be sorry, café");
    expect(stream(ids).join("")).toBe(fortune.decode(ids));
    expect(stream(ids, { skipSpecialTokens: true }).join("")).toBe("You will be sorry, café");
  });

  it("streams the reference greedy tokens to HF's text", () => {
    reference.forEach((r, k) => expect(stream(refIds(`greedy_tokens_${k}`)).join("")).toBe(r.greedy));
  });

  it("emits a dangling partial character only on flush, as the full decode would", () => {
    const ids = fortune.encode("日", { addSpecialTokens: false });
    const detok = new IncrementalDetokenizer(fortune);
    expect(detok.push(ids[0] ?? 0)).toBe("");
    expect(detok.flush()).toBe(fortune.decode(ids.slice(0, 1)));
  });

  it("uses prompt context without emitting it", () => {
    const prompt = fortune.encode("The secret of life is");
    const detok = new IncrementalDetokenizer(fortune, { context: prompt });
    const out = refIds("greedy_tokens_0").map((id) => detok.push(id)).join("") + detok.flush();
    expect(out).toBe(reference[0]?.greedy);
  });
});
