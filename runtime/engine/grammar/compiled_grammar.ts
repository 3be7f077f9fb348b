/**
 * A grammar compiled against one vocabulary: xgrammar's per-state token masks, precomputed. Owned
 * by its GrammarCompiler's cache, which disposes it on eviction; a matcher made from it keeps its
 * own reference (a C++ shared_ptr) and outlives that. So make matchers right after compile().
 */
import { KilnError } from "../errors.ts";
import { GrammarMatcher } from "./grammar_matcher.ts";
import type { CompiledGrammarHandle } from "./xgrammar_binding.ts";
import type { XgrammarInstance } from "./xgrammar_instance.ts";

export class CompiledGrammar {
  private handle: CompiledGrammarHandle | undefined;

  constructor(
    private readonly instance: XgrammarInstance,
    handle: CompiledGrammarHandle,
    /** The cache key: grammar kind, options and canonical source. */
    readonly key: string,
    /** Ids the matchers' masks cover. */
    readonly vocabSize: number,
  ) {
    this.handle = handle;
  }

  /** A matcher at the grammar's start, for one sequence. The caller disposes it. */
  createMatcher(): GrammarMatcher {
    const compiled = this.handle;
    if (compiled === undefined) {
      throw new KilnError("INVALID_ARGUMENT", "grammar createMatcher: the compiled grammar was evicted from its compiler's cache or disposed; compile it again");
    }
    // Stop tokens come from the vocabulary; no rollback limit (-1): rollback is bounded by the matcher's own history check.
    const handle = this.instance.callHealthy("GRAMMAR_UNAVAILABLE", "grammar matcher", (binding) => new binding.GrammarMatcher(compiled, undefined, false, -1));
    return new GrammarMatcher(this.instance, handle, this.vocabSize);
  }

  /** Frees the compiled grammar's wasm memory (live matchers keep theirs); idempotent. */
  dispose(): void {
    // A broken instance's heap is not touched again: the whole instance goes when unreferenced.
    if (!this.instance.broken) this.handle?.delete();
    this.handle = undefined;
  }

  get disposed(): boolean {
    return this.handle === undefined;
  }
}
