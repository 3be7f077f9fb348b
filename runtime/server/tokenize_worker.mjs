// The prompt tokenizer's worker thread. Plain JavaScript, so it starts under any loader (tsx's
// CLI, its API, vitest); it registers tsx itself to run the TypeScript that does the work.
import { register } from "tsx/esm/api";

register();
await import("./tokenize_worker_main.ts");
