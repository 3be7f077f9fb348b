/**
 * Runs on the prompt tokenizer's worker thread: the model's own tokenizer, loaded here once,
 * encodes the texts it is sent, one at a time, and answers with their ids (or the error).
 */
import { parentPort, workerData } from "node:worker_threads";
import { isKilnError } from "../engine/errors.ts";
import { KilnTokenizer } from "../io/tokenizer.ts";

interface Job {
  readonly id: number;
  readonly text: string;
  readonly addSpecialTokens: boolean;
}

const port = parentPort;
if (port === null) throw new Error("tokenize_worker_main runs on a worker thread");
const { dir } = workerData as { readonly dir: string };
const tokenizer = KilnTokenizer.load(dir);

port.on("message", (job: Job) => {
  try {
    const ids = Int32Array.from(tokenizer.encode(job.text, { addSpecialTokens: job.addSpecialTokens }));
    port.postMessage({ id: job.id, ids }, [ids.buffer]);
  } catch (e) {
    port.postMessage({ id: job.id, error: { message: e instanceof Error ? e.message : String(e), code: isKilnError(e) ? e.code : undefined } });
  }
});
