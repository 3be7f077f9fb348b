/**
 * A constraint on which tokens a sequence may produce next: structured outputs (a JSON schema,
 * a regex, a grammar, a choice) are one, run by a grammar matcher. The engine knows only this
 * contract: before a sequence's token is drawn, the constraint masks the logits row (disallowed
 * tokens to -inf); the drawn token is then accepted, which advances it; when it has terminated,
 * the sequence stops. Each sequence owns its constraint (n > 1 gives each completion one), and
 * it survives preemption: a recomputed sequence keeps its output tokens, and so its state.
 */
export interface TokenConstraint {
  /** sets every token the constraint does not allow next to -Infinity; row [vocab] */
  maskLogits(row: Float32Array): void;
  /** advances past `tokenId`; false when the token was not allowed */
  acceptToken(tokenId: number): boolean;
  /** the constrained text is complete: the sequence stops */
  readonly terminated: boolean;
  /** frees what the constraint holds (a matcher's native memory); called when its sequence ends */
  dispose(): void;
  /**
   * The allowed next tokens as a bitmask over the logits row (bit id%32 of word id/32 set =
   * allowed; ceil(vocab/32) words), for a sampler on the device to apply as maskLogits would.
   * A constraint without it samples on the host.
   */
  deviceBitmask?(): Int32Array;
}

/** Makes one constraint per sequence of a request. */
export type TokenConstraintFactory = () => TokenConstraint;
