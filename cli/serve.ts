/**
 * `kiln serve [model-dir]`: the OpenAI-compatible server over a model folder (default: the
 * embedded fortune model). SIGINT/SIGTERM stop accepting, let in-flight requests finish within
 * the grace period, then abort what is left and exit 0. On `--backend cuda` the KV pool takes
 * what `--gpu-memory-utilization` of device memory leaves after the weights and activations
 * (unless --kv-cache-memory-bytes is given).
 */
import { basename } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { deprecate, type Deprecation } from "../runtime/engine/deprecation.ts";
import { createEngine } from "../runtime/engine/create_engine.ts";
import { loadGenerationConfig } from "../runtime/io/generation_config.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/io/model_loader.ts";
import { KilnTokenizer } from "../runtime/io/tokenizer.ts";
import { isOnnxModelPath, modelFolderOf } from "../models/onnx/onnx_path.ts";
import { KilnError } from "../runtime/engine/errors.ts";
import { DEFAULT_CORS, DEFAULT_LIMITS } from "../runtime/server/server_defaults.ts";
import { isToolParserName, TOOL_PARSERS, type ToolParserName } from "../runtime/server/tool_parsers/registry.ts";
import type { BackendName, KernelOrigin } from "../runtime/backends/step_executor.ts";
import { backendFlag, cudaDtypeFlag, type CudaDtypeChoice, type CudaKvDtypeChoice, kvCacheDtypeFlag, gpuMemoryUtilizationFlag, intFlag, floatFlag, registerCudaFromFlags } from "./options.ts";

interface ServeFlags {
  verify?: boolean;
  quantization?: string;
  host: string;
  port: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxModelLen?: number;
  kvCacheMemoryBytes?: number;
  /** the deprecated spelling of kvCacheMemoryBytes */
  kvCacheMemory?: number;
  gpuMemoryUtilization?: number;
  enforceEager?: boolean;
  dtype: CudaDtypeChoice;
  kvCacheDtype: CudaKvDtypeChoice;
  backend: BackendName;
  blockSize: number;
  apiKey?: string;
  servedModelName?: string;
  maxPendingRequests: number;
  requestTimeout: number;
  headersTimeout: number;
  maxConnections: number;
  maxPromptChars?: number;
  maxBodySize: number;
  gracePeriod: number;
  allowedOrigins: string[];
  allowedMethods: string[];
  allowedHeaders: string[];
  allowCredentials?: boolean;
  structuredOutputsDisableAnyWhitespace?: boolean;
  enableAutoToolChoice?: boolean;
  toolCallParser?: ToolParserName;
  logLevel: string;
}

function toolParserFlag(v: string): ToolParserName {
  if (!isToolParserName(v)) throw new InvalidArgumentError(`unknown tool-call parser '${v}' (one of: ${Object.keys(TOOL_PARSERS).join(", ")})`);
  return v;
}

const UNITS: Record<string, number> = { "": 1, k: 1e3, m: 1e6, g: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, kb: 1e3, mb: 1e6, gb: 1e9 };

/** "512MiB", "2GiB", "1e9" → bytes */
export function parseBytes(v: string): number {
  const m = /^\s*([\d.e+]+)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m ? Number(m[1]) * (unit ?? NaN) : NaN;
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${v}' is not a size (e.g. 512MiB, 2GiB)`);
  return Math.floor(n);
}

/** A list flag as vLLM spells it (a JSON list of strings) or comma-separated. */
function listFlag(name: string): (v: string) => string[] {
  return (v) => {
    const t = v.trim();
    let items: unknown = t.split(",").map((x) => x.trim());
    if (t.startsWith("[")) {
      try {
        items = JSON.parse(t);
      } catch {
        throw new InvalidArgumentError(`${name} must be a JSON list of strings or comma-separated (got '${v}')`);
      }
    }
    if (!Array.isArray(items) || items.length === 0 || !items.every((x): x is string => typeof x === "string" && x.length > 0)) {
      throw new InvalidArgumentError(`${name} must be a non-empty list of strings (got '${v}')`);
    }
    return items;
  };
}

