/**
 * Typed errors with stable codes. Every failure a user can cause (a bad file, a bad config,
 * a bad request) surfaces as a KilnError whose `code` is one of these literals, so callers
 * (the CLI, the HTTP server, tests) can branch on it without parsing messages.
 */
export const ERROR_CODES = [
  "CONFIG_INVALID", // config.json / generation_config.json missing, unparsable or missing a field
  "SAFETENSORS_INVALID", // header truncated, corrupt, offsets out of range
  "SAFETENSORS_DTYPE", // a dtype the reader does not know or the caller cannot use
  "TENSOR_MISSING", // a parameter no checkpoint tensor filled
  "TENSOR_UNUSED", // a checkpoint tensor no parameter consumed
  "TENSOR_SHAPE", // a checkpoint tensor whose shape does not match its parameter
  "ARCH_UNKNOWN", // an architecture name no registry entry handles
  "PLUGIN_INVALID", // a plugin module or registry spec that cannot be loaded
  "TRACE_SHAPE", // an op built with inconsistent shapes or dtypes while tracing
  "TOKENIZER_INVALID", // tokenizer files missing or unreadable
  "MODEL_NOT_FOUND", // a model folder that does not exist or lacks config.json
  "NATIVE_UNAVAILABLE", // the native CPU addon is not built or failed to load
  "PROMPT_TOO_LONG", // a prompt longer than the context window
  "KV_EXHAUSTED", // the KV pool cannot hold the request
  "INVALID_ARGUMENT", // a bad argument to a public API or CLI flag
  "SAMPLING_PARAMS_INVALID", // a sampling parameter out of range or of the wrong type
  "SAMPLING_FAILED", // a row of logits with no distribution to draw from (NaN or +inf), or a sampled id outside the vocabulary
  "LISTEN_FAILED", // the server cannot listen on the address it was given (in use, no permission)
  "ENGINE_CLOSED", // a request sent to an engine that has been closed
  "CUDA_UNAVAILABLE", // no usable CUDA driver, NVRTC or cuBLASLt library (the message names every path tried)
  "CUDA_ERROR", // a CUDA driver, NVRTC or cuBLASLt call failed (the message carries the library's own text)
  "GRAMMAR_INVALID", // a JSON schema, regex, EBNF grammar or choice list that grammar-constrained decoding (xgrammar) cannot compile
  "GRAMMAR_UNAVAILABLE", // the xgrammar WebAssembly bundle is missing, is not the build kiln knows how to load, or failed inside
  "ONNX_INVALID", // an ONNX file that is not a readable ModelProto (truncated, corrupt), or refers to an initializer or external data file that is missing
  "ONNX_UNSUPPORTED", // an ONNX node, op type, opset or pattern the importer cannot map to kiln's IR (the message names the node, its op type and index)
  "QUANT_INVALID", // a quantized checkpoint that does not match its quantization_config: a packed tensor of the wrong shape or dtype, missing scales or zeros, a bad g_idx (the message names the tensor)
  "QUANT_UNSUPPORTED", // a quantization method, bit width, group size or option kiln cannot load (the message names the config field or the layer)
  "MODEL_INCOMPLETE", // a model file written by `kiln new-model` reached a part it left as a TODO (the message says what to write)
  "DEPRECATED", // a deprecated flag, variable, field, API or artifact format that is off by default (re-enable with KILN_ALLOW_DEPRECATED) or removed; the message names the replacement
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class KilnError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "KilnError";
    this.code = code;
  }
}

export function isKilnError(e: unknown, code?: ErrorCode): e is KilnError {
  return e instanceof KilnError && (code === undefined || e.code === code);
}
