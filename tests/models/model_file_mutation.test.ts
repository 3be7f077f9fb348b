/**
 * Model-file mutation test: hundreds of hostile edits to the fixtures' config.json, safetensors
 * header and data, tokenizer files and generation_config.json, each loaded the way `kiln run` loads
 * a model (its runPrompt: the tokenizer, then createEngine, then a two-token generation). Each
 * must either work (only where the mutation is harmless) or fail with a KilnError of an expected
 * code that names the folder, within 10 s and without the process growing by hundreds of MB. A
 * sample runs through the real CLI: exit status 2, one `kiln: error [CODE]:` line, no stack trace.
 */
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { runPrompt } from "../../cli/run.ts";
import { isKilnError } from "../../runtime/engine/errors.ts";
import { fixture } from "../fixture_copy.ts";
import { numericFieldMutations, ONE_PER_ARCHITECTURE, type Mutation } from "./config_mutations.ts";
import { configStructureMutations, generationConfigMutations, safetensorsMutations, tokenizerMutations } from "./file_mutations.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAX_MS = 10_000;
const MAX_RSS_GROWTH = 512 * 2 ** 20;

// Every architecture's config, once (tests/fixtures/index.ts).
const NUMERIC_FIXTURES = ONE_PER_ARCHITECTURE.map((f) => f.name);
const GROUPS: readonly [string, readonly Mutation[]][] = [
  ["config.json numeric fields", NUMERIC_FIXTURES.flatMap(numericFieldMutations)],
  ["config.json structure", configStructureMutations()],
  ["model.safetensors", safetensorsMutations()],
  ["tokenizer files", tokenizerMutations()],
  ["generation_config.json", generationConfigMutations()],
];
const ALL = GROUPS.flatMap(([, ms]) => ms);

/** A sample of refused mutations, one or more of each kind, for the real CLI. */
const CLI_SAMPLE = [
  "config.json num_hidden_layers = 1e9", "config.json head_dim = 1e9", "config.json max_position_embeddings = 1e9",
  'config.json num_attention_heads = "NaN"', "config.json rms_norm_eps = NaN", "config.json sliding_window = -1",
  "config.json conv_kernel = 1.5", "config.json layer_types one short", "config.json num_hidden_layers one more than the checkpoint holds",
  "config.json num_attention_heads 3 without head_dim", "config.json a directory", "config.json truncated",
  "config.json head_dim 32 (projections are 16 per head)", "model.safetensors emptied", "tokenizer.json truncated",
  "model.safetensors header length - 1", "model.safetensors header length one short of its space padding",
  "model.safetensors cut 1 data byte short", "model.safetensors tensors overlapping", 'model.safetensors dtype "F33"',
  "model.safetensors is a directory", "model.safetensors with a tensor declared twice",
  'tokenizer.json model.type "Nonsense"', "tokenizer.json added token id 1000000000",
  "chat_template.jinja a directory", "generation_config.json eos_token_id -1",
];

const tmpRoot = mkdtempSync(join(tmpdir(), "kiln-mutation-"));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

/** The fixture's model files once (no reference outputs: nothing here reads them). */
const pristine = new Map<string, string>();
function pristineCopy(name: string): string {
  let dir = pristine.get(name);
  if (dir === undefined) {
    dir = join(tmpRoot, `pristine-${name}`);
    cpSync(fixture(name), dir, { recursive: true, filter: (src) => !/reference\.(json|safetensors)$/.test(src) });
    pristine.set(name, dir);
  }
  return dir;
}

/** A fresh working copy of `name` with the mutation applied. */
function mutatedCopy(m: Mutation, dir = join(tmpRoot, `work-${m.fixture}`)): string {
  rmSync(dir, { recursive: true, force: true });
  cpSync(pristineCopy(m.fixture), dir, { recursive: true });
  m.apply(dir);
  return dir;
}

