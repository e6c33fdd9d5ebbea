/**
 * A FUSE file server: reads kernel requests from `/dev/fuse`, calls a typed
 * {@linkcode FileSystem}, and writes the replies, with deferred replies (a request parked
 * now and answered later; FUSE_INTERRUPT ends a parked request with EINTR at once).
 *
 * Requests are read without a thread hand-off: the device is non-blocking and drained on the
 * calling thread; between bursts the server waits in `poll(2)`, either on a worker thread
 * (default: the event loop stays free) or, with `blockMs`, on this thread for up to that many
 * milliseconds between event-loop turns (fastest, for processes that only serve). Replies are
 * written synchronously. Other descriptors can join the same wait ({@linkcode FuseServer.watch}).
 *
 * This file is the loop and the connection's life (wait, stop, unmount); decoding a request,
 * calling the file system and writing its reply are in `_requests.ts`, the API a file system
 * implements in `file_system.ts`, and the structures on the wire in `_wire.ts`.
 *
 * @module
 */

import { errno, libc } from "../libc.ts";
import { Errno } from "../errno.ts";
import { closeFd, O, openFd } from "../fs.ts";
import { yieldTurn } from "../poll.ts";
import { monotonicMs } from "../clock.ts";
import { SIZE } from "./_wire.ts";
import type { FileSystem } from "./file_system.ts";
import { BUF_SIZE, Requests } from "./_requests.ts";
import { type FuseConnection, mountTable, unmountPath } from "./mount.ts";

const { ENODEV, ENOENT } = Errno;
const POLLIN = 1;
const POLLPRI = 2;
const POLLERR = 8;
const IN_LENGTH = BigInt(BUF_SIZE);
const YIELD_EVERY_MS = 20;
const GRACE_MS = 2000;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/** Options for {@linkcode FuseServer}. */
export interface ServeOptions {
  /**
   * Wait for requests by blocking this thread in `poll(2)` for up to this many milliseconds
   * at a time, with an event-loop turn in between (and at least every 20 ms when busy).
   * 0: wait on a worker thread, leaving the event loop free.
   *
   * @default {0}
   */
  blockMs?: number;
  /**
   * Spin-then-block: while requests come fast (the last two waits for one were shorter than
   * four times this, or the last spin caught one), keep polling without blocking for up to
   * this many microseconds after the last request before blocking, so that this thread is
   * already awake when a client's next request comes (one wake-up less per request on a
   * machine where they are expensive). Costs up to this much CPU after each burst, none
   * while requests come slowly or not at all. 0: block at once.
   *
   * @default {0}
   */
  spinUs?: number;
  /**
   * How long the kernel may cache names, in milliseconds.
   *
   * @default {1000}
   */
  entryTtlMs?: number;
  /**
   * How long the kernel may cache attributes, in milliseconds.
   *
   * @default {1000}
   */
  attrTtlMs?: number;
  /** Told about unexpected errors in methods (answered EIO) and in the server. */
  onError?: (err: unknown, op: string) => void;
}

interface Watch {
  fd: number;
  events: number;
  onReady: (revents: number) => void;
}

/**
 * Serves a {@linkcode FileSystem} on a mounted FUSE connection until it is unmounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fuseMount, mountAt } from "./mount.ts";
 * import { type FileSystem, FuseError } from "./file_system.ts";
 * import { FuseServer } from "./server.ts";
 * const empty: FileSystem = {
 *   lookup: () => {
 *     throw new FuseError(2); // ENOENT
 *   },
 *   getattr: () => ({ mode: 0o040755 }),
 *   readdir: () => [],
 * };
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const server = new FuseServer(await fuseMount(dir, { fsname: "x", subtype: "x" }), empty);
 * const ls = await new Deno.Command("ls", { args: ["-A", dir] }).output(); // served
 * assert.equal(ls.code, 0);
 * assert.equal(ls.stdout.length, 0);
 * await new Deno.Command("umount", { args: [dir] }).output(); // as root; or server.stop()
 * await server.done; // until unmounted
 * assert.equal(mountAt(dir), undefined);
 * Deno.removeSync(dir);
 * ```
 */
