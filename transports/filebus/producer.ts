/**
 * The filebus producer: each chunk written to FILE.__new__ and renamed over FILE under the
 * lock; in lossless mode, only once the previous chunk has been consumed, with an empty
 * chunk as EOF.
 *
 * @module
 */

import { FsbusError, toBytes } from "../../types.ts";
import type { Files, LockFile } from "./_files.ts";
import type { Watch } from "./_watch.ts";
import { openEndpoint } from "./_endpoint.ts";
import type { FilebusOptions } from "./options.ts";

/**
 * A filebus producer. Writes are taken in call order; each resolves once its chunk is FILE.
 * The bytes given to `write()` must not change until its promise resolves.
 *
 * Lossy (default): each write replaces FILE at once; while one is in progress (waiting for
 * the lock), only the latest of the writes made meanwhile is written and the others resolve
 * with it (superseded, as the lossy protocol allows). Lossless: each write first waits until
 * FILE is gone (a consumer took the previous chunk), and none is skipped; `close()` then
 * writes the empty EOF chunk the same way. Aborting the signal makes pending and later
 * writes fail.
 *
 * @example Publish three chunks, losslessly, then EOF
 * ```ts
 * import assert from "node:assert/strict";
 * import { consumer, producer } from "@x/fsbus/filebus";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const jobs = `${dir}/jobs`;
 * const taking = Array.fromAsync(consumer(jobs, { lossless: true }));
 * {
 *   await using out = producer(jobs, { lossless: true });
 *   for (const job of ["a", "b", "c"]) await out.write(job);
 * } // disposing (or close()) writes the EOF marker after "c" has been taken
 * const taken = (await taking).map((chunk) => new TextDecoder().decode(chunk));
 * assert.deepEqual(taken, ["a", "b", "c"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class FilebusProducer implements AsyncDisposable {
  /** FILE's path. */
  readonly path: string;
  /** Whether writes wait for the previous chunk to be consumed. */
  readonly lossless: boolean;
  readonly #files: Files;
  readonly #watch: Watch;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.#abort();
  readonly #lock: LockFile;
  #tail: Promise<void> = Promise.resolve();
  #latest: Uint8Array | undefined;
  #latestWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  #pumping: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #aborted = false;
  #released = false;

  /**
   * Opens the lock file and, in lossless mode, starts watching; {@linkcode producer} is the
   * usual way in.
   *
   * @param path FILE's path.
   * @param options The mode, sleep interval, file monitoring and abort signal.
   */
  constructor(path: string, options: FilebusOptions = {}) {
    const { lossless = false, signal } = options;
    this.path = path;
    this.lossless = lossless;
    // Lossy producers never wait for FILE, so their watch only sleeps.
    ({ files: this.#files, watch: this.#watch, lock: this.#lock } = openEndpoint(
      path,
      options,
      this.lossless,
      true,
    ));
    this.#signal = signal;
    if (this.#signal?.aborted) this.#aborted = true;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** "inotify" when file events wake a waiting write, "polling" otherwise. */
  get monitoring(): "inotify" | "polling" {
    return this.lossless ? this.#watch.mode : "polling";
  }

  /** Whether libc is reachable through FFI (else Deno's file API and polling). */
  get ffi(): boolean {
    return this.#files.ffi;
  }

  /**
   * Publishes one chunk (an empty chunk is skipped: in lossless mode it would mean EOF).
   *
   * @param data The chunk: bytes, or text encoded as UTF-8.
   * @returns A promise that resolves once the chunk is FILE.
   */
  write(data: Uint8Array | string): Promise<void> {
    if (this.#closing) {
      return Promise.reject(
        new FsbusError("closed", `Cannot write to "${this.path}": the producer is closed`),
      );
    }
    const bytes = toBytes(data);
    if (bytes.length === 0) return this.#tail;
    if (this.lossless) return this.#enqueue(bytes);
    // Lossy: the latest chunk wins. A chunk still queued when a newer one comes is
    // superseded (its promise resolves with the newer one's), so a slow file system can never
    // build a backlog of stale chunks.
    return new Promise<void>((resolve, reject) => {
      this.#latest = bytes;
      this.#latestWaiters.push({ resolve, reject });
      if (this.#pumping === undefined) {
        this.#pumping = this.#pump();
        this.#tail = this.#pumping;
      }
    });
  }

  async #pump(): Promise<void> {
    while (this.#latest !== undefined) {
      const bytes = this.#latest;
      const waiters = this.#latestWaiters;
      this.#latest = undefined;
      this.#latestWaiters = [];
      try {
        await this.#put(bytes);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.#pumping = undefined;
  }

  #enqueue(bytes: Uint8Array): Promise<void> {
    const next = this.#tail.then(() => this.#put(bytes));
    this.#tail = next.catch(() => {});
    return next;
  }

  #checkAborted(): void {
    if (this.#aborted) {
      throw new FsbusError("closed", `Cannot write to "${this.path}": the producer was aborted`);
    }
  }

  async #takeLock(): Promise<{ unlock(): void }> {
    const lock = await this.#lock.take();
    try {
      this.#checkAborted();
    } catch (err) {
      lock.unlock();
      throw err;
    }
    return lock;
  }

  async #put(bytes: Uint8Array): Promise<void> {
    this.#checkAborted();
    const files = this.#files;
    if (!this.lossless) {
      // Taken on this thread when free (or soon free): no promise to settle per chunk.
      const lock = this.#lock.takeNow() ?? await this.#takeLock();
      try {
        files.write(bytes);
      } finally {
        lock.unlock();
      }
      return;
    }
    for (;;) {
      const changes = this.#watch.drain();
      if (changes.lockReplaced) this.#lock.replaced();
      if (files.stat() !== undefined) {
        await this.#watch.wait();
        this.#checkAborted();
        continue;
      }
      const lock = await this.#takeLock();
      try {
        // Another producer may have been quicker.
        if (files.stat() !== undefined) continue;
        files.write(bytes);
        return;
      } finally {
        lock.unlock();
      }
    }
  }

  #abort(): void {
    this.#aborted = true;
    this.#watch.wake();
  }

  /**
   * Finishes: waits for queued writes, writes the EOF marker in lossless mode (once the last
   * chunk has been consumed), and releases the lock file and watch.
   *
   * @returns A promise that resolves when done; rejects if a queued write failed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        if (this.lossless && !this.#aborted) await this.#enqueue(new Uint8Array(0));
        else await this.#tail;
      } finally {
        this.#release();
        await this.#watch.close();
      }
    })();
    return this.#closing;
  }

  /**
   * Stops at once without writing the EOF marker: pending writes fail.
   *
   * @returns A promise that resolves when resources are released.
   */
  async abort(): Promise<void> {
    this.#abort();
    await this.#tail;
    this.#release();
    await this.#watch.close();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#lock.close();
  }

  /** Same as {@linkcode FilebusProducer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a filebus producer on FILE.
 *
 * Throws at once when FILE.lock cannot be opened or created (a missing directory, no
 * permission) or when FILE exists and is not a regular file.
 *
 * @param path FILE's path.
 * @param options The mode (`lossless`), sleep interval, file monitoring and abort signal.
 * @returns The producer.
 *
 * @example Overwrite FILE with the latest reading, lossily
 * ```ts
 * import assert from "node:assert/strict";
 * import { producer } from "@x/fsbus/filebus";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const out = producer(`${dir}/temperature`);
 * await out.write("21.5\n");
 * await out.close();
 * assert.equal(Deno.readTextFileSync(`${dir}/temperature`), "21.5\n");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function producer(path: string, options: FilebusOptions = {}): FilebusProducer {
  return new FilebusProducer(path, options);
}
