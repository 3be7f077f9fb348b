/**
 * An ONNX model is named by its file (`model.onnx`); its tokenizer, generation config and
 * (optionally) config.json live in the folder beside it, as for a Hugging Face model folder.
 */
import { dirname } from "node:path";

/** The architecture name an imported model reports (and its engine artifact's config.json names). */
export const ONNX_ARCH = "OnnxModel";

export function isOnnxModelPath(path: string): boolean {
  return path.toLowerCase().endsWith(".onnx");
}

/** The folder a model's tokenizer and generation config are read from. */
export function modelFolderOf(path: string): string {
  return isOnnxModelPath(path) ? dirname(path) : path;
}

/** `x.onnx` → `x.reference.safetensors` (reference outputs beside the model, for goldens). */
export function onnxReferencePath(path: string): string {
  return path.replace(/\.onnx$/i, ".reference.safetensors");
}