export class FuseServer {
  /** The connection served. */
  readonly connection: FuseConnection;
  /** Resolves when the server has stopped and the mount is gone. */
  readonly done: Promise<void>;
  readonly #fs: FileSystem;
  readonly #fd: number;
  readonly #blockMs: number;
  readonly #spinMs: number;
  /** Blocking waits in a row that were short (see ServeOptions.spinUs). */
  #shortWaits = 0;
  /** When the last request was seen (monotonicMs()), for the spin. */
  #lastRequest = -Infinity;
  readonly #onError: (err: unknown, op: string) => void;
  readonly #requests: Requests;
  readonly #watches: Watch[] = [];
  readonly #idle: (() => number | void)[] = [];
  readonly #efd: number;
  readonly #mountsFd: number;
  #pfds = new Uint8Array(0);
  #pfdsView = new DataView(this.#pfds.buffer);
  #pfdsDirty = true;
  #stopping = false;
  #closed = false;
  #graceUntil = 0;

  /**
   * Starts serving.
   *
   * @param connection The mounted connection (from `fuseMount`).
   * @param fs The file system.
   * @param options How to wait, cache timeouts, error reporting.
   */
  constructor(connection: FuseConnection, fs: FileSystem, options: ServeOptions = {}) {
    this.connection = connection;
    this.#fs = fs;
    this.#fd = connection.fd;
    const { blockMs = 0, spinUs = 0, entryTtlMs = 1000, attrTtlMs = 1000, onError = () => {} } =
      options;
    this.#blockMs = Math.max(0, blockMs);
    this.#spinMs = Math.max(0, spinUs) / 1000;
    this.#onError = onError;
    const host = (server: FuseServer) => ({
      get closed() {
        return server.#closed;
      },
      get stopping() {
        return server.#stopping;
      },
      shutdown: (unmount: boolean, now: boolean) => server.#shutdown(unmount, now),
    });
    this.#requests = new Requests(this.#fd, fs, { entryTtlMs, attrTtlMs, onError }, host(this));
    this.#efd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    let mfd = -1;
    try {
      mfd = openFd("/proc/self/mountinfo", O.RDONLY);
    } catch {
      // without it, an unmount by someone else is noticed when the kernel says ENODEV
    }
    this.#mountsFd = mfd;
    this.done = this.#run();
  }

  /** How many requests are parked. */
  get parked(): number {
    return this.#requests.parked;
  }

  /**
   * Adds a descriptor to the server's wait: `onReady` runs on the server's thread when it is
   * ready (for example an inotify descriptor whose events answer parked reads).
   *
   * @param fd The descriptor.
   * @param onReady Called with the `poll(2)` revents.
   * @param events The `poll(2)` events (default POLLIN).
   * @returns A function that removes the watch.
   */
  watch(fd: number, onReady: (revents: number) => void, events = POLLIN): () => void {
    const w: Watch = { fd, events, onReady };
    this.#watches.push(w);
    this.#pfdsDirty = true;
    this.#wake();
    return () => {
      const i = this.#watches.indexOf(w);
      if (i >= 0) this.#watches.splice(i, 1);
      this.#pfdsDirty = true;
    };
  }

  /**
   * Runs `fn` on the server's thread each time it has handled every request there is, before
   * it waits for more: work that can wait for the end of a burst (one call for many requests).
   * `fn` may return a number of milliseconds: the server then waits at most about that long
   * (at least 1 ms) before it runs `fn` again, even if no request comes.
   *
   * @param fn What to run; returns how soon it wants to run again, if it does.
   * @returns A function that removes it.
   */
  idle(fn: () => number | void): () => void {
    this.#idle.push(fn);
    return () => {
      const i = this.#idle.indexOf(fn);
      if (i >= 0) this.#idle.splice(i, 1);
    };
  }

  /**
   * Stops serving: parked requests are answered (reads with end of file), the mount is
   * detached and the connection closed. Safe to call more than once.
   *
   * @returns {@linkcode FuseServer.done}.
   */
  stop(): Promise<void> {
    this.#shutdown(true);
    return this.done;
  }