/** A failure to listen (port taken, no permission, no such address) as a typed error naming the address. */
function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as { code?: unknown }).code;
  const why: Record<string, string> = {
    EADDRINUSE: "is already in use (another server listens there; pick another --port)",
    EACCES: "needs privileges this process lacks (pick a --port above 1023)",
    EADDRNOTAVAIL: "is not an address of this machine (check --host)",
  };
  const reason = typeof code === "string" ? why[code] : undefined;
  if (reason === undefined) return e;
  return new KilnError("LISTEN_FAILED", `cannot listen on ${host}:${port}: the address ${reason}`, { cause: e });
}

/** Where the compiled program's kernels came from, for the startup log (an artifact's binary, or rebuilt and why). */
export function kernelsLine(origin: KernelOrigin | undefined): string {
  if (origin === undefined) return "";
  const what = { artifact: "the artifact's stored binary", rebuilt: "rebuilt from the artifact's source", compiled: "compiled at start" }[origin.origin];
  return `kernels: ${what} (sha256 ${origin.sha256.slice(0, 12)})${origin.note === undefined ? "" : `: ${origin.note}`}\n`;
}

/**
 * `--kv-cache-memory` was kiln's name for vLLM's `--kv-cache-memory-bytes`; the vLLM spelling
 * replaces it (docs/deprecation.md), so a vLLM command line works unchanged.
 */
export const KV_CACHE_MEMORY_FLAG: Deprecation = {
  name: "kv-cache-memory-flag",
  what: "`kiln serve --kv-cache-memory`",
  replacement: "`--kv-cache-memory-bytes` (vLLM's name; the same sizes, e.g. 512MiB)",
  since: "0.2",
  removeIn: "0.4",
  stage: "warn",
};

function deprecatedKvCacheMemory(v: string): number {
  deprecate(KV_CACHE_MEMORY_FLAG);
  return parseBytes(v);
}

/** The KV pool's size from the flags: the new spelling wins where both are given. */
export function kvCacheBytesFlag(flags: Pick<ServeFlags, "kvCacheMemoryBytes" | "kvCacheMemory">): { kvCacheBytes?: number } {
  const bytes = flags.kvCacheMemoryBytes ?? flags.kvCacheMemory;
  return bytes === undefined ? {} : { kvCacheBytes: bytes };
}

