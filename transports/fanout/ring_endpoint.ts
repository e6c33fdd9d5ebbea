/**
 * Readers and writers of a user-space ring (see `ring.ts` for the layout and the protocol).
 *
 * @module
 */

import { FsbusError, OverrunError, toBytes } from "../../types.ts";
import type { TopicReader, TopicWriter, WaitSource } from "./endpoint.ts";
import { LOCK_TIMEOUT_MS, RECORD_HEADER, type Ring } from "./ring.ts";
import { planWrites } from "./_chunks.ts";
import { CancelWord, futexWaitAsync, futexWaitvSupported, WaitvList } from "../../sys/futex.ts";

/** The default most bytes one `take()` returns. */
export const DEFAULT_TAKE_BYTES = 256 * 1024;

/**
 * A reader of a ring.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, RingReader } from "@x/fsbus/fanout";
 * import { Ring } from "./ring.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * using r = new RingReader("news", Ring.open(`${root}/news`));
 * assert.deepEqual(r.take(), []); // a new reader starts at "now"
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class RingReader implements TopicReader {
  /** The topic's name. */
  readonly topic: string;
  /** Always "ring". */
  readonly backend = "ring" as const;
  /** Whether items are whole messages. */
  readonly messages: boolean;
  readonly #ring: Ring;
  readonly #slot: number;
  #pos: number;
  #overrun: OverrunError | undefined;
  #closed = false;
  #waiting: Promise<void> | undefined;
  #pendingExpected = 0;
  readonly #cancel = new CancelWord();
  readonly #waitv = new WaitvList(2);

  /**
   * Starts reading `ring` at "now", or at the oldest data it holds.
   *
   * @param topic The topic's name.
   * @param ring The mapped ring (this reader takes ownership of one reference).
   * @param options `fromOldest`: start at the oldest data held instead of "now".
   */
  constructor(topic: string, ring: Ring, options: { fromOldest?: boolean } = {}) {
    const { fromOldest = false } = options;
    this.topic = topic;
    this.#ring = ring;
    this.messages = ring.messages;
    const [, head, tail] = ring.committed();
    this.#pos = fromOldest ? (ring.messages ? tail : Math.max(0, head - ring.size)) : head;
    this.#slot = ring.register("reader");
  }

  /** The ring file. */
  get path(): string {
    return this.#ring.path;
  }

  /** The reader's stream position (bytes since the ring was created). */
  get position(): number {
    return this.#pos;
  }

  #fail(head: number): never {
    const lost = Math.max(0, head - this.#ring.size - this.#pos);
    this.#overrun = new OverrunError(
      `Reader of topic "${this.topic}" overrun: at least ${lost} bytes lost`,
      lost,
    );
    throw this.#overrun;
  }

  /**
   * Takes what is there now: one byte chunk, or whole messages.
   *
   * @param maxBytes Stop after about this many bytes (at least one item).
   * @returns The items; empty when there is nothing new.
   */
  take(maxBytes: number = DEFAULT_TAKE_BYTES): Uint8Array[] {
    if (this.#overrun) throw this.#overrun;
    if (this.#closed) {
      throw new FsbusError("closed", `Cannot read topic "${this.topic}": the reader is closed`);
    }
    const ring = this.#ring;
    const head = ring.head();
    const pos = this.#pos;
    if (head === pos) return [];
    if (pos < head - ring.size || pos > head) this.#fail(head);
    if (!ring.messages) {
      const n = Math.min(head - pos, Math.max(1, maxBytes));
      const chunk = ring.get(pos, n);
      // Seqlock check: if the head moved so far that our start fell out of the history,
      // the copy may be torn. Never deliver it.
      const after = ring.head();
      if (pos < after - ring.size) this.#fail(after);
      this.#pos = pos + n;
      return [chunk];
    }
    const out: Uint8Array[] = [];
    const limit = ring.maxWrite - RECORD_HEADER;
    let p = pos;
    let bytes = 0;
    let bad = false;
    while (p < head && (out.length === 0 || bytes < maxBytes)) {
      const len = ring.getU32(p);
      if (len > limit || p + RECORD_HEADER + len > head) {
        bad = true;
        break;
      }
      out.push(ring.get(p + RECORD_HEADER, len));
      p += RECORD_HEADER + len;
      bytes += len;
    }
    const after = ring.head();
    if (pos < after - ring.size) this.#fail(after);
    if (bad && out.length === 0) {
      throw new FsbusError(
        "invalid",
        `Cannot read topic "${this.topic}": it holds a corrupt record`,
      );
    }
    this.#pos = p;
    return out;
  }

  /**
   * Blocks the thread until there is something to take, or the timeout passes.
   *
   * @param timeoutMs The longest wait; negative means none.
   * @returns True when there is something to take (or an overrun to report).
   */
  waitSync(timeoutMs = -1): boolean {
    return this.#ring.waitSync(this.#pos, timeoutMs);
  }

  /**
   * Waits on a worker thread until there may be something to take, or
   * {@linkcode RingReader.wake} is called.
   *
   * @returns When to look again.
   */
  wait(): Promise<void> {
    if (this.#closed || this.#waiting) return this.#waiting ?? Promise.resolve();
    const item = this.#ring.prepareWait(this.#pos);
    if (item === undefined) return Promise.resolve();
    // futex_waitv with a private cancel word: wake() changes that word, so a wait that had
    // not reached the kernel yet cannot sleep through it. Without futex_waitv, wake() clears
    // the sleeper bit instead (the word then differs from what the wait expects).
    this.#pendingExpected = item.expected;
    let raw: Promise<number>;
    if (futexWaitvSupported()) {
      this.#waitv.set(0, item);
      this.#waitv.set(1, this.#cancel.item());
      raw = this.#waitv.waitAsync(2);
    } else {
      raw = futexWaitAsync(item.addr, item.expected);
    }
    const p = raw.then(() => {}, () => {}).finally(() => {
      if (this.#waiting === p) this.#waiting = undefined;
    });
    this.#waiting = p;
    return p;
  }

  /** Ends a pending wait at once. */
  wake(): void {
    if (!this.#waiting) return;
    this.#cancel.cancel();
    if (!futexWaitvSupported()) {
      // Clearing the bit wakes nobody by itself: wake every sleeper, who re-check (and set
      // the bit again if they still wait), so no other reader misses a commit.
      this.#ring.clearSleeper(this.#pendingExpected);
      this.#ring.wakeAll();
    }
  }

  /**
   * What to sleep on together with other readers.
   *
   * @returns The futex word, or undefined when there is something to take.
   */
  waitSource(): WaitSource | undefined {
    const item = this.#ring.prepareWait(this.#pos);
    return item && { kind: "futex", addr: item.addr, expected: item.expected };
  }

  /**
   * Starts again at "now" after an overrun (or to skip what is pending).
   *
   * @returns How many bytes were skipped.
   */
  resync(): number {
    const head = this.#ring.head();
    const skipped = Math.max(0, head - this.#pos);
    this.#pos = head;
    this.#overrun = undefined;
    return skipped;
  }

  /** Releases the reader (waits in progress are woken first). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ring.unregister(this.#slot);
    if (this.#waiting) {
      // The mapping must outlive the pending wait: unmap once it has returned.
      this.wake();
      const ring = this.#ring;
      const release = () => ring.close();
      this.#waiting.then(release, release);
    } else {
      this.#ring.close();
    }
  }

  /** Same as {@linkcode RingReader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A writer of a ring.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, RingReader, RingWriter } from "@x/fsbus/fanout";
 * import { Ring } from "./ring.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * using r = new RingReader("news", Ring.open(`${root}/news`));
 * using w = new RingWriter("news", Ring.open(`${root}/news`));
 * w.write("hello\n");
 * assert.equal(new TextDecoder().decode(r.take()[0]), "hello\n");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class RingWriter implements TopicWriter {
  /** The topic's name. */
  readonly topic: string;
  /** Always "ring". */
  readonly backend = "ring" as const;
  /** Whether every write is one message. */
  readonly messages: boolean;
  /** The largest atomic write (record prefix included, in message mode). */
  readonly maxWrite: number;
  readonly #ring: Ring;
  readonly #slot: number;
  readonly #lockTimeoutMs: number;
  #closed = false;

  /**
   * Writes to `ring`.
   *
   * @param topic The topic's name.
   * @param ring The mapped ring (this writer takes ownership of one reference).
   * @param options `lockTimeoutMs`: how long a write waits for a writer lock held by a live
   *   process before failing (default {@linkcode LOCK_TIMEOUT_MS}).
   */
  constructor(topic: string, ring: Ring, options: { lockTimeoutMs?: number } = {}) {
    const { lockTimeoutMs = LOCK_TIMEOUT_MS } = options;
    this.topic = topic;
    this.#lockTimeoutMs = lockTimeoutMs;
    this.#ring = ring;
    this.messages = ring.messages;
    this.maxWrite = ring.maxWrite;
    this.#slot = ring.register("writer");
  }

  /** The ring file. */
  get path(): string {
    return this.#ring.path;
  }

  /**
   * Writes bytes (split into atomic pieces) or, in message mode, one message.
   *
   * @param data The bytes or text.
   */
  write(data: Uint8Array | string): void {
    const bytes = toBytes(data);
    if (this.messages) {
      this.#checkMessage(bytes.length);
      this.#commit([bytes], bytes.length + RECORD_HEADER);
      return;
    }
    if (bytes.length <= this.maxWrite) {
      if (bytes.length > 0) this.#commit([bytes], bytes.length);
      return;
    }
    for (let off = 0; off < bytes.length; off += this.maxWrite) {
      const piece = bytes.subarray(off, off + this.maxWrite);
      this.#commit([piece], piece.length);
    }
  }

  /**
   * Writes several items with as few commits as fit; items stay whole.
   *
   * @param items The items.
   */
  writeBatch(items: readonly Uint8Array[]): void {
    if (this.messages) {
      const max = this.maxWrite;
      for (const it of items) this.#checkMessage(it.length);
      let start = 0;
      let total = 0;
      for (let i = 0; i < items.length; i++) {
        const size = items[i]!.length + RECORD_HEADER;
        if (total + size > max) {
          this.#commit(items.slice(start, i), total);
          start = i;
          total = 0;
        }
        total += size;
      }
      if (start < items.length) this.#commit(items.slice(start), total);
      return;
    }
    const pieces = planWrites(items.map((it) => it.length), this.maxWrite);
    if (pieces.length === 0) return;
    // Walk items and pieces together, handing each commit the views it covers.
    let item = 0;
    let itemStart = 0;
    for (const piece of pieces) {
      const views: Uint8Array[] = [];
      let at = piece.start;
      while (at < piece.end) {
        while (itemStart + items[item]!.length <= at) itemStart += items[item++]!.length;
        const it = items[item]!;
        const from = at - itemStart;
        const to = Math.min(it.length, piece.end - itemStart);
        views.push(from === 0 && to === it.length ? it : it.subarray(from, to));
        at = itemStart + to;
      }
      this.#commit(views, piece.end - piece.start);
    }
  }

  #checkMessage(length: number): void {
    if (length + RECORD_HEADER > this.maxWrite) {
      throw new FsbusError(
        "too_large",
        `Cannot write ${length} bytes to topic "${this.topic}": at most ${
          this.maxWrite - RECORD_HEADER
        } bytes fit (a quarter of its ${this.#ring.size}-byte ring, less a 4-byte prefix)`,
      );
    }
  }

  /** One atomic commit of `parts` (records in message mode), `total` bytes in the ring. */
  #commit(parts: readonly Uint8Array[], total: number): void {
    if (this.#closed) {
      throw new FsbusError("closed", `Cannot write to topic "${this.topic}": the writer is closed`);
    }
    const ring = this.#ring;
    ring.lock(this.#lockTimeoutMs);
    try {
      const [s, head, tail] = ring.committed();
      let p = head;
      for (const part of parts) {
        if (this.messages) {
          ring.putU32(p, part.length);
          p += RECORD_HEADER;
        }
        ring.put(p, part);
        p += part.length;
      }
      const newHead = head + total;
      let newTail = tail;
      const floor = newHead - ring.size;
      if (this.messages) {
        // Keep the oldest record boundary inside the history: records between the old tail
        // and the floor are intact (this write only overwrote bytes below the floor).
        // Each step moves at least 4 bytes and stops at the new head: at most
        // (total / 4) + 1 steps, whatever the lengths in the ring say.
        const limit = ring.maxWrite - RECORD_HEADER;
        while (newTail < floor) {
          const len = ring.getU32(newTail);
          if (len > limit || newTail + RECORD_HEADER + len > head) {
            // A damaged record (lengths are in shared memory): drop the history before it.
            newTail = newHead;
            break;
          }
          newTail += RECORD_HEADER + len;
        }
      } else {
        newTail = Math.max(0, floor);
      }
      ring.commit(s, newHead, newTail);
    } finally {
      ring.unlock();
    }
  }

  /** Releases the writer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ring.unregister(this.#slot);
    this.#ring.close();
  }

  /** Same as {@linkcode RingWriter.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
