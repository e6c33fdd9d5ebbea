/**
 * Waiting on file descriptors without blocking the event loop: `poll(2)` on a worker thread,
 * plus an `eventfd(2)` so that a wait can always be cut short and the process can exit.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

/** `poll(2)` event bits. */
export const POLL = { IN: 0x1, PRI: 0x2, OUT: 0x4, ERR: 0x8, HUP: 0x10, NVAL: 0x20 } as const;

const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/**
 * How a {@linkcode Waiter.wait} ended: a watched descriptor is ready, {@linkcode Waiter.wake}
 * was called, or the timeout passed.
 */
export type WaitResult = "ready" | "woken" | "timeout";

/**
 * Waits for any of a set of descriptors to become ready, cancellably.
 *
 * One wait at a time. `wake()` ends a pending wait at once (from anywhere, any number of
 * times); `close()` wakes, waits for the worker thread to return, then frees the eventfd,
 * so no poll is ever left running on a closed descriptor.
 *
 * @example Wait for a descriptor to be readable, at most one second
 * ```ts
 * import assert from "node:assert/strict";
 * import { POLL, Waiter } from "./poll.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/null", O.RDONLY); // always readable (at end of file)
 * {
 *   await using w = new Waiter([fd], POLL.IN);
 *   assert.equal(await w.wait(1000), "ready");
 * }
 * {
 *   await using idle = new Waiter([]); // nothing to watch: only wake() or the timeout end it
 *   const pending = idle.wait(1000);
 *   idle.wake();
 *   assert.equal(await pending, "woken");
 * }
 * closeFd(fd);
 * ```
 */
export class Waiter implements AsyncDisposable {
  readonly #efd: number;
  readonly #pfds: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  readonly #count: number;
  #pending: Promise<WaitResult> | undefined;
  #closed = false;

  /**
   * Makes a waiter for `fds`.
   *
   * @param fds The descriptors to watch.
   * @param events The `POLL.*` events to wait for (the same for each descriptor).
   */
  constructor(fds: readonly number[], events: number = POLL.IN) {
    this.#efd = check(libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd");
    this.#count = fds.length + 1;
    this.#pfds = new Uint8Array(8 * this.#count);
    this.#view = new DataView(this.#pfds.buffer);
    fds.forEach((fd, i) => this.#set(i, fd, events));
    this.#set(fds.length, this.#efd, POLL.IN);
  }

  #set(i: number, fd: number, events: number): void {
    this.#view.setInt32(i * 8, fd, true);
    this.#view.setInt16(i * 8 + 4, events, true);
  }

  /**
   * The `revents` of the i-th watched descriptor after the last wait.
   *
   * @param i The index in the array given to the constructor.
   * @returns The `POLL.*` bits reported.
   */
  revents(i: number): number {
    return this.#view.getInt16(i * 8 + 6, true);
  }

  /** Whether {@linkcode Waiter.close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Waits until a descriptor is ready, `wake()` is called, or `timeoutMs` passes.
   *
   * @param timeoutMs The longest wait in milliseconds; negative means no limit.
   * @returns How the wait ended.
   */
  wait(timeoutMs = -1): Promise<WaitResult> {
    if (this.#closed) return Promise.resolve("woken");
    if (this.#pending) throw new Error("Waiter.wait() called while a wait is pending");
    const pending = this.#poll(timeoutMs);
    this.#pending = pending;
    return pending.finally(() => {
      this.#pending = undefined;
    });
  }

  /**
   * Waits on the calling thread, blocking the event loop, until a descriptor is ready or
   * `timeoutMs` passes. One thread wake-up less than {@linkcode Waiter.wait}, so the fastest
   * way to wait for a process that has nothing else to do meanwhile; use short timeouts and
   * give the event loop a turn between waits.
   *
   * @param timeoutMs The longest wait in milliseconds (0 or more).
   * @returns How the wait ended.
   */
  waitSync(timeoutMs: number): WaitResult {
    if (this.#closed) return "woken";
    let n = libc().poll(this.#pfds, BigInt(this.#count), Math.max(0, Math.floor(timeoutMs)));
    if (n < 0) {
      const e = errno();
      if (e !== Errno.EINTR) throw new SysError("poll", e);
      n = 0;
    }
    return this.#outcome(n);
  }

  async #poll(timeoutMs: number): Promise<WaitResult> {
    const c = libc();
    // Fast path: something may already be ready.
    let n = c.poll(this.#pfds, BigInt(this.#count), 0);
    if (n === 0 && timeoutMs !== 0) {
      const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
      for (;;) {
        const left = deadline === Infinity
          ? -1
          : Math.max(0, Math.ceil(deadline - performance.now()));
        n = await c.poll_async(this.#pfds, BigInt(this.#count), left);
        // errno is not readable after an async call; a negative result is EINTR in practice.
        if (n >= 0) break;
      }
    } else if (n < 0) {
      const e = errno();
      if (e !== Errno.EINTR) throw new SysError("poll", e);
      n = 0;
    }
    return this.#outcome(n);
  }

  #outcome(n: number): WaitResult {
    if (n === 0) return "timeout";
    if (this.revents(this.#count - 1) !== 0) {
      this.#drainEventfd();
      return "woken";
    }
    return "ready";
  }

  #drainEventfd(): void {
    libc().read(this.#efd, new Uint8Array(8), 8n);
  }

  /** Ends a pending (or the next) wait with "woken". Safe to call from anywhere, any time. */
  wake(): void {
    if (this.#closed && this.#pending === undefined) return;
    const one = new Uint8Array(8);
    one[0] = 1;
    libc().write(this.#efd, one, 8n);
  }

  /** Wakes any pending wait, waits for it to return, and frees the eventfd. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending) {
      this.wake();
      await this.#pending.catch(() => {});
    }
    libc().close(this.#efd);
  }

  /** Closes the waiter, as {@linkcode Waiter.close} does: `await using w = new Waiter(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Gives the event loop one turn (timers, signal handlers, I/O callbacks) without the clamping
 * of nested timers: what a loop that blocks in {@linkcode Waiter.waitSync} does between waits.
 *
 * @returns A promise resolved on the next macrotask.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { yieldTurn } from "./poll.ts";
 * let ran = false;
 * setTimeout(() => (ran = true), 0);
 * while (!ran) await yieldTurn();
 * assert.ok(ran);
 * ```
 */
export function yieldTurn(): Promise<void> {
  return new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      port2.close(); // both ends, or every turn leaks a channel
      resolve();
    };
    port2.postMessage(0);
  });
}

/**
 * Gives the event loop one turn, as {@linkcode yieldTurn} does, through `setImmediate`: due
 * timers run, and the I/O driver is polled as often (every few dozen turns), at a fraction of
 * the cost (some 10 µs of CPU on this kind of machine against 60-150 µs for a new
 * `MessageChannel`, whose ports are made, posted through and closed on every turn). For loops
 * that block in {@linkcode Waiter.waitSync} and turn every few milliseconds.
 *
 * @returns A promise resolved once the event loop has had its turn.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { yieldImmediate } from "./poll.ts";
 * let ran = false;
 * setTimeout(() => (ran = true), 0);
 * while (!ran) await yieldImmediate();
 * assert.ok(ran);
 * ```
 */
export function yieldImmediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
