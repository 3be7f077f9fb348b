/**
 * Stop strings over a growing text. A stop string ends generation as soon as it appears; the
 * text is cut before it (or after it, with includeStopStrInOutput). While streaming, the end of
 * the text that could still grow into a stop string is held back, so a stream never shows part
 * of one: the longest suffix that is a proper prefix of some stop string.
 */

export interface StopMatch {
  readonly stop: string;
  /** the text keeps [0, cutAt) */
  readonly cutAt: number;
}

/**
 * The earliest stop string completed by text added since `prevLength` (an occurrence entirely
 * inside the old text was checked before).
 */
export function findStop(text: string, prevLength: number, stops: readonly string[], includeInOutput: boolean): StopMatch | undefined {
  let best: { stop: string; at: number } | undefined;
  for (const stop of stops) {
    const from = Math.max(0, prevLength - stop.length + 1);
    const at = text.indexOf(stop, from);
    if (at >= 0 && (best === undefined || at < best.at)) best = { stop, at };
  }
  if (best === undefined) return undefined;
  return { stop: best.stop, cutAt: includeInOutput ? best.at + best.stop.length : best.at };
}

/** Length of the longest suffix of `text` that is a proper prefix of one of `stops`. */
export function partialStopLength(text: string, stops: readonly string[]): number {
  let longest = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > longest; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        longest = k;
        break;
      }
    }
  }
  return longest;
}
