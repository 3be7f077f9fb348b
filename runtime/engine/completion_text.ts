/**
 * The text of one completion as its tokens arrive: incremental detokenization (never splitting
 * a multi-byte character), stop strings, and the part safe to stream now. As in vLLM, a token
 * that ends generation as a stop token contributes no text unless includeStopStrInOutput.
 */
import { IncrementalDetokenizer, type TokenDecoder } from "../io/detokenizer.ts";
import type { SamplingParams } from "./sampling_params.ts";
import { findStop, partialStopLength } from "./stop_checker.ts";

export interface TokenText {
  readonly tokenId: number;
  /** the token ended generation as a stop token */
  readonly stoppedByToken: boolean;
  /** generation ends with this token (for whatever reason) */
  readonly last: boolean;
  /** enough tokens are out (minTokens) for stop strings to count */
  readonly checkStops: boolean;
}

export class CompletionText {
  private readonly detok: IncrementalDetokenizer | undefined;
  private fullText = "";
  private emitted = 0;
  private stopped = false;

  constructor(
    decoder: TokenDecoder | undefined,
    prompt: readonly number[],
    private readonly params: SamplingParams,
  ) {
    this.detok =
      decoder === undefined ? undefined : new IncrementalDetokenizer(decoder, { skipSpecialTokens: params.skipSpecialTokens, context: prompt });
  }

  /** All the text so far (cut at a stop string once one is found). */
  get text(): string {
    return this.fullText;
  }

  /** Adds a token's text; returns the stop string it completes, if any (generation must then end). */
  push(t: TokenText): string | undefined {
    if (this.detok === undefined || this.stopped) return undefined;
    const prev = this.fullText.length;
    if (!t.stoppedByToken || this.params.includeStopStrInOutput) this.fullText += this.detok.push(t.tokenId);
    if (t.last) this.fullText += this.detok.flush();
    if (!t.checkStops || this.params.stop.length === 0) return undefined;
    const match = findStop(this.fullText, prev, this.params.stop, this.params.includeStopStrInOutput);
    if (match === undefined) return undefined;
    this.fullText = this.fullText.slice(0, match.cutAt);
    this.stopped = true;
    return match.stop;
  }

  /** The next piece of text to stream: everything once finished, else all but a possible stop-string start. */
  takeDelta(finished: boolean): string {
    const hold = finished || this.stopped ? 0 : partialStopLength(this.fullText, this.params.stop);
    const end = Math.max(this.emitted, this.fullText.length - hold);
    const delta = this.fullText.slice(this.emitted, end);
    this.emitted = end;
    return delta;
  }
}
