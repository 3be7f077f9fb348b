/**
 * Prompt text into token ids without stalling the server. A prompt longer than the bound is
 * refused before any tokenizing (its length in characters already shows it cannot fit); a long
 * one that may fit is tokenized on a worker thread, so /health, streams and other requests keep
 * their turns of the event loop while a 4 MiB prompt is split into tokens. Short prompts (most)
 * are tokenized in place: a round trip to the worker would cost more than the work.
 */
import { Worker } from "node:worker_threads";
import { ERROR_CODES, KilnError } from "../engine/errors.ts";
import type { KilnTokenizer } from "../io/tokenizer.ts";
import { ApiError } from "./api_error.ts";

/** Prompts at least this long (in UTF-16 units) go to the worker. */
const OFFLOAD_CHARS = 16_384;
/** Texts waiting for the worker before new ones are refused with 503. */
const MAX_QUEUED = 64;

/** The longest spelling of any vocabulary entry, in characters (byte-level entries spell one char per byte). */
export function longestTokenChars(tokenizer: KilnTokenizer): number {
  let longest = 1;
  for (let id = 0; id < tokenizer.vocabSize; id++) longest = Math.max(longest, tokenizer.idToToken(id)?.length ?? 0);
  return longest;
}

/**
 * The default prompt-length bound: no vocabulary entry spells more than `longest` characters, so
 * a text longer than maxModelLen × longest (doubled for normalizers that drop characters) cannot
 * fit the context window whatever it tokenizes to.
 */
export function defaultMaxPromptChars(tokenizer: KilnTokenizer, maxModelLen: number): number {
  return maxModelLen * longestTokenChars(tokenizer) * 2;
}

interface WorkerReply {
  readonly id: number;
  readonly ids?: Int32Array;
  readonly error?: { readonly message: string; readonly code: string | undefined };
}

interface Waiting {
  readonly resolve: (ids: number[]) => void;
  readonly reject: (e: unknown) => void;
}

export class PromptTokenizer {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 0;

  constructor(
    readonly tokenizer: KilnTokenizer,
    /** characters of prompt text one request may carry */
    readonly maxChars: number,
    private readonly offloadChars = OFFLOAD_CHARS,
  ) {}

  /** Refuses `chars` characters of prompt text past the bound (400, before any tokenizing). */
  checkLength(chars: number, param: string): void {
    if (chars > this.maxChars) {
      throw ApiError.badRequest(
        `The prompt has ${chars} characters; this server takes at most ${this.maxChars} (--max-prompt-chars), and a longer text cannot fit the context window.`,
        param,
        "PROMPT_TOO_LONG",
      );
    }
  }

  /** Token ids of one prompt, as KilnTokenizer.encode gives them. */
  async encode(text: string, options: { readonly addSpecialTokens: boolean; readonly param: string }): Promise<number[]> {
    const [ids] = await this.encodeMany([text], options);
    return ids!;
  }

  /**
   * Token ids of each prompt. Each is checked against the bound first; when together they are
   * long, they are tokenized on the worker (many short prompts stall the loop as one long one).
   */
  async encodeMany(texts: readonly string[], options: { readonly addSpecialTokens: boolean; readonly param: string }): Promise<number[][]> {
    let total = 0;
    for (const t of texts) {
      this.checkLength(t.length, options.param);
      total += t.length;
    }
    if (total < this.offloadChars) return texts.map((t) => this.tokenizer.encode(t, { addSpecialTokens: options.addSpecialTokens }));
    if (this.waiting.size + texts.length > MAX_QUEUED) {
      throw new ApiError(503, "Too many long prompts are being tokenized; retry shortly.", "server_overloaded", null, "overloaded");
    }
    return Promise.all(texts.map((t) => this.offload(t, options.addSpecialTokens)));
  }

  private offload(text: string, addSpecialTokens: boolean): Promise<number[]> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<number[]>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, text, addSpecialTokens });
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.failAll(new KilnError("ENGINE_CLOSED", "the server is shutting down"));
    if (w) await w.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // compiled to JavaScript (build/js), the worker's module runs as it is; from TypeScript, the
    // .mjs registers tsx for it
    const entry = import.meta.url.endsWith(".js") ? "./tokenize_worker_main.js" : "./tokenize_worker.mjs";
    const w = new Worker(new URL(entry, import.meta.url), { workerData: { dir: this.tokenizer.dir } });
    w.unref();
    w.on("message", (m: WorkerReply) => {
      const waiting = this.waiting.get(m.id);
      if (!waiting) return;
      this.waiting.delete(m.id);
      if (m.ids) waiting.resolve(Array.from(m.ids));
      else waiting.reject(workerError(m.error));
    });
    const lost = (why: string): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      this.failAll(new KilnError("TOKENIZER_INVALID", `the tokenizer worker stopped: ${why}`));
    };
    w.on("error", (e) => lost(e.message));
    w.on("exit", (code) => lost(`exit code ${code}`));
    this.worker = w;
    return w;
  }

  private failAll(error: unknown): void {
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
  }
}

/** The worker's failure as the main thread would have thrown it: a KilnError keeps its code. */
function workerError(e: WorkerReply["error"]): Error {
  const message = e?.message ?? "tokenizing failed";
  const code = ERROR_CODES.find((c) => c === e?.code);
  return code === undefined ? new Error(message) : new KilnError(code, message);
}