  /**
   * Stops at once, synchronously (for exit handlers): the same as {@linkcode FuseServer.stop}
   * without waiting for the loop to return.
   */
  stopSync(): void {
    this.#shutdown(true, true);
  }

  #wake(): void {
    const one = new Uint8Array(8);
    one[0] = 1;
    libc().write(this.#efd, one, 8n);
  }

  /**
   * Starts stopping: parked requests are answered (reads with end of file), the mount is
   * detached, and the server goes on answering what its callers still do (a `cat` that got
   * end of file closes its file) until the kernel says the connection is gone, for at most
   * a grace period. `now` (or fusermount3, which may look at the mount point while this
   * thread waits for it) closes the connection at once instead.
   */
  #shutdown(unmount: boolean, now = false): void {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#graceUntil = monotonicMs() + GRACE_MS;
      try {
        this.#fs.shutdown?.();
      } catch (err) {
        this.#onError(err, "shutdown");
      }
      this.#requests.answerParked();
    }
    if (this.#closed) return;
    if (!now && (!unmount || this.connection.method === "mount")) {
      // umount2 does not wait for this server: detach, then keep serving until ENODEV.
      if (unmount) this.#unmount();
      this.#wake();
      return;
    }
    this.#close();
    if (unmount) this.#unmount();
  }

  #unmount(): void {
    if (!this.#mounted()) return;
    try {
      unmountPath(this.connection.mountpoint, this.connection.method, true);
    } catch (err) {
      this.#onError(err, "unmount");
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#requests.answerParked();
    this.#closed = true;
    closeFd(this.#fd);
    this.#wake();
  }

  #mounted(): boolean {
    try {
      return mountTable().some((m) => m.id === this.connection.mountId);
    } catch {
      return true;
    }
  }

  #buildPfds(): void {
    const fds: [number, number][] = [[this.#fd, POLLIN], [this.#efd, POLLIN]];
    if (this.#mountsFd >= 0) fds.push([this.#mountsFd, POLLPRI]);
    for (const w of this.#watches) fds.push([w.fd, w.events]);
    this.#pfds = new Uint8Array(fds.length * 8);
    const v = this.#pfdsView = new DataView(this.#pfds.buffer);
    fds.forEach(([fd, ev], i) => {
      v.setInt32(i * 8, fd, true);
      v.setInt16(i * 8 + 4, ev, true);
    });
    this.#pfdsDirty = false;
  }

  async #run(): Promise<void> {
    const c = libc();
    // Let the constructor's caller finish first (install signal handlers, watches).
    await Promise.resolve();
    let lastYield = monotonicMs();
    let ready = true;
    try {
      while (!this.#closed) {
        // Only when poll said so: a wake-up for a watch or an idle function's timer reads
        // no request.
        if (ready || this.#stopping) this.#drain();
        if (this.#closed) break;
        let again = -1;
        for (const fn of this.#idle) {
          try {
            const ms = fn();
            if (typeof ms === "number" && ms >= 0) {
              const at = Math.max(1, Math.ceil(ms));
              if (again < 0 || at < again) again = at;
            }
          } catch (err) {
            this.#onError(err, "idle");
          }
        }
        if (this.#stopping && monotonicMs() > this.#graceUntil) break;
        if (this.#pfdsDirty) this.#buildPfds();
        const pfds = this.#pfds;
        const count = BigInt(pfds.length / 8);
        let n: number;
        let limit = this.#stopping ? Math.max(1, Math.ceil(this.#graceUntil - monotonicMs())) : -1;
        if (again >= 0 && (limit < 0 || again < limit)) limit = again;
        const spin = this.#spinMs > 0;
        const spun = spin && limit !== 0 && this.#shortWaits >= 2;
        n = spun ? this.#spin(pfds, count) : 0;
        let now = 0; // when the wait ended (read only when needed)
        if (this.#blockMs > 0) {
          const timeout = limit >= 0 ? Math.min(limit, this.#blockMs) : this.#blockMs;
          if (n === 0) {
            const from = spin ? monotonicMs() : 0;
            n = c.poll(pfds, count, timeout);
            now = monotonicMs();
            if (spin) this.#waited(n, now - from);
          } else now = monotonicMs();
          // A turn of the event loop after a wait with nothing to do, and at least every
          // YIELD_EVERY_MS; not when an idle function only asked to run again.
          if ((n <= 0 && timeout !== again) || now - lastYield > YIELD_EVERY_MS) {
            await yieldTurn();
            lastYield = monotonicMs();
          }
        } else {
          if (!spun) n = c.poll(pfds, count, 0);
          if (n === 0) {
            const from = spin ? monotonicMs() : 0;
            n = await c.poll_async(pfds, count, limit);
            if (spin) {
              now = lastYield = monotonicMs();
              this.#waited(n, now - from);
            }
          } else if (spun) {
            // A spin that keeps catching requests still lets the event loop turn.
            now = monotonicMs();
            if (now - lastYield > YIELD_EVERY_MS) {
              await yieldTurn();
              lastYield = monotonicMs();
            }
          }
        }
        ready = n < 0 || (n > 0 && this.#pfdsView.getInt16(6, true) !== 0);
        if (ready && spin) this.#lastRequest = now > 0 ? now : monotonicMs();
        if (n > 0 && !this.#closed) this.#afterPoll(pfds);
      }
    } catch (err) {
      this.#onError(err, "serve");
    } finally {
      this.#shutdown(true);
      this.#close();
      closeFd(this.#efd);
      if (this.#mountsFd >= 0) closeFd(this.#mountsFd);
    }
  }

  /**
   * Polls without blocking until something is ready or `spinUs` has passed since the last
   * request (see ServeOptions.spinUs); returns what the last poll(2) returned (0: nothing).
   */
  #spin(pfds: Uint8Array, count: bigint): number {
    const c = libc();
    const until = this.#lastRequest + this.#spinMs;
    let n = 0;
    while (n === 0 && monotonicMs() < until) n = c.poll(pfds, count, 0);
    return n;
  }

  /** Counts a blocking wait of `ms` that ended with `n` (see ServeOptions.spinUs). */
  #waited(n: number, ms: number): void {
    this.#shortWaits = n > 0 && ms < 4 * this.#spinMs ? this.#shortWaits + 1 : 0;
  }

  #afterPoll(pfds: Uint8Array): void {
    const v = this.#pfdsView;
    const count = pfds.length / 8;
    if (v.getInt16(14, true) !== 0) libc().read(this.#efd, new Uint8Array(8), 8n);
    let i = 2;
    if (this.#mountsFd >= 0) {
      if (v.getInt16(i * 8 + 6, true) & (POLLPRI | POLLERR)) {
        if (!this.#stopping && !this.#mounted()) this.#shutdown(false);
      }
      i++;
    }
    if (this.#stopping) return;
    const watches = [...this.#watches];
    for (let w = 0; i < count; i++, w++) {
      const rev = v.getInt16(i * 8 + 6, true);
      if (rev === 0) continue;
      const watch = watches[w];
      if (watch === undefined) continue;
      try {
        watch.onReady(rev);
      } catch (err) {
        this.#onError(err, "watch");
      }
      if (this.#stopping) return;
    }
  }

  /** Reads and handles every request available now. */
  #drain(): void {
    const c = libc();
    const buf = this.#requests.input;
    const after = this.#fs.afterReply;
    for (;;) {
      if (this.#closed) return;
      const n = Number(c.read(this.#fd, buf, IN_LENGTH));
      if (n < 0) {
        const e = errno();
        if (e === Errno.EAGAIN) return;
        if (e === Errno.EINTR || e === ENOENT) continue;
        if (e === ENODEV) {
          this.#shutdown(false, true); // unmounted, and every file closed
          return;
        }
        throw new Error(`Cannot read from /dev/fuse: errno ${e}`);
      }
      if (n < SIZE.IN_HEADER) continue;
      this.#requests.dispatch(n);
      if (after !== undefined) {
        try {
          after.call(this.#fs);
        } catch (err) {
          this.#onError(err, "afterReply");
        }
      }
    }
  }
}
