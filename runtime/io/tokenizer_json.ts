/**
 * `tokenizer.json` checked before @huggingface/tokenizers builds from it. The library trusts the
 * file: it guesses a model for an unknown `model.type`, and stores the vocabulary in an array
 * indexed by token id, so one added token with id 1e9 makes it walk a billion empty slots. Here
 * every id must be a safe integer inside the id space the file itself declares (vocabulary entries
 * plus added tokens), the model type must be one HF defines, and its vocabulary (and BPE merges)
 * must have the shape that type has. Failures are TOKENIZER_INVALID naming the file and the field.
 */
import { KilnError } from "../engine/errors.ts";

type JsonRecord = Readonly<Record<string, unknown>>;

/** The model types HF tokenizers defines (tokenizers/src/models/mod.rs). */
const MODEL_TYPES = ["BPE", "WordPiece", "WordLevel", "Unigram"] as const;
type ModelType = (typeof MODEL_TYPES)[number];

/** The file as the library should see it: checked, with HF's default (no added tokens) filled in. */
export function checkTokenizerJson(path: string, json: JsonRecord): JsonRecord {
  const invalid = (field: string, problem: string): KilnError =>
    new KilnError("TOKENIZER_INVALID", `${path}: "${field}" ${problem}`);
  const model = json["model"];
  if (!isRecord(model)) throw invalid("model", "is missing or not an object");
  const type = modelType(model, invalid);
  const added = json["added_tokens"] ?? [];
  if (!Array.isArray(added)) throw invalid("added_tokens", "is not a list");
  const addedTokens: readonly unknown[] = added;
  const vocabSize = checkVocab(model, type, invalid, addedTokens.length);
  // Ids run over the vocabulary and then the added tokens; none can lie beyond both.
  const idLimit = vocabSize + addedTokens.length;
  addedTokens.forEach((t, i) => {
    if (!isRecord(t)) throw invalid(`added_tokens[${i}]`, "is not an object");
    if (typeof t["content"] !== "string") throw invalid(`added_tokens[${i}].content`, "is not a string");
    if (!isId(t["id"], idLimit)) {
      throw invalid(`added_tokens[${i}].id`, `is ${JSON.stringify(t["id"])}; ids are integers in [0, ${idLimit}) for ${vocabSize} vocabulary entries and ${addedTokens.length} added tokens`);
    }
  });
  return { ...json, added_tokens: addedTokens };
}

function modelType(model: JsonRecord, invalid: (field: string, problem: string) => KilnError): ModelType | undefined {
  const type = model["type"];
  // Files from before `type` was written leave the library to infer it from the fields.
  if (type === undefined) return undefined;
  const known = MODEL_TYPES.find((t) => t === type);
  if (known === undefined) throw invalid("model.type", `is ${JSON.stringify(type)}; expected one of ${MODEL_TYPES.join(", ")}`);
  return known;
}

/** The vocabulary's entry count, after checking its shape for `type` and every id in it. */
function checkVocab(
  model: JsonRecord,
  type: ModelType | undefined,
  invalid: (field: string, problem: string) => KilnError,
  numAdded: number,
): number {
  const vocab = model["vocab"];
  if (type === "Unigram" || (type === undefined && Array.isArray(vocab))) {
    if (!Array.isArray(vocab)) throw invalid("model.vocab", "is missing or not a list of [piece, score] pairs");
    const pieces: readonly unknown[] = vocab;
    pieces.forEach((p, i) => {
      if (!(Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "number" && Number.isFinite(p[1]))) {
        throw invalid(`model.vocab[${i}]`, "is not a [piece, score] pair with a finite score");
      }
    });
    if (pieces.length === 0) throw invalid("model.vocab", "is empty");
    const unk = model["unk_id"];
    if (unk !== undefined && unk !== null && !isId(unk, pieces.length)) throw invalid("model.unk_id", `is ${JSON.stringify(unk)}, not an index into the ${pieces.length}-entry vocab`);
    return pieces.length;
  }
  if (!isRecord(vocab)) throw invalid("model.vocab", "is missing or not an object of token → id");
  const entries = Object.entries(vocab);
  const limit = entries.length + numAdded;
  for (const [token, id] of entries) {
    if (!isId(id, limit)) throw invalid(`model.vocab["${token}"]`, `is ${JSON.stringify(id)}; ids are integers in [0, ${limit})`);
  }
  if (type === "BPE") checkMerges(model["merges"], invalid);
  return entries.length;
}

/** BPE merges: "a b" strings (older files) or ["a", "b"] pairs. */
function checkMerges(merges: unknown, invalid: (field: string, problem: string) => KilnError): void {
  if (!Array.isArray(merges)) throw invalid("model.merges", "is missing or not a list");
  const list: readonly unknown[] = merges;
  list.forEach((m, i) => {
    const pair = Array.isArray(m) && m.length === 2 && m.every((x: unknown) => typeof x === "string");
    if (!(pair || (typeof m === "string" && m.includes(" ")))) throw invalid(`model.merges[${i}]`, `is ${JSON.stringify(m)}, not a "a b" string or ["a", "b"] pair`);
  });
}

function isId(v: unknown, limit: number): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v < limit;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
