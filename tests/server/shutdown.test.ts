/** `kiln serve` exits cleanly on SIGTERM while streams are active. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MODEL } from "./server_fixture.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("graceful shutdown", () => {
  it("SIGTERM during active streams: in-flight streams end, the process exits 0", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/kiln.ts", "serve", "--port", "0", "--grace-period", "1", "--log-level", "warn"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const m = /at (http:\/\/\S+)\/v1/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on("exit", () => reject(new Error(`server exited early: ${out}`)));
    });

    // long streams that cannot finish within the grace period
    const streams = [0, 1, 2].map(async () => {
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: "You will", max_tokens: 1000, ignore_eos: true, stream: true }),
      });
      const reader = res.body!.getReader();
      let text = "";
      let first: () => void = () => {};
      const started = new Promise<void>((r) => (first = r));
      const done = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return text;
          text += new TextDecoder().decode(value);
          first();
        }
      })();
      await started;
      return done;
    });
    const bodies = Promise.all(streams.map(async (s) => (await s)));
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGTERM");
    const code = await exited;
    expect(code).toBe(0);
    const texts = await bodies;
    for (const t of texts) {
      expect(t).toContain("data: ");
      expect(t.trimEnd().endsWith("data: [DONE]")).toBe(true);
    }
  }, 30_000);
});
