/**
 * A push-to-pull bridge: the engine loop pushes a request's deltas as steps produce them; the
 * caller pulls them with `for await`. Leaving the loop early (break, throw, return()) calls
 * `onCancel`, so the engine can abort the request and free its blocks.
 */
export class DeltaStream<T> implements AsyncIterableIterator<T> {
  private readonly queue: T[] = [];
  private waiter: { resolve: (r: IteratorResult<T, undefined>) => void; reject: (e: unknown) => void } | undefined;
  private ended = false;
  private failure: { readonly error: unknown } | undefined;

  constructor(private readonly onCancel: () => void) {}

  push(value: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value, done: false });
    } else {
      this.queue.push(value);
    }
  }

  /** No more values: the iterator finishes once the queue drains. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.waiter && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }

  /** The iterator throws `error` once the queue drains. */
  fail(error: unknown): void {
    if (this.ended) return;
    this.failure = { error };
    this.ended = true;
    if (this.waiter && this.queue.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(error);
    }
  }

  next(): Promise<IteratorResult<T, undefined>> {
    const value = this.queue.shift();
    if (value !== undefined) return Promise.resolve({ value, done: false });
    if (this.ended) return this.failure ? Promise.reject(this.failure.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  return(): Promise<IteratorResult<T, undefined>> {
    if (!this.ended) {
      this.ended = true;
      this.queue.length = 0;
      this.onCancel();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
