/**
 * The filebus consumer: every new chunk of FILE (lossy), or each chunk taken and removed
 * under the lock until the empty EOF chunk (lossless).
 *
 * @module
 */

import { FsbusError, type Subscription } from "../../types.ts";
import {
  type Files,
  type Identity,
  type Lock,
  type LockFile,
  type ReadResult,
  sameChunk,
  sameIdentity,
} from "./_files.ts";
import { closeFd } from "../../sys/fs.ts";
import type { Watch } from "./_watch.ts";
import { openEndpoint } from "./_endpoint.ts";
import type { FilebusOptions } from "./options.ts";

/**
 * A running filebus consumer: an async iterable of chunks (raw bytes, as produced).
 *
 * Lossy (default): yields FILE's content now, if present and not empty, then each new chunk
 * as it is renamed in; it never ends on its own. A chunk an event says was renamed in is
 * opened without the lock (a renamed-in file is whole); any other look holds the lock only to
 * open FILE. It keeps the last chunk's file open (one descriptor) until it has handed out the
 * next, so that its inode number cannot come back with a later chunk. Lossless: takes each
 * chunk under the lock and yields it, still holding the lock; FILE is removed (so a producer
 * may write the next) when the next chunk is asked for, so a loop that stops at a chunk (say,
 * its output closed) leaves that chunk for the next consumer, as the original does. The
 * iteration ends at the empty EOF chunk. Breaking out of the loop, `close()`, disposing or
 * aborting the signal ends the iteration and releases the lock file and the inotify watch.
 *
 * @example Take chunks as they arrive
 * ```ts
 * import assert from "node:assert/strict";
 * import { consumer, producer } from "@x/fsbus/filebus";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const out = producer(`${dir}/stream`);
 * await out.write("first chunk");
 * const lengths: number[] = [];
 * {
 *   await using chunks = consumer(`${dir}/stream`); // starts with the chunk present now
 *   for await (const chunk of chunks) {
 *     lengths.push(chunk.length);
 *     if (lengths.length === 1) await out.write("second");
 *     else break;
 *   }
 * }
 * await out.close();
 * assert.deepEqual(lengths, [11, 6]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class FilebusConsumer implements Subscription<Uint8Array> {
  /** FILE's path. */
  readonly path: string;
  /** Whether this consumer takes chunks (back-pressure mode) rather than watching. */
  readonly lossless: boolean;
  readonly #files: Files;
  readonly #watch: Watch;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => void this.close();
  readonly #lock: LockFile;
  /** Whether this thread may block (the caller asked for blocking waits). */
  readonly #patient: boolean;
  #closed = false;
  #iterator: AsyncIterator<Uint8Array> | undefined;
  #inNext: Promise<IteratorResult<Uint8Array>> | undefined;
  #released = false;
  #consumed: (() => void) | undefined;

  /**
   * Opens the lock file and starts watching; {@linkcode consumer} is the usual way in.
   *
   * @param path FILE's path.
   * @param options The mode, sleep interval, file monitoring and abort signal.
   */
  constructor(path: string, options: FilebusOptions = {}) {
    const { lossless = false, signal, blockMs = 0 } = options;
    this.path = path;
    this.lossless = lossless;
    this.#patient = blockMs > 0;
    ({ files: this.#files, watch: this.#watch, lock: this.#lock } = openEndpoint(
      path,
      options,
      true,
      false,
    ));
    this.#signal = signal;
    if (this.#signal?.aborted) this.#closed = true;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** "inotify" when file events wake the consumer, "polling" when it checks on a timer. */
  get monitoring(): "inotify" | "polling" {
    return this.#watch.mode;
  }

  /** Whether libc is reachable through FFI (else Deno's file API and polling). */
  get ffi(): boolean {
    return this.#files.ffi;
  }

  /**
   * The chunks; one iteration per consumer.
   *
   * @returns The iterator.
   */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.#iterator) {
      throw new FsbusError(
        "invalid",
        `Cannot iterate the consumer of "${this.path}" again: it can be iterated once`,
      );
    }
    const gen = this.lossless ? this.#takeLoop() : this.#watchLoop();
    const finish = async <T>(r: T): Promise<T> => {
      await this.#release();
      return r;
    };
    this.#iterator = {
      next: async () => {
        this.#inNext = (async () => {
          try {
            const r = await gen.next();
            return r.done ? await finish(r) : r;
          } catch (err) {
            await this.#release();
            throw err;
          }
        })();
        try {
          return await this.#inNext;
        } finally {
          this.#inNext = undefined;
        }
      },
      return: async () => {
        this.#closed = true;
        this.#watch.wake();
        if (this.#inNext) await this.#inNext.catch(() => {});
        await gen.return(undefined);
        return await finish({ done: true as const, value: undefined });
      },
    };
    return this.#iterator;
  }

  async #lockNow(): Promise<Lock> {
    const lock = await this.#lock.take();
    if (this.#closed) {
      lock.unlock();
      throw new Closed();
    }
    return lock;
  }

  async *#watchLoop(): AsyncGenerator<Uint8Array, void, undefined> {
    const files = this.#files;
    const watch = this.#watch;
    let last: Identity | undefined;
    // The last chunk read stays open (FFI), so its inode number cannot be given to a later
    // chunk: the same inode (unchanged) is the same chunk, another inode a new one, with no
    // need to match events to chunks under the lock. (Its change time is not compared: it
    // moves when the next chunk replaces it, which can happen between the open under the lock
    // and the check after it, and it would then be taken for a new chunk.)
    let held: number | undefined;
    let stale: number | undefined; // the chunk before `held`, closed after the yield
    const same = files.ffi ? sameChunk : sameIdentity;
    let first = true;
    let emitCurrent = true; // the first look emits what FILE holds
    let timedOut = false;
    try {
      while (!this.#closed) {
        // Cheap checks outside the lock: only look under it when something may have changed.
        // At the start, look (and lock) only when FILE is there: a lossy consumer makes no
        // FILE.lock before there is a chunk, as the original.
        let look = first && files.stat() !== undefined;
        let renamedIn = false;
        if (!first) {
          const changes = watch.drain();
          if (changes.lockReplaced) this.#lock.replaced();
          if (changes.arrived) {
            look = true;
            renamedIn = files.ffi;
          } else if (changes.unsure || timedOut) {
            const st = files.stat();
            look = st !== undefined && !same(st.id, last);
          }
        }
        let chunk: Uint8Array | undefined;
        if (look) {
          // A chunk an event says was renamed in is whole (writers fill FILE.__new__ first):
          // FILE is opened without the lock, which would only make this consumer wait for the
          // writer's unlock after its rename (a quarter of the chunks waited 0.1-0.2 ms on a
          // busy machine, the writer having lost its CPU to the consumer it woke) and the
          // writer wait for the readers. Any other look (the first, after lost events or a
          // timeout, or polling) takes the lock, held only to open FILE (or, without FFI, to
          // read it), so that a FILE written in place under the lock is read whole: on this
          // thread when it is free or soon is (no promise to settle), else waited for.
          const lock = renamedIn
            ? undefined
            : this.#lock.takeNow(this.#patient) ?? await this.#lockNow();
          let fd: number | undefined;
          let r: ReadResult | undefined;
          try {
            if (files.ffi) fd = files.openChunk();
            else r = files.read();
          } finally {
            lock?.unlock();
          }
          if (fd !== undefined) {
            // A renamed-in chunk never changes: check and read it with the lock released.
            let keep = false;
            try {
              const id = files.chunkIdentity(fd);
              if (emitCurrent || !same(id, last)) {
                chunk = files.readChunk(fd, id.size);
                last = id;
                keep = true;
              }
            } finally {
              if (keep) {
                // The previous chunk's file is closed once this one is handed out: its close
                // (often the inode's last reference, so its eviction) is off the chunk's path.
                if (held !== undefined) stale = held;
                held = fd;
              } else closeFd(fd);
            }
          } else if (r !== undefined) {
            if (emitCurrent || !sameIdentity(r.id, last)) chunk = r.data;
            last = r.id;
          }
          emitCurrent = false;
        }
        first = false;
        if (chunk !== undefined && chunk.length > 0) yield chunk;
        if (stale !== undefined) {
          closeFd(stale);
          stale = undefined;
        }
        if (this.#closed) break;
        timedOut = await watch.wait();
      }
    } catch (err) {
      if (!(err instanceof Closed)) throw err;
    } finally {
      if (stale !== undefined) closeFd(stale);
      if (held !== undefined) closeFd(held);
    }
  }

  async *#takeLoop(): AsyncGenerator<Uint8Array, void, undefined> {
    const files = this.#files;
    const watch = this.#watch;
    try {
      while (!this.#closed) {
        const changes = watch.drain();
        if (changes.lockReplaced) this.#lock.replaced();
        if (files.stat() === undefined) {
          await watch.wait();
          continue;
        }
        const lock = this.#lock.takeNow() ?? await this.#lockNow();
        try {
          const r = files.read();
          if (r === undefined) continue; // another consumer took it
          if (r.data.length === 0) {
            files.unlink();
            return; // the EOF marker
          }
          // As the original: hand the chunk out, and remove FILE ("consumed") only once the
          // caller comes back for the next one (or calls consumed()). A caller that stops
          // here (its output closed) leaves the chunk for the next consumer.
          let removed = false;
          this.#consumed = () => {
            if (removed) return;
            removed = true;
            files.unlink();
          };
          yield r.data;
          this.#consumed();
        } finally {
          this.#consumed = undefined;
          lock.unlock();
        }
      }
    } catch (err) {
      if (!(err instanceof Closed)) throw err;
    }
  }

  /**
   * Lossless: says that the chunk just yielded was used (written out), so FILE is removed
   * now, under the lock still held, rather than when the loop asks for the next chunk. A
   * loop that stops after a chunk it has used (a count reached) then leaves nothing behind
   * for the next consumer. Lossy, or with no chunk pending, it does nothing.
   *
   * @example Take exactly one chunk of a queue
   * ```ts
   * import assert from "node:assert/strict";
   * import { consumer, producer } from "@x/fsbus/filebus";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const out = producer(`${dir}/jobs`, { lossless: true });
   * const writing = out.write("job 1");
   * {
   *   await using jobs = consumer(`${dir}/jobs`, { lossless: true });
   *   for await (const chunk of jobs) {
   *     assert.equal(new TextDecoder().decode(chunk), "job 1");
   *     jobs.consumed(); // used: FILE goes now, not when the loop comes back
   *     break;
   *   }
   * }
   * await writing; // the producer saw it taken
   * await out.abort();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  consumed(): void {
    this.#consumed?.();
  }

  async #release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#lock.close();
    await this.#watch.close();
  }

  /** Ends the iteration and releases the lock file and watch; safe to call more than once. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#watch.wake();
    if (this.#iterator) await this.#iterator.return!();
    else await this.#release();
  }

  /** Same as {@linkcode FilebusConsumer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

class Closed extends Error {}

/**
 * Starts a filebus consumer on FILE.
 *
 * Throws at once when FILE.lock cannot be opened or created (a missing directory, no
 * permission) or when FILE is not a regular file.
 *
 * @param path FILE's path.
 * @param options The mode (`lossless`), sleep interval, file monitoring and abort signal.
 * @returns The consumer: iterate it for chunks.
 *
 * @example Take chunks until the producer's EOF marker
 * ```ts
 * import assert from "node:assert/strict";
 * import { consumer, producer } from "@x/fsbus/filebus";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const jobs = `${dir}/jobs`;
 * const writing = (async () => {
 *   await using out = producer(jobs, { lossless: true });
 *   await out.write("a");
 *   await out.write("b");
 * })(); // closing writes the EOF marker, which ends the consumer's loop
 * const parts: string[] = [];
 * for await (const chunk of consumer(jobs, { lossless: true })) {
 *   parts.push(new TextDecoder().decode(chunk));
 * }
 * await writing;
 * assert.deepEqual(parts, ["a", "b"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function consumer(path: string, options: FilebusOptions = {}): FilebusConsumer {
  return new FilebusConsumer(path, options);
}
