/**
 * One instantiated xgrammar WebAssembly module, and the rule for calling into it.
 *
 * xgrammar's web build reports every failure (a schema it cannot parse, an unclosed regex class,
 * a rollback past its history) by printing "[FATAL] file:line: message" to stderr and calling
 * emscripten's abort(), which throws a bare `RuntimeError: Aborted()`. The JS exception unwinds the
 * wasm frames without running their epilogues, so each abort leaks that call's shadow stack: after
 * some 70 aborts the stack has grown into static data and the instance silently corrupts itself
 * (measured: first the messages vanish, then valid grammars fail). Hence:
 * - an instance that has thrown is `broken`, and callers move new work to a fresh instance;
 * - user input is parsed first on a throwaway instance (see Xgrammar.validate), so the instance
 *   that holds a vocabulary only ever sees input that already parsed;
 * - the message xgrammar printed is read back from the captured console and becomes the error's.
 */
import { KilnError, type ErrorCode } from "../errors.ts";
import type { XgrammarBinding } from "./xgrammar_binding.ts";

/** The console lines of one instance, kept only while a call is running. */
export class CapturedConsole {
  private lines: string[] | undefined;

  write(line: string): void {
    // Lines outside a call (none are expected) have no error to attach to: drop them rather than
    // print xgrammar's warnings into the server log.
    this.lines?.push(line);
  }

  begin(): void {
    this.lines = [];
  }

  end(): readonly string[] {
    const lines = this.lines ?? [];
    this.lines = undefined;
    return lines;
  }
}

export class XgrammarInstance {
  private brokenBy: string | undefined;

  constructor(
    private readonly binding: XgrammarBinding,
    private readonly console: CapturedConsole,
  ) {}

  /** Set once a call into this instance has thrown; new work must go to a fresh instance. */
  get broken(): boolean {
    return this.brokenBy !== undefined;
  }

  /**
   * Runs `fn` against the module. A throw marks the instance broken and becomes a KilnError with
   * `code`, saying `what` failed and why (xgrammar's own text when it printed one).
   */
  call<T>(code: ErrorCode, what: string, fn: (binding: XgrammarBinding) => T): T {
    this.console.begin();
    try {
      const result = fn(this.binding);
      this.console.end();
      return result;
    } catch (e) {
      const why = xgrammarMessage(this.console.end(), e);
      this.brokenBy ??= `${what}: ${why}`;
      throw new KilnError(code, `${what}: ${why}`, { cause: e });
    }
  }

  /** Like `call`, but refuses a broken instance: for work that must not land on a damaged heap. */
  callHealthy<T>(code: ErrorCode, what: string, fn: (binding: XgrammarBinding) => T): T {
    if (this.brokenBy !== undefined) {
      throw new KilnError("GRAMMAR_UNAVAILABLE", `${what}: the xgrammar instance is unusable since an earlier failure (${this.brokenBy})`);
    }
    return this.call(code, what, fn);
  }
}

/**
 * "[FATAL] /path/json_schema_converter.cc:902: Unsupported type \"foo\"" → "Unsupported type \"foo\"".
 * The CHECK macro's "Check failed: (cond) is false: " prefix is dropped too: the condition is C++
 * source, the rest is the explanation.
 */
export function xgrammarMessage(lines: readonly string[], error: unknown): string {
  const fatal = lines.findLast((l) => l.startsWith("[FATAL]"));
  if (fatal !== undefined) {
    const text = fatal.replace(/^\[FATAL\] [^:]*:\d+: /, "");
    const check = /^Check failed: \(.*?\) is false: (.*)$/s.exec(text);
    return (check?.[1] ?? text).trim();
  }
  return error instanceof Error ? error.message : String(error);
}
