/**
 * Deprecations, in the three stages of docs/deprecation.md: "warn" (still on, one warning per
 * process per name), "opt-in" (off unless KILN_ALLOW_DEPRECATED names it, then one warning) and
 * "removed" (a DEPRECATED error naming the replacement). Call `deprecate()` where the old thing is
 * used; moving it to the next stage is a one-word edit of its `stage`.
 *
 * "Once per process" needs a record of what has warned: `Deprecations` holds it, and
 * `processDeprecations` is the one `deprecate()` uses. Tests build their own `Deprecations` (or
 * call `processDeprecations.reset()`) and inject `env` and `warn`.
 */
import { assertNever } from "../../compiler/ir.ts";
import { KilnError } from "./errors.ts";

export const DEPRECATION_STAGES = ["warn", "opt-in", "removed"] as const;
export type DeprecationStage = (typeof DEPRECATION_STAGES)[number];

/** The environment variable that re-enables stage-"opt-in" deprecations: `name[,name…]`. */
export const ALLOW_DEPRECATED_ENV = "KILN_ALLOW_DEPRECATED";

export interface Deprecation {
  /** stable id, the word a user puts in KILN_ALLOW_DEPRECATED, e.g. `artifact-format-2` (no commas or spaces) */
  readonly name: string;
  /** what the user wrote or relies on, as they would recognise it: "`--foo`", "artifact format 2" */
  readonly what: string;
  /** what to use instead: "`--bar`", "recompile with `kiln compile`" */
  readonly replacement: string;
  /** the kiln version that deprecated it, e.g. "0.2" */
  readonly since: string;
  /** the kiln version that removes it */
  readonly removeIn: string;
  readonly stage: DeprecationStage;
}

export interface DeprecateOptions {
  /** where KILN_ALLOW_DEPRECATED is read (default: process.env) */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** receives the warning's text, without the `kiln: deprecated: ` prefix (default: one line to stderr) */
  readonly warn?: (message: string) => void;
}

/** The default `warn`: one line on stderr. */
export function warnToStderr(message: string): void {
  process.stderr.write(`kiln: deprecated: ${message}\n`);
}

/** The names KILN_ALLOW_DEPRECATED lists: comma-separated, blanks around names and empty entries ignored. */
export function allowedDeprecations(env: Readonly<Record<string, string | undefined>>): ReadonlySet<string> {
  const raw = env[ALLOW_DEPRECATED_ENV] ?? "";
  return new Set(raw.split(",").map((s) => s.trim()).filter((s) => s !== ""));
}

/** The warning of a deprecation still in use (stage "warn", or "opt-in" re-enabled). */
export function deprecationWarning(d: Deprecation): string {
  const optIn = `${ALLOW_DEPRECATED_ENV}=${d.name}`;
  const when =
    d.stage === "warn"
      ? `is deprecated since kiln ${d.since} and will be removed in kiln ${d.removeIn}; a later release turns it off unless ${optIn} is set`
      : `is deprecated since kiln ${d.since}, kept only because ${optIn} is set, and will be removed in kiln ${d.removeIn}`;
  return `${d.what} ${when}; use ${d.replacement} instead`;
}

/** The error of a deprecation that is off (stage "opt-in" without the opt-in) or gone. */
export function deprecationError(d: Deprecation): KilnError {
  const message =
    d.stage === "removed"
      ? `${d.what} was removed in kiln ${d.removeIn} (deprecated since kiln ${d.since}); use ${d.replacement} instead`
      : `${d.what} is deprecated since kiln ${d.since} and off by default; use ${d.replacement} instead, ` +
        `or set ${ALLOW_DEPRECATED_ENV}=${d.name} to keep it until kiln ${d.removeIn}`;
  return new KilnError("DEPRECATED", message);
}

/** A record of the deprecations that have warned, so each warns once. */
export class Deprecations {
  private readonly warned = new Set<string>();

  /** Warns (once per name) or throws DEPRECATED, as `d.stage` says. */
  use(d: Deprecation, opts: DeprecateOptions = {}): void {
    checkName(d.name);
    switch (d.stage) {
      case "warn":
        return this.warnOnce(d, opts);
      case "opt-in":
        if (!allowedDeprecations(opts.env ?? process.env).has(d.name)) throw deprecationError(d);
        return this.warnOnce(d, opts);
      case "removed":
        throw deprecationError(d);
      default:
        return assertNever(d.stage, "deprecation stage");
    }
  }

  /** Whether `name` has warned since this record was made or reset. */
  hasWarned(name: string): boolean {
    return this.warned.has(name);
  }

  /** Forgets every warning, so each name warns again (tests). */
  reset(): void {
    this.warned.clear();
  }

  private warnOnce(d: Deprecation, opts: DeprecateOptions): void {
    if (this.warned.has(d.name)) return;
    this.warned.add(d.name);
    (opts.warn ?? warnToStderr)(deprecationWarning(d));
  }
}

/** The process's record: what `deprecate()` warns once against. */
export const processDeprecations = new Deprecations();

/** `processDeprecations.use(d, opts)`: warns once per process, or throws DEPRECATED. */
export function deprecate(d: Deprecation, opts?: DeprecateOptions): void {
  processDeprecations.use(d, opts);
}

// A name must survive the comma-separated KILN_ALLOW_DEPRECATED list; a bad one is a bug in kiln.
function checkName(name: string): void {
  if (name === "" || /[\s,]/.test(name)) throw new Error(`deprecation name ${JSON.stringify(name)} must be non-empty, without commas or spaces`);
}
