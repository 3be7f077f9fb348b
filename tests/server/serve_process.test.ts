/**
 * `kiln serve` as a process: a busy port is a typed error (exit 2, one line, no stack trace), so are
 * tool-call flags that cannot work together, and
 * SIGTERM to `npm start` (what `docker stop` sends to a container started that way) reaches the
 * server, which stops instead of living on as an orphan.
 */
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.on("exit", (code) => resolve(code)));
}

/** Resolves with the serving URL once the startup line appears. */
function servingUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const m = /at (http:\/\/\S+)\/v1/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on("exit", () => reject(new Error(`server exited early: ${out}`)));
  });
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("kiln serve as a process", () => {
  it("a port already in use is kiln: error [LISTEN_FAILED], exit 2", async () => {
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const child = spawn(process.execPath, ["bin/kiln.js", "serve", "--port", String(port), "--log-level", "warn"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.on("data", (b: Buffer) => (err += b.toString()));
      const code = await exitOf(child);
      expect(code).toBe(2);
      expect(err).toMatch(new RegExp(`^kiln: error \\[LISTEN_FAILED\\]: cannot listen on 127\\.0\\.0\\.1:${port}`, "m"));
      expect(err).not.toContain("    at ");
    } finally {
      await new Promise((r) => holder.close(r));
    }
  }, 60_000);

  it("tool-call flags are checked before the model loads: a parser is required, and must be one kiln has", async () => {
    for (const [args, pattern] of [
      [["--enable-auto-tool-choice"], /^kiln: error \[INVALID_ARGUMENT\]: --enable-auto-tool-choice needs --tool-call-parser/m],
      [["--enable-auto-tool-choice", "--tool-call-parser", "mistral"], /unknown tool-call parser 'mistral' \(one of: hermes, llama3_json\)/],
    ] as const) {
      const child = spawn(process.execPath, ["bin/kiln.js", "serve", "--port", "0", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.on("data", (b: Buffer) => (err += b.toString()));
      const code = await exitOf(child);
      expect(code, err).not.toBe(0);
      expect(err).toMatch(pattern);
      expect(err).not.toContain("    at ");
    }
  }, 60_000);

  it("SIGTERM to npm start stops the server (no orphan left serving)", async () => {
    const port = await freePort();
    const npm = spawn("npm", ["start", "--silent", "--", "--port", String(port), "--log-level", "warn", "--grace-period", "1"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = exitOf(npm);
    await servingUrl(npm);
    expect(await portAnswers(port)).toBe(true);
    npm.kill("SIGTERM");
    await exited;
    // the server itself must be gone, not just npm
    const deadline = Date.now() + 10_000;
    while ((await portAnswers(port)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await portAnswers(port)).toBe(false);
  }, 60_000);
});
