/**
 * The grammar state of one sequence: which tokens may come next, and the tokens taken so far.
 * One per request (per `n` choice), made by CompiledGrammar.createMatcher and used synchronously
 * each step: fillNextTokenBitmask → applyTokenBitmask on the row → sample → acceptToken.
 *
 * It holds C++ memory in a wasm heap: call dispose() when the sequence finishes, fails or is
 * aborted. xgrammar aborts (damaging its instance) when asked for a mask after termination or to
 * roll back past its history, so those are checked here first and refused with a KilnError.
 */
import { KilnError } from "../errors.ts";
import { tokenBitmaskWords } from "./token_bitmask.ts";
import type { GrammarMatcherHandle } from "./xgrammar_binding.ts";
import type { XgrammarInstance } from "./xgrammar_instance.ts";

export class GrammarMatcher {
  /** Ids the masks cover (the logits row width the compiler was made for). */
  readonly vocabSize: number;
  /** Words of a mask: ceil(vocabSize / 32). */
  readonly bitmaskWords: number;
  private handle: GrammarMatcherHandle | undefined;
  /** Tokens accepted since creation or reset and not rolled back: how far rollback may go. */
  private history = 0;

  constructor(
    private readonly instance: XgrammarInstance,
    handle: GrammarMatcherHandle,
    vocabSize: number,
  ) {
    this.handle = handle;
    this.vocabSize = vocabSize;
    this.bitmaskWords = tokenBitmaskWords(vocabSize);
  }

  /**
   * Advances past `id` when the grammar allows it and returns true; otherwise returns false and
   * the state is unchanged. Accepting a stop token where the grammar may end terminates it.
   */
  acceptToken(id: number): boolean {
    const handle = this.live("acceptToken");
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) return false;
    const accepted = this.instance.call("GRAMMAR_UNAVAILABLE", "grammar acceptToken", () => !handle.IsTerminated() && handle.AcceptToken(id, false));
    if (accepted) this.history++;
    return accepted;
  }

  /**
   * Writes which tokens may come next into `mask` ([bitmaskWords] int32, bit set = allowed; bits
   * past vocabSize clear). A stop token is allowed where the grammar may end. Throws
   * INVALID_ARGUMENT once terminated: a finished sequence has no next token.
   */
  fillNextTokenBitmask(mask: Int32Array): void {
    const handle = this.live("fillNextTokenBitmask");
    if (mask.length !== this.bitmaskWords) {
      throw new KilnError("INVALID_ARGUMENT", `grammar bitmask has ${mask.length} words; a vocabulary of ${this.vocabSize} ids needs ${this.bitmaskWords}`);
    }
    if (this.isTerminated()) {
      throw new KilnError("INVALID_ARGUMENT", "the grammar has terminated (its stop token was accepted): there is no next token to mask");
    }
    this.instance.call("GRAMMAR_UNAVAILABLE", "grammar fillNextTokenBitmask", (binding) => {
      const words = handle.GetNextTokenBitmask(this.vocabSize);
      try {
        // The view aliases wasm memory that the delete below frees: copy first.
        const view = binding.vecIntToView(words);
        if (view.length !== this.bitmaskWords) throw new Error(`xgrammar returned ${view.length} mask words, not ${this.bitmaskWords}`);
        mask.set(view);
      } finally {
        words.delete();
      }
    });
    const tail = this.vocabSize % 32;
    if (tail !== 0) mask[this.bitmaskWords - 1] = (mask[this.bitmaskWords - 1] ?? 0) & ((1 << tail) - 1);
  }

  /** True once a stop token has been accepted where the grammar may end. */
  isTerminated(): boolean {
    const handle = this.live("isTerminated");
    return this.instance.call("GRAMMAR_UNAVAILABLE", "grammar isTerminated", () => handle.IsTerminated());
  }

  /** Undoes the last `numTokens` accepted tokens (speculative decoding's rejected drafts). */
  rollback(numTokens: number): void {
    const handle = this.live("rollback");
    if (!Number.isInteger(numTokens) || numTokens < 0 || numTokens > this.history) {
      throw new KilnError("INVALID_ARGUMENT", `grammar rollback of ${numTokens} tokens: between 0 and ${this.history} (the tokens accepted since the start or the last reset) can be undone`);
    }
    if (numTokens === 0) return;
    this.instance.call("GRAMMAR_UNAVAILABLE", "grammar rollback", () => handle.Rollback(numTokens));
    this.history -= numTokens;
  }

  /** Back to the grammar's start, as if no token had been accepted. */
  reset(): void {
    const handle = this.live("reset");
    this.instance.call("GRAMMAR_UNAVAILABLE", "grammar reset", () => handle.Reset());
    this.history = 0;
  }

  /** Frees the matcher's wasm memory; idempotent. Any other call afterwards throws. */
  dispose(): void {
    this.handle?.delete();
    this.handle = undefined;
  }

  get disposed(): boolean {
    return this.handle === undefined;
  }

  private live(what: string): GrammarMatcherHandle {
    if (this.handle === undefined) throw new KilnError("INVALID_ARGUMENT", `grammar ${what}: the matcher has been disposed`);
    return this.handle;
  }
}