/** What `kiln run -m dir -p hi --max-tokens 2 --temperature 0` does, in-process; the generated ids. */
async function runLikeCli(dir: string): Promise<number[]> {
  const { tokenIds } = await runPrompt({ model: dir, prompt: "hi", maxTokens: 2, temperature: 0, seed: 1 });
  return [...tokenIds];
}

const baselines = new Map<string, number[]>();
async function baseline(name: string): Promise<number[]> {
  const known = baselines.get(name);
  if (known !== undefined) return known;
  const tokens = await runLikeCli(pristineCopy(name));
  baselines.set(name, tokens);
  return tokens;
}

async function check(m: Mutation): Promise<void> {
  const expected = m.expect.sameTokens === true ? await baseline(m.fixture) : undefined;
  const dir = mutatedCopy(m);
  const rss = process.memoryUsage().rss;
  const start = performance.now();
  let outcome: { readonly tokens: number[] } | { readonly error: unknown };
  try {
    outcome = { tokens: await runLikeCli(dir) };
  } catch (error) {
    outcome = { error };
  }
  expect(performance.now() - start, "finishes within 10 s").toBeLessThan(MAX_MS);
  expect(process.memoryUsage().rss - rss, "process memory growth").toBeLessThan(MAX_RSS_GROWTH);
  if ("tokens" in outcome) {
    expect(m.expect.mayLoad, "loaded, but this mutation must be refused").toBe(true);
    if (expected !== undefined) expect(outcome.tokens, "a harmless mutation changes nothing").toEqual(expected);
    return;
  }
  const e = outcome.error;
  if (!isKilnError(e)) throw e; // an untyped failure: a path that bad input still reaches unchecked
  expect(m.expect.codes, e.message).toContain(e.code);
  if (e.code !== "ARCH_UNKNOWN") expect(e.message, "the error names the model folder's file").toContain(dir);
}

describe("model-file mutations, loaded as kiln run loads them", () => {
  it("covers at least 200 mutations, and every CLI sample is one of them and refused", () => {
    expect(ALL.length).toBeGreaterThanOrEqual(200);
    for (const name of CLI_SAMPLE) expect(ALL.find((m) => m.name === name)?.expect.mayLoad, name).toBe(false);
  });
  for (const [group, mutations] of GROUPS) {
    describe(group, () => {
      for (const m of mutations) it(`${m.fixture}: ${m.name}`, () => check(m));
    });
  }
});

describe("model-file mutations through the real CLI", () => {
  const run = promisify(execFile);
  /** exit status and stderr of `kiln run` on the folder */
  const kilnRun = async (dir: string): Promise<{ status: number; stderr: string }> => {
    try {
      await run(process.execPath, ["bin/kiln.js", "run", "-m", dir, "-p", "hi", "--max-tokens", "2"], { cwd: ROOT, timeout: 30_000 });
      return { status: 0, stderr: "" };
    } catch (e) {
      const err = e as { code?: unknown; stderr?: unknown };
      return { status: typeof err.code === "number" ? err.code : -1, stderr: String(err.stderr) };
    }
  };

  it(`${CLI_SAMPLE.length} sampled mutations exit 2 with one typed error line and no stack trace`, async () => {
    // the first mutation of each name (several fixtures share a field name)
    const sample = CLI_SAMPLE.flatMap((name) => ALL.find((m) => m.name === name) ?? []);
    expect(sample).toHaveLength(CLI_SAMPLE.length);
    const results: { name: string; status: number; stderr: string }[] = [];
    // two at a time: the machine has two cores
    for (let i = 0; i < sample.length; i += 2) {
      const pair = sample.slice(i, i + 2).map(async (m, j) => ({ name: m.name, ...(await kilnRun(mutatedCopy(m, join(tmpRoot, `cli-${i + j}`)))) }));
      results.push(...(await Promise.all(pair)));
    }
    for (const r of results) {
      expect(r.status, `${r.name}: ${r.stderr}`).toBe(2);
      expect(r.stderr, r.name).toMatch(/^kiln: error \[[A-Z_]+\]: /m);
      expect(r.stderr, r.name).not.toContain("    at ");
    }
  }, 180_000);
});
