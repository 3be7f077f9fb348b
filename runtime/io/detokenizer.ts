/**
 * Streaming detokenization: feed generated ids one at a time, get back only the new text.
 *
 * Decoding a single token on its own is wrong in two ways: a byte-level token may hold part of a
 * multi-byte UTF-8 character (decoding to U+FFFD), and SentencePiece-style decoders drop the
 * leading space of the first token they see. So each step decodes a short window that starts at
 * the previous emission's tokens (`prefixOffset`), and returns the part past the text those
 * tokens already produced (`readOffset`). While the decoded window ends in U+FFFD the text is
 * held back, since the next token may complete the character. The deltas concatenate to the
 * same string as decoding all ids at once.
 */

export interface TokenDecoder {
  decode(ids: readonly number[], options?: { readonly skipSpecialTokens?: boolean }): string;
}

export interface DetokenizerOptions {
  readonly skipSpecialTokens?: boolean;
  /** Ids that precede the stream (e.g. the prompt): decoded as context, never emitted. */
  readonly context?: readonly number[];
}

/** Context tokens kept before the stream: enough to settle leading-space and byte merging. */
const CONTEXT_TOKENS = 6;
const REPLACEMENT_CHAR = "\uFFFD";

export class IncrementalDetokenizer {
  private readonly decoder: TokenDecoder;
  private readonly skipSpecialTokens: boolean;
  private readonly ids: number[];
  /** Start of the window decoded each step. */
  private prefixOffset: number;
  /** End of the ids whose text has been emitted. */
  private readOffset: number;
  private emitted = "";

  constructor(decoder: TokenDecoder, options: DetokenizerOptions = {}) {
    this.decoder = decoder;
    this.skipSpecialTokens = options.skipSpecialTokens ?? false;
    this.ids = [...(options.context ?? []).slice(-CONTEXT_TOKENS)];
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** Adds one id; returns the text it completes ("" while a character is still partial). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    if (full.length <= prefix.length || full.endsWith(REPLACEMENT_CHAR)) return "";
    return this.emit(full.slice(prefix.length));
  }

  /** Emits whatever is held back (at the end of a stream a trailing U+FFFD is real output). */
  flush(): string {
    const prefix = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.ids.slice(this.prefixOffset));
    return full.length > prefix.length ? this.emit(full.slice(prefix.length)) : "";
  }

  private emit(delta: string): string {
    // Ids before the new window are never decoded again: drop them so a long stream stays O(1).
    this.ids.splice(0, this.readOffset);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    this.emitted += delta;
    return delta;
  }

  private decode(ids: readonly number[]): string {
    return ids.length === 0 ? "" : this.decoder.decode(ids, { skipSpecialTokens: this.skipSpecialTokens });
  }
}
