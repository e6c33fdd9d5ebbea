/**
 * Subscribing to several topics at once: take from every reader, and sleep on all of them
 * together (one `futex_waitv` for rings, one `poll` for devices) until any has data.
 *
 * @module
 */

import { FsbusError, type Message, OverrunError, type Subscription } from "../../types.ts";
import {
  CancelWord,
  futexWait,
  type FutexWaitItem,
  futexWaitv,
  futexWaitvSupported,
  WaitvList,
} from "../../sys/futex.ts";
import { pollIn } from "../../sys/device_io.ts";
import type { TopicReader } from "./endpoint.ts";
import { openReader, type ReaderOptions } from "./topics.ts";

/** Options of {@linkcode subscribe}. */
export interface SubscribeOptions extends ReaderOptions {
  /**
   * Called when a reader is overrun; the reader then resynchronises to "now" and the
   * subscription goes on. Without it, the overrun is thrown to the consumer.
   */
  onOverrun?: (error: OverrunError, topic: string) => void;
  /** Stops the subscription when aborted. */
  signal?: AbortSignal;
  /**
   * Most bytes taken from one topic per round (256 KiB).
   *
   * @default {262144}
   */
  maxBytes?: number;
}

/**
 * A subscription to one or more topics: an async iterable of messages (each a byte chunk, or
 * one whole message on a message-mode ring), with synchronous twins for loops that own their
 * thread.
 *
 * @example Collect the messages of two topics
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish, subscribe } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const got: string[] = [];
 * {
 *   await using sub = subscribe(["news", "weather"], {
 *     root,
 *     create: { messages: true },
 *     onOverrun: (err) => console.error(err.message),
 *   });
 *   publish("news", "hello", { root });
 *   publish("weather", "rain", { root });
 *   for await (const m of sub) {
 *     got.push(`${m.topic}: ${new TextDecoder().decode(m.data)}`);
 *     if (got.length === 2) break;
 *   }
 * }
 * assert.deepEqual(got.sort(), ["news: hello", "weather: rain"]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class Subscriber implements Subscription<Message> {
  readonly #readers: TopicReader[];
  readonly #onOverrun: SubscribeOptions["onOverrun"];
  readonly #maxBytes: number;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => void this.close();
  #closed = false;
  #waiting: Promise<unknown> | undefined;
  readonly #cancel = new CancelWord();
  #waitv: WaitvList | undefined;

  /**
   * Wraps open readers (the subscriber owns and closes them).
   *
   * @param readers The readers.
   * @param options Overrun handling, abort signal, batch size.
   */
  constructor(readers: readonly TopicReader[], options: SubscribeOptions = {}) {
    const { onOverrun, signal, maxBytes = 256 * 1024 } = options;
    this.#readers = [...readers];
    this.#onOverrun = onOverrun;
    this.#maxBytes = maxBytes;
    this.#signal = signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (this.#signal?.aborted) void this.close();
  }

  /** The readers, one per topic. */
  get readers(): readonly TopicReader[] {
    return this.#readers;
  }

  /**
   * Adds a reader (a topic found later); the subscriber owns and closes it. Call it between
   * waits, from the thread that waits.
   *
   * @param reader The open reader.
   *
   * @example Follow a topic created after subscribing
   * ```ts
   * import assert from "node:assert/strict";
   * import { createTopic, openReader, subscribe } from "@x/fsbus/fanout";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * createTopic("news", { root });
   * const sub = subscribe(["news"], { root });
   * createTopic("weather", { root });
   * sub.add(openReader("weather", { root }));
   * assert.deepEqual(sub.readers.map((r) => r.topic), ["news", "weather"]);
   * await sub.close(); // closes both readers
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  add(reader: TopicReader): void {
    if (this.#closed) {
      reader.close();
      return;
    }
    this.#readers.push(reader);
    this.#waitv = undefined;
  }

  /** Whether the subscription has been closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Takes what every topic has now, without waiting.
   *
   * @returns The messages, topic by topic; empty when nothing is new.
   * @throws {OverrunError} When a reader is overrun and no `onOverrun` was given.
   */
  takeNow(): Message[] {
    const out: Message[] = [];
    for (const r of this.readers) {
      let items: Uint8Array[];
      try {
        items = r.take(this.#maxBytes);
      } catch (err) {
        if (err instanceof OverrunError && this.#onOverrun) {
          this.#onOverrun(err, r.topic);
          r.resync();
          continue;
        }
        throw err;
      }
      for (const data of items) out.push({ data, topic: r.topic });
    }
    return out;
  }

  /**
   * Blocks the thread until some topic has data or `timeoutMs` passes.
   *
   * @param timeoutMs The longest wait; negative means none.
   * @returns True when some topic may have data.
   */
  waitSync(timeoutMs = -1): boolean {
    const readers = this.readers;
    if (readers.length === 1) return readers[0]!.waitSync(timeoutMs);
    const futexes: FutexWaitItem[] = [];
    const fds: number[] = [];
    for (const r of readers) {
      const s = r.waitSource();
      if (s === undefined) return true;
      if (s.kind === "futex") futexes.push(s);
      else fds.push(s.fd);
    }
    if (fds.length === 0) {
      if (futexWaitvSupported() && futexes.length <= 128) {
        return futexWaitv(futexes, timeoutMs) !== "timeout";
      }
      // Old kernel: sleep on the first ring, waking every 10 ms to look at the others.
      const f = futexes[0]!;
      return futexWait(f.addr, f.expected, timeoutMs < 0 ? 10 : Math.min(10, timeoutMs)) !==
        "timeout";
    }
    if (futexes.length === 0) return pollIn(fds, timeoutMs) !== 0;
    // Rings and devices mixed: alternate short sleeps on each kind.
    const slice = timeoutMs < 0 ? 10 : Math.min(10, timeoutMs);
    if (pollIn(fds, 0) !== 0) return true;
    if (futexWaitvSupported()) futexWaitv(futexes, slice);
    else futexWait(futexes[0]!.addr, futexes[0]!.expected, slice);
    return pollIn(fds, 0) !== 0 || timeoutMs < 0 || timeoutMs > slice;
  }

  /**
   * Blocks the thread until there are messages (or the timeout passes).
   *
   * @param timeoutMs The longest wait; negative means none.
   * @returns The messages; empty on timeout or when closed.
   */
  nextSync(timeoutMs = -1): Message[] {
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    while (!this.#closed) {
      const batch = this.takeNow();
      if (batch.length > 0) return batch;
      const left = deadline === Infinity ? -1 : deadline - performance.now();
      if (left !== -1 && left <= 0) return [];
      this.waitSync(left);
    }
    return [];
  }

  /**
   * Waits, without blocking the event loop, until some topic may have data.
   *
   * @returns When to look again.
   */
  async wait(): Promise<void> {
    if (this.#closed) return;
    const readers = this.readers;
    if (readers.length === 1) {
      await this.#track(readers[0]!.wait());
      return;
    }
    const futexes: FutexWaitItem[] = [];
    let allFutex = true;
    for (const r of readers) {
      const s = r.waitSource();
      if (s === undefined) return;
      if (s.kind === "futex") futexes.push(s);
      else allFutex = false;
    }
    if (allFutex && futexWaitvSupported() && futexes.length < 128) {
      // The cancel word makes close() reach a wait that has not entered the kernel yet.
      this.#waitv ??= new WaitvList(readers.length + 1);
      futexes.forEach((f, i) => this.#waitv!.set(i, f));
      this.#waitv.set(futexes.length, this.#cancel.item());
      await this.#track(this.#waitv.waitAsync(futexes.length + 1));
      return;
    }
    // One wait per reader; the first to end cuts the others short.
    const waits = readers.map((r) => r.wait());
    const all = Promise.all(waits);
    this.#waiting = all;
    try {
      await Promise.race(waits);
    } finally {
      for (const r of readers) r.wake();
      await all.catch(() => {});
      if (this.#waiting === all) this.#waiting = undefined;
    }
  }

  async #track<T>(p: Promise<T>): Promise<T> {
    this.#waiting = p;
    try {
      return await p;
    } finally {
      if (this.#waiting === p) this.#waiting = undefined;
    }
  }

  /**
   * Waits until there are messages, without blocking the event loop.
   *
   * @returns The messages; empty once closed.
   */
  async next(): Promise<Message[]> {
    while (!this.#closed) {
      const batch = this.takeNow();
      if (batch.length > 0) return batch;
      await this.wait();
    }
    return [];
  }

  /** Iterates over messages until closed, aborted, or the loop is left. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    try {
      while (!this.#closed) {
        const batch = await this.next();
        for (const m of batch) {
          yield m;
          if (this.#closed) return;
        }
      }
    } finally {
      await this.close();
    }
  }

  /**
   * Ends a pending {@linkcode Subscriber.wait} at once (it returns as if data may have come),
   * for a caller that waits on something else too, such as new topics in the root.
   *
   * @example End a wait from elsewhere
   * ```ts
   * import assert from "node:assert/strict";
   * import { subscribe } from "@x/fsbus/fanout";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const sub = subscribe(["news", "weather"], { root, create: true });
   * const timer = setTimeout(() => sub.wake(), 10); // say, a new topic turned up
   * await sub.wait(); // ends although nothing was published
   * clearTimeout(timer);
   * assert.deepEqual(sub.takeNow(), []);
   * await sub.close();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  wake(): void {
    if (this.#closed) return;
    this.#cancel.cancel();
    for (const r of this.readers) r.wake();
  }

  /** Resynchronises every reader to "now" (after an overrun was thrown). */
  resync(): void {
    for (const r of this.readers) r.resync();
  }

  /** Stops waiting, and closes every reader; safe to call more than once. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#cancel.cancel();
    for (const r of this.readers) r.wake();
    if (this.#waiting) await this.#waiting.catch(() => {});
    for (const r of this.readers) r.close();
  }

  /** Same as {@linkcode Subscriber.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Subscribes to one or more topics.
 *
 * @param topics A topic name (or path), or several.
 * @param options Root, start position, creation, overrun handling, abort signal.
 * @returns The subscription.
 * @throws {FsbusError} When a topic does not exist (without `create`) or is not usable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish, subscribe } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const sub = subscribe("news", { root, create: true });
 * publish("news", "hello\n", { root });
 * for await (const m of sub) {
 *   assert.equal(new TextDecoder().decode(m.data), "hello\n");
 *   break; // leaving the loop closes the subscription
 * }
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function subscribe(
  topics: string | readonly string[],
  options: SubscribeOptions = {},
): Subscriber {
  const names = typeof topics === "string" ? [topics] : topics;
  if (names.length === 0) throw new FsbusError("invalid", "Cannot subscribe: no topic given");
  const readers: TopicReader[] = [];
  try {
    for (const name of names) readers.push(openReader(name, options));
  } catch (err) {
    for (const r of readers) r.close();
    throw err;
  }
  return new Subscriber(readers, options);
}
