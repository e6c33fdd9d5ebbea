/**
 * An unbounded queue read as a {@linkcode Subscription}: what a node hands out for its
 * messages and its presence events.
 *
 * @module
 */

import type { Subscription } from "../../types.ts";

/**
 * A queue of values iterated once; closing it ends the iteration.
 *
 * @example
 * ```ts
 * import { Queue } from "./_queue.ts";
 * const q = new Queue<number>();
 * q.push(1);
 * q.end();
 * for await (const n of q) console.log(n); // 1
 * ```
 */
export class Queue<T> implements Subscription<T> {
  #items: T[] = [];
  #head = 0;
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;
  readonly #onClose: (() => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #abort = () => void this.close();

  /**
   * Makes a queue.
   *
   * @param onClose Called once when the reader closes it.
   * @param signal Closes the queue when aborted.
   */
  constructor(onClose?: () => void, signal?: AbortSignal) {
    this.#onClose = onClose;
    this.#signal = signal;
    if (signal?.aborted) this.#ended = true;
    else signal?.addEventListener("abort", this.#abort, { once: true });
  }

  /** Whether the queue has ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Adds a value (ignored once ended).
   *
   * @param value The value.
   */
  push(value: T): void {
    if (this.#ended) return;
    this.#items.push(value);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /**
   * Ends the queue: its reader gets what is queued, then the end (or `error`).
   *
   * @param error An error to throw to the reader after the queued values.
   */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#signal?.removeEventListener("abort", this.#abort);
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *#iterate(): AsyncGenerator<T, void, undefined> {
    try {
      for (;;) {
        if (this.#head < this.#items.length) {
          const v = this.#items[this.#head]!;
          this.#items[this.#head++] = undefined as T;
          if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
            this.#items = this.#items.slice(this.#head);
            this.#head = 0;
          }
          yield v;
          continue;
        }
        if (this.#ended) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((r) => (this.#wake = r));
      }
    } finally {
      this.#closeOnce();
    }
  }

  #gen: AsyncGenerator<T, void, undefined> | undefined;

  /** Iterates the values as they come. */
  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    return (this.#gen ??= this.#iterate());
  }

  #closed = false;
  #closeOnce(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ended = true;
    this.#items = [];
    this.#head = 0;
    this.#signal?.removeEventListener("abort", this.#abort);
    this.#onClose?.();
  }

  /** Stops reading: drops what is queued and ends a pending iteration. */
  close(): Promise<void> {
    this.#ended = true;
    this.#error = undefined;
    this.#items = [];
    this.#head = 0;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    this.#closeOnce();
    return Promise.resolve();
  }

  /** Same as {@linkcode Queue.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
