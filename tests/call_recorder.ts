/**
 * Test support: a module's exports with some of its functions wrapped to record each call by
 * name while `guard.watching` is on (used inside vi.mock factories, to prove a path never calls
 * the compiler, the tracer or a C/CUDA compiler).
 */
export interface CallGuard {
  watching: boolean;
  readonly calls: string[];
}

export function recordingCalls<M extends Record<string, unknown>>(real: M, names: readonly (keyof M & string)[], guard: CallGuard): M {
  const out: Record<string, unknown> = { ...real };
  for (const name of names) {
    const fn = real[name];
    if (typeof fn !== "function") throw new Error(`${name} is not a function`);
    out[name] = (...args: unknown[]): unknown => {
      if (guard.watching) guard.calls.push(name);
      return Reflect.apply(fn, undefined, args);
    };
  }
  return out as M;
}