export function serveCommand(): Command {
  return new Command("serve")
    .description("serve a model over an OpenAI-compatible HTTP API")
    .argument("[model-dir]", "a Hugging Face model folder (default: the embedded fortune model)")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port", intFlag("--port", 0), 8000)
    .option("--max-num-seqs <n>", "sequences per step", intFlag("--max-num-seqs", 1))
    .option("--max-num-batched-tokens <n>", "tokens per step", intFlag("--max-num-batched-tokens", 1))
    .option("--max-model-len <n>", "context window (default: the model's)", intFlag("--max-model-len", 2))
    .option("--kv-cache-memory-bytes <size>", "memory for the KV cache, e.g. 512MiB", parseBytes)
    .addOption(new Option("--kv-cache-memory <size>").hideHelp().argParser(deprecatedKvCacheMemory))
    .option("--backend <name>", "where the model runs: cpu or cuda", backendFlag, "cpu")
    .option(
      "--gpu-memory-utilization <fraction>",
      "share of GPU memory the engine may hold, in (0, 1]; the KV pool gets what weights and activations leave (cuda; default 0.9)",
      gpuMemoryUtilizationFlag,
    )
    .option("--verify", "an engine artifact: hash every file against its manifest, the weights too, before loading (kiln verify)")
    .option("--enforce-eager", "cuda: run every step eagerly instead of replaying CUDA graphs (full graphs for decode steps, pieces for prefill and mixed steps)")
    .option("--dtype <dtype>", "cuda: weight precision, auto (the checkpoint's: bfloat16 if it stores bf16, float16 if its config says so, else float32), float32, bfloat16 or float16", cudaDtypeFlag("--dtype"), "auto")
    .option("--kv-cache-dtype <dtype>", "cuda: KV cache precision, auto (as the weights), float32, bfloat16, float16 or fp8 (e4m3)", kvCacheDtypeFlag("--kv-cache-dtype"), "auto")
    .option("--block-size <n>", "tokens per KV block", intFlag("--block-size", 1), 16)
    .option("--api-key <key>", "require 'Authorization: Bearer <key>' on /v1/* (also KILN_API_KEY)")
    .option("--served-model-name <name>", "the model name clients send (default: the folder name)")
    .option("--max-pending-requests <n>", "running + queued requests before 503", intFlag("--max-pending-requests", 1), 1024)
    .option("--request-timeout <s>", "seconds a client has to send a whole request, body included (408 after)", floatFlag("--request-timeout", 0.001), 30)
    .option("--headers-timeout <s>", "seconds a client has to send a request's headers", floatFlag("--headers-timeout", 0.001), 10)
    .option("--max-connections <n>", "open connections; more are refused", intFlag("--max-connections", 1), DEFAULT_LIMITS.maxConnections)
    .option("--max-body-size <size>", "largest request body, e.g. 4MiB (413 past it)", parseBytes, DEFAULT_LIMITS.bodyLimit)
    .option(
      "--max-prompt-chars <n>",
      "characters of prompt text a request may carry, refused before tokenizing (default: the context window times the longest vocabulary entry, doubled)",
      intFlag("--max-prompt-chars", 1),
    )
    .option("--allowed-origins <list>", 'origins browsers may call from: a JSON list or comma-separated ("*": any)', listFlag("--allowed-origins"), [...DEFAULT_CORS.origins])
    .option("--allowed-methods <list>", "methods a cross-origin call may use", listFlag("--allowed-methods"), [...DEFAULT_CORS.methods])
    .option("--allowed-headers <list>", "headers a cross-origin call may send", listFlag("--allowed-headers"), [...DEFAULT_CORS.headers])
    .option("--allow-credentials", "let cross-origin calls send credentials (cookies, HTTP auth)")
    .option("--structured-outputs-disable-any-whitespace", "structured JSON outputs in the compact layout, no free whitespace between tokens (vLLM's disable_any_whitespace)")
    .option("--enable-auto-tool-choice", 'let tool_choice "auto" read tool calls out of the model\'s text (needs --tool-call-parser)')
    .option("--tool-call-parser <name>", `how "auto" tool calls are read: ${Object.keys(TOOL_PARSERS).join(" or ")} (vLLM's names)`, toolParserFlag)
    .option("--grace-period <s>", "seconds in-flight requests get to finish on shutdown", floatFlag("--grace-period", 0), 10)
    .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
    .option("--quantization <method>", "the checkpoint's quantization method (fp8, compressed-tensors, awq, gptq); checked against its quantization_config")
    .action(async (dirArg: string | undefined, flags: ServeFlags) => {
      const dir = dirArg ?? DEFAULT_MODEL_DIR;
      // as vLLM: the flag without a parser is a mistake caught before the model loads
      if (flags.enableAutoToolChoice === true && flags.toolCallParser === undefined) {
        throw new KilnError("INVALID_ARGUMENT", "--enable-auto-tool-choice needs --tool-call-parser (hermes or llama3_json)");
      }
      // the CUDA backend is loaded only when asked for; it lives as long as the process
      const cuda = await registerCudaFromFlags(flags, "auto", dir);
      cuda?.backend();
      const { engine, runner, tokenizer, kvPool, maxModelLen, contextLowered } = await createEngine({
        modelDir: dir,
        // an .onnx model's tokenizer is in the folder beside the file
        ...(isOnnxModelPath(dir) ? { tokenizer: KilnTokenizer.load(modelFolderOf(dir)) } : {}),
        backend: flags.backend,
        blockSize: flags.blockSize,
        ...(flags.gpuMemoryUtilization === undefined ? {} : { gpuMemoryUtilization: flags.gpuMemoryUtilization }),
        ...(flags.maxNumSeqs === undefined ? {} : { maxNumSeqs: flags.maxNumSeqs }),
        ...(flags.maxNumBatchedTokens === undefined ? {} : { maxNumBatchedTokens: flags.maxNumBatchedTokens }),
        ...(flags.maxModelLen === undefined ? {} : { maxModelLen: flags.maxModelLen }),
        ...kvCacheBytesFlag(flags),
        load: { ...(flags.verify === true ? { verify: true } : {}), ...(flags.quantization === undefined ? {} : { quantization: flags.quantization }) },
      });
      const name = flags.servedModelName ?? basename(dir);
      // loaded here, not at start-up: the other commands never need fastify and the server's modules
      const { buildServer } = await import("../runtime/server/app.ts");
      const app = buildServer({
        engine,
        tokenizer,
        servedModelName: name,
        maxModelLen,
        defaults: loadGenerationConfig(modelFolderOf(dir)),
        apiKey: flags.apiKey ?? process.env["KILN_API_KEY"],
        maxPendingRequests: flags.maxPendingRequests,
        requestTimeoutMs: Math.round(flags.requestTimeout * 1000),
        headersTimeoutMs: Math.round(flags.headersTimeout * 1000),
        maxConnections: flags.maxConnections,
        bodyLimit: flags.maxBodySize,
        compactJson: flags.structuredOutputsDisableAnyWhitespace === true,
        enableAutoToolChoice: flags.enableAutoToolChoice === true,
        toolCallParser: flags.toolCallParser,
        cors: { origins: flags.allowedOrigins, methods: flags.allowedMethods, headers: flags.allowedHeaders, credentials: flags.allowCredentials === true },
        ...(flags.maxPromptChars === undefined ? {} : { maxPromptChars: flags.maxPromptChars }),
        logger: { level: flags.logLevel },
      });
      try {
        await app.listen({ host: flags.host, port: flags.port });
      } catch (e) {
        engine.close();
        throw listenError(e, flags.host, flags.port);
      }
      const addr = app.server.address();
      const port = typeof addr === "object" && addr ? addr.port : flags.port;
      const url = `http://${flags.host.includes(":") ? `[${flags.host}]` : flags.host}:${port}`;
      process.stdout.write(
        `kiln is serving '${name}' at ${url}/v1 on ${flags.backend}${cuda ? ` (${cuda.backend().describe()})` : ""}\n` +
          `KV pool: ${kvPool.numBlocks} blocks of ${kvPool.blockSize} tokens (${kvPool.numBlocks * kvPool.blockSize} tokens)` +
          (kvPool.plan ? `, ${(kvPool.plan.kvBytes / 2 ** 30).toFixed(2)} GiB: ${kvPool.plan.description}` : "") +
          "\n" +
          kernelsLine(runner.kernelOrigin) +
          `context window: ${maxModelLen} tokens` +
          (contextLowered === undefined
            ? ""
            : ` (lowered from the model's ${contextLowered.from}: the KV pool holds no more; raise --kv-cache-memory-bytes, or set --max-model-len to insist)`) +
          "\n" +
          `try: curl ${url}/v1/completions -H 'Content-Type: application/json' ` +
          `-d '{"model": "${name}", "prompt": "The secret of life is", "max_tokens": 32}'\n`,
      );

      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        app.log.info({ signal, graceSeconds: flags.gracePeriod }, "shutting down: finishing in-flight requests");
        const grace = setTimeout(() => {
          app.log.warn("grace period over: aborting the requests still running");
          engine.close();
          setTimeout(() => app.server.closeAllConnections(), 250).unref();
        }, flags.gracePeriod * 1000);
        grace.unref();
        void app.close().then(() => {
          clearTimeout(grace);
          engine.close();
          process.exit(0);
        });
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
}
