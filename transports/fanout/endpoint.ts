/**
 * What a topic looks like to its users, whichever backend holds it: a reader that takes what
 * is there and sleeps without spinning, and a writer whose every write of at most
 * `maxWrite` bytes is atomic.
 *
 * @module
 */

/** Where a topic lives: a user-space ring file, or a /dev/fanout character device. */
export type Backend = "ring" | "device";

/**
 * What a reader sleeps on when nothing is there: a futex word (ring) or a descriptor to poll
 * (device).
 */
export type WaitSource =
  | { kind: "futex"; addr: Deno.PointerObject; expected: number }
  | { kind: "fd"; fd: number };

/**
 * One reader of one topic. A new reader starts at "now" (or at the oldest data held when
 * asked). A reader that falls more than the ring's size behind gets an
 * {@linkcode import("../../types.ts").OverrunError} from {@linkcode TopicReader.take}, and
 * again on every later call, until it calls {@linkcode TopicReader.resync}.
 *
 * @example Read whatever arrives for a tenth of a second
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, publish } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using r = openReader("news", { root, create: true });
 * publish("news", "hello\n", { root });
 * const lengths: number[] = [];
 * const deadline = Date.now() + 100;
 * while (Date.now() < deadline) {
 *   for (const chunk of r.take()) lengths.push(chunk.length);
 *   r.waitSync(Math.max(0, deadline - Date.now()));
 * }
 * assert.deepEqual(lengths, [6]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface TopicReader extends Disposable {
  /** The topic's name. */
  readonly topic: string;
  /** The file or device read. */
  readonly path: string;
  /** Which backend holds the topic. */
  readonly backend: Backend;
  /** True when each item taken is one whole message; false for a byte stream. */
  readonly messages: boolean;
  /**
   * Takes what is there now, without waiting: byte chunks, or whole messages.
   *
   * @param maxBytes Stop after about this many bytes (at least one item is returned).
   * @returns The items, oldest first; empty when there is nothing new.
   * @throws {OverrunError} When the reader fell more than a ring behind (until resync).
   */
  take(maxBytes?: number): Uint8Array[];
  /**
   * Blocks the thread until there is something to take or `timeoutMs` passes.
   *
   * @param timeoutMs The longest wait; negative (the default) means none.
   * @returns True when there is something to take.
   */
  waitSync(timeoutMs?: number): boolean;
  /** Waits on a worker thread until there may be something to take (or wake() is called). */
  wait(): Promise<void>;
  /** Ends a pending {@linkcode TopicReader.wait} early. */
  wake(): void;
  /**
   * What to sleep on to wait for this reader together with others.
   *
   * @returns The source, or undefined when there is already something to take.
   */
  waitSource(): WaitSource | undefined;
  /**
   * After an overrun, starts again at "now".
   *
   * @returns How many bytes were skipped, when known.
   */
  resync(): number | undefined;
  /** Releases the reader. */
  close(): void;
}

/**
 * One writer of one topic.
 *
 * @example Publish two messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, openWriter } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using r = openReader("news", { root, create: { messages: true } });
 * using w = openWriter("news", { root });
 * w.write("hello\n");
 * w.writeBatch([new TextEncoder().encode("a\n"), new TextEncoder().encode("b\n")]);
 * assert.deepEqual(r.take().map((m) => new TextDecoder().decode(m)), ["hello\n", "a\n", "b\n"]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface TopicWriter extends Disposable {
  /** The topic's name. */
  readonly topic: string;
  /** The file or device written. */
  readonly path: string;
  /** Which backend holds the topic. */
  readonly backend: Backend;
  /** True when every write is one message (the ring's message mode). */
  readonly messages: boolean;
  /**
   * The largest atomic write: in byte mode longer writes are split into pieces of this size;
   * in message mode it bounds a message (payload plus its 4-byte length prefix).
   */
  readonly maxWrite: number;
  /**
   * Writes bytes (byte mode, split into atomic pieces of at most `maxWrite`) or one message.
   *
   * @param data The bytes, or text to encode as UTF-8.
   * @throws {FsbusError} "too_large" for a message that does not fit.
   */
  write(data: Uint8Array | string): void;
  /**
   * Writes several items with as few commits as possible; each item stays whole (unless, in
   * byte mode, it alone exceeds `maxWrite`).
   *
   * @param items The items.
   * @throws {FsbusError} "too_large" for a message that does not fit.
   */
  writeBatch(items: readonly Uint8Array[]): void;
  /** Releases the writer. */
  close(): void;
}
