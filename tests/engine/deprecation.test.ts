/**
 * The three deprecation stages of docs/deprecation.md: "warn" warns once per name, "opt-in" throws
 * DEPRECATED unless KILN_ALLOW_DEPRECATED names it (then warns once), "removed" always throws.
 * Every test injects its env and warn function; the process's record is reset around each.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  allowedDeprecations,
  deprecate,
  Deprecations,
  processDeprecations,
  type Deprecation,
  type DeprecationStage,
} from "../../runtime/engine/deprecation.ts";
import { isKilnError, type KilnError } from "../../runtime/engine/errors.ts";

const OLD_FLAG: Deprecation = {
  name: "old-flag",
  what: "`--old-flag`",
  replacement: "`--new-flag`",
  since: "0.2",
  removeIn: "0.4",
  stage: "warn",
};
const OLD_ENV: Deprecation = {
  name: "old-env",
  what: "KILN_OLD_ENV",
  replacement: "KILN_NEW_ENV",
  since: "0.3",
  removeIn: "0.5",
  stage: "warn",
};
const at = (d: Deprecation, stage: DeprecationStage): Deprecation => ({ ...d, stage });

/** A warn function that records what it was given. */
function recorder(): { warn: (m: string) => void; messages: string[] } {
  const messages: string[] = [];
  return { warn: (m) => messages.push(m), messages };
}

function thrown(fn: () => void): KilnError {
  try {
    fn();
  } catch (e) {
    if (isKilnError(e, "DEPRECATED")) return e;
    throw e;
  }
  throw new Error("expected a DEPRECATED error, nothing was thrown");
}

beforeEach(() => processDeprecations.reset());
afterEach(() => processDeprecations.reset());

describe("stage warn", () => {
  it("warns once per name: a second use is silent, another name warns again", () => {
    const { warn, messages } = recorder();
    deprecate(OLD_FLAG, { warn, env: {} });
    deprecate(OLD_FLAG, { warn, env: {} });
    expect(messages).toHaveLength(1);
    expect(processDeprecations.hasWarned("old-flag")).toBe(true);
    deprecate(OLD_ENV, { warn, env: {} });
    expect(messages).toHaveLength(2);
    deprecate(OLD_ENV, { warn, env: {} });
    expect(messages).toHaveLength(2);
  });

  it("names what, the replacement, since, removeIn and the opt-in that keeps it later", () => {
    const { warn, messages } = recorder();
    deprecate(OLD_FLAG, { warn });
    const [m] = messages;
    expect(m).toContain("`--old-flag`");
    expect(m).toContain("use `--new-flag` instead");
    expect(m).toContain("since kiln 0.2");
    expect(m).toContain("removed in kiln 0.4");
    expect(m).toContain("KILN_ALLOW_DEPRECATED=old-flag");
    expect(m).not.toContain("\n");
  });

  it("warns again after a reset, and a separate record keeps its own count", () => {
    const { warn, messages } = recorder();
    deprecate(OLD_FLAG, { warn });
    processDeprecations.reset();
    expect(processDeprecations.hasWarned("old-flag")).toBe(false);
    deprecate(OLD_FLAG, { warn });
    const own = new Deprecations();
    own.use(OLD_FLAG, { warn });
    own.use(OLD_FLAG, { warn });
    expect(messages).toHaveLength(3);
  });
});

describe("stage opt-in", () => {
  const off = at(OLD_FLAG, "opt-in");

  it("throws DEPRECATED naming the replacement and the opt-in when KILN_ALLOW_DEPRECATED is unset or lists others", () => {
    const { warn, messages } = recorder();
    for (const env of [{}, { KILN_ALLOW_DEPRECATED: "" }, { KILN_ALLOW_DEPRECATED: "old-env,old-flag-2" }]) {
      const e = thrown(() => deprecate(off, { warn, env }));
      expect(e.code).toBe("DEPRECATED");
      expect(e.message).toContain("`--old-flag`");
      expect(e.message).toContain("use `--new-flag` instead");
      expect(e.message).toContain("KILN_ALLOW_DEPRECATED=old-flag");
      expect(e.message).toContain("until kiln 0.4");
    }
    expect(messages).toEqual([]);
    expect(processDeprecations.hasWarned("old-flag")).toBe(false);
  });

  it("warns once when KILN_ALLOW_DEPRECATED lists it among several names", () => {
    const { warn, messages } = recorder();
    const env = { KILN_ALLOW_DEPRECATED: "old-env, old-flag ,,something-else" };
    deprecate(off, { warn, env });
    deprecate(off, { warn, env });
    deprecate(at(OLD_ENV, "opt-in"), { warn, env });
    expect(messages).toHaveLength(2);
    expect(messages[0]).toContain("`--old-flag`");
    expect(messages[0]).toContain("kept only because KILN_ALLOW_DEPRECATED=old-flag is set");
    expect(messages[0]).toContain("removed in kiln 0.4");
    expect(messages[0]).toContain("use `--new-flag` instead");
  });

  it("parses the list: comma-separated, trimmed, empty entries dropped, names matched exactly", () => {
    expect([...allowedDeprecations({ KILN_ALLOW_DEPRECATED: " a,b ,, c " })]).toEqual(["a", "b", "c"]);
    expect(allowedDeprecations({}).size).toBe(0);
    expect(() => deprecate(off, { env: { KILN_ALLOW_DEPRECATED: "OLD-FLAG,old" } })).toThrow(/KILN_ALLOW_DEPRECATED=old-flag/);
  });
});

describe("stage removed", () => {
  const gone = at(OLD_FLAG, "removed");

  it("always throws DEPRECATED naming the replacement, even when KILN_ALLOW_DEPRECATED lists it", () => {
    const { warn, messages } = recorder();
    for (const env of [{}, { KILN_ALLOW_DEPRECATED: "old-flag" }]) {
      const e = thrown(() => deprecate(gone, { warn, env }));
      expect(e.code).toBe("DEPRECATED");
      expect(e.message).toBe("`--old-flag` was removed in kiln 0.4 (deprecated since kiln 0.2); use `--new-flag` instead");
    }
    expect(messages).toEqual([]);
  });
});

it("refuses a name that cannot be listed in KILN_ALLOW_DEPRECATED", () => {
  for (const name of ["", "a,b", "a b"]) expect(() => deprecate({ ...OLD_FLAG, name }, { warn: () => {} })).toThrow(/commas or spaces/);
});
