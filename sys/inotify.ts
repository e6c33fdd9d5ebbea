/**
 * inotify(7) through FFI: every event of every read, `IN_Q_OVERFLOW` surfaced, and waits
 * that can be cancelled so a process never hangs on a watch.
 *
 * @module
 */

import { check, cstring, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { Waiter, type WaitResult } from "./poll.ts";

/**
 * inotify event bits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IN } from "./inotify.ts";
 * const mask = IN.CLOSE_WRITE | IN.MOVED_TO;
 * assert.equal(mask, 0x88);
 * ```
 */
export const IN = {
  ACCESS: 0x1,
  MODIFY: 0x2,
  ATTRIB: 0x4,
  CLOSE_WRITE: 0x8,
  CLOSE_NOWRITE: 0x10,
  OPEN: 0x20,
  MOVED_FROM: 0x40,
  MOVED_TO: 0x80,
  CREATE: 0x100,
  DELETE: 0x200,
  DELETE_SELF: 0x400,
  MOVE_SELF: 0x800,
  UNMOUNT: 0x2000,
  Q_OVERFLOW: 0x4000,
  IGNORED: 0x8000,
  ONLYDIR: 0x1000000,
  DONT_FOLLOW: 0x2000000,
  EXCL_UNLINK: 0x4000000,
  MASK_ADD: 0x20000000,
  ISDIR: 0x40000000,
  ONESHOT: 0x80000000,
} as const;

const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;
const FIONREAD = 0x541bn;
const BUFFER_SIZE = 256 * 1024;
/** The largest event: its 16-byte header and a name of NAME_MAX bytes with its NUL. */
const MAX_EVENT = 16 + 256;

/**
 * One inotify event. `name` is "" for events on the watched object itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IN, type InotifyEvent } from "./inotify.ts";
 * const e: InotifyEvent = { wd: 1, mask: IN.CLOSE_WRITE, cookie: 0, name: "msg" };
 * assert.ok(e.mask & IN.CLOSE_WRITE);
 * ```
 */
export interface InotifyEvent {
  /** The watch descriptor ({@linkcode Inotify.add}'s result); -1 for `IN_Q_OVERFLOW`. */
  wd: number;
  /** The event bits. */
  mask: number;
  /** Links the two halves of a rename. */
  cookie: number;
  /** The entry's name within a watched directory. */
  name: string;
}

const decoder = new TextDecoder();

/**
 * A 36-character ASCII name (the length of a UUID, which fsbus's message names are) with each
 * code an argument: no view and no `apply` per event (callgrind: 1,170 instructions per name
 * against 2,680).
 */
function name36(b: Uint8Array, s: number): string {
  // deno-fmt-ignore
  return String.fromCharCode(
    b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!,
    b[s + 8]!, b[s + 9]!, b[s + 10]!, b[s + 11]!, b[s + 12]!, b[s + 13]!, b[s + 14]!,
    b[s + 15]!, b[s + 16]!, b[s + 17]!, b[s + 18]!, b[s + 19]!, b[s + 20]!, b[s + 21]!,
    b[s + 22]!, b[s + 23]!, b[s + 24]!, b[s + 25]!, b[s + 26]!, b[s + 27]!, b[s + 28]!,
    b[s + 29]!, b[s + 30]!, b[s + 31]!, b[s + 32]!, b[s + 33]!, b[s + 34]!, b[s + 35]!,
  );
}

function decodeName(buf: Uint8Array, start: number, len: number): string {
  let end = start;
  const stop = start + len;
  let ascii = true;
  while (end < stop && buf[end] !== 0) {
    if (buf[end]! >= 0x80) ascii = false;
    end++;
  }
  if (end === start) return "";
  if (ascii && end - start === 36) return name36(buf, start);
  if (ascii && end - start <= 128) {
    return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  }
  return decoder.decode(buf.subarray(start, end));
}

/**
 * An inotify instance.
 *
 * @example Collect the names of files closed after writing, until one called "stop"
 * ```ts
 * import assert from "node:assert/strict";
 * import { IN, Inotify } from "./inotify.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const names: string[] = [];
 * {
 *   await using ino = new Inotify();
 *   ino.add(dir, IN.CLOSE_WRITE);
 *   for (const name of ["a", "b", "stop"]) Deno.writeTextFileSync(`${dir}/${name}`, name);
 *   loop: for (;;) {
 *     for (const e of ino.read()) {
 *       names.push(e.name);
 *       if (e.name === "stop") break loop;
 *     }
 *     await ino.wait();
 *   }
 * }
 * assert.deepEqual(names, ["a", "b", "stop"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Inotify implements AsyncDisposable {
  /** The inotify file descriptor. */
  readonly fd: number;
  readonly #waiter: Waiter;
  readonly #buf = new Uint8Array(BUFFER_SIZE);
  readonly #view = new DataView(this.#buf.buffer);
  readonly #count = new Uint8Array(8);
  readonly #countView = new DataView(this.#count.buffer);
  #closed = false;
  /**
   * When a {@linkcode Inotify.read} last found the queue empty (wall-clock milliseconds, taken
   * just before the `read(2)` that emptied it): every event queued before then has been
   * returned by a read. `-Infinity` before the first such read.
   */
  drainedAt: number = -Infinity;

  /** Makes an inotify instance (non-blocking, close-on-exec). */
  constructor() {
    this.fd = check(libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1");
    try {
      this.#waiter = new Waiter([this.fd]);
    } catch (err) {
      libc().close(this.fd);
      throw err;
    }
  }

  /**
   * Adds (or replaces) a watch.
   *
   * @param path The file or directory.
   * @param mask The `IN.*` events to report.
   * @returns The watch descriptor.
   * @throws {SysError} ENOENT, ENOTDIR (with `IN.ONLYDIR`), EACCES, ENOSPC (watch limit).
   */
  add(path: string, mask: number): number {
    return check(libc().inotify_add_watch(this.fd, cstring(path), mask), "inotify_add_watch", path);
  }

  /**
   * Removes a watch (the kernel then queues `IN_IGNORED` for it). Errors are ignored.
   *
   * @param wd The watch descriptor.
   */
  remove(wd: number): void {
    libc().inotify_rm_watch(this.fd, wd);
  }

  /**
   * Reads every event queued now, without waiting.
   *
   * @returns The events, in kernel order; empty when none is queued.
   */
  read(): InotifyEvent[] {
    const events: InotifyEvent[] = [];
    if (this.#closed) return events;
    const c = libc();
    const buf = this.#buf;
    const view = this.#view;
    for (;;) {
      const at = Date.now();
      const n = Number(c.read(this.fd, buf, BigInt(buf.length)));
      if (n < 0) {
        const e = errno();
        if (e === Errno.EAGAIN) {
          this.drainedAt = at;
          break;
        }
        if (e === Errno.EINTR) continue;
        throw new SysError("read", e);
      }
      if (n === 0) {
        this.drainedAt = at;
        break;
      }
      let off = 0;
      while (off + 16 <= n) {
        const len = view.getUint32(off + 12, true);
        events.push({
          wd: view.getInt32(off, true),
          mask: view.getUint32(off + 4, true),
          cookie: view.getUint32(off + 8, true),
          name: len === 0 ? "" : decodeName(buf, off + 16, len),
        });
        off += 16 + len;
      }
      // A short read means the queue is empty now.
      if (n < buf.length - 4096) {
        this.drainedAt = at;
        break;
      }
    }
    return events;
  }

  /**
   * How many bytes of events are queued now (`FIONREAD`), without taking them: 0 means no
   * event happened since the queue was last emptied. One system call.
   *
   * @returns The bytes queued (0 when closed).
   * @throws {SysError} When the ioctl fails.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { IN, Inotify } from "./inotify.ts";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * await using ino = new Inotify();
   * ino.add(dir, IN.CREATE);
   * assert.equal(ino.queued(), 0);
   * Deno.writeTextFileSync(`${dir}/a`, "");
   * assert.ok(ino.queued() > 0);
   * ino.read();
   * assert.equal(ino.queued(), 0);
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  queued(): number {
    if (this.#closed) return 0;
    if (libc().ioctl(this.fd, FIONREAD, this.#count) < 0) throw new SysError("ioctl", errno());
    return this.#countView.getInt32(0, true);
  }

  /**
   * Reads the events queued now as raw `struct inotify_event` records, without waiting: for a
   * reader that keeps them as bytes and decodes each only when it comes to it
   * ({@linkcode InotifyQueue}). Updates {@linkcode Inotify.drainedAt} when the read empties the
   * queue.
   *
   * @param buf Where to put the records (at least 272 bytes: one event with the longest name).
   * @returns How many bytes were read; 0 when no event is queued.
   * @throws {SysError} When the read fails (EINVAL for a buffer too small for the next event).
   */
  readInto(buf: Uint8Array): number {
    if (this.#closed) return 0;
    const c = libc();
    for (;;) {
      const at = Date.now();
      const n = Number(c.read(this.fd, buf as Uint8Array<ArrayBuffer>, BigInt(buf.length)));
      if (n < 0) {
        const e = errno();
        if (e === Errno.EAGAIN) {
          this.drainedAt = at;
          return 0;
        }
        if (e === Errno.EINTR) continue;
        throw new SysError("read", e);
      }
      // Room left for the longest event: the kernel had no more.
      if (n + MAX_EVENT <= buf.length) this.drainedAt = at;
      return n;
    }
  }

  /**
   * Waits until events are queued, {@linkcode Inotify.wake} is called, or the timeout passes.
   *
   * @param timeoutMs The longest wait in milliseconds; negative means no limit.
   * @returns How the wait ended.
   */
  wait(timeoutMs = -1): Promise<WaitResult> {
    return this.#waiter.wait(timeoutMs);
  }

  /**
   * Waits on the calling thread, blocking the event loop (see {@linkcode Waiter.waitSync}).
   *
   * @param timeoutMs The longest wait in milliseconds.
   * @returns How the wait ended.
   */
  waitSync(timeoutMs: number): WaitResult {
    return this.#waiter.waitSync(timeoutMs);
  }

  /** Ends a pending wait with "woken". */
  wake(): void {
    this.#waiter.wake();
  }

  /** Ends any pending wait and closes the instance with all its watches. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#waiter.close();
    libc().close(this.fd);
  }

  /** Closes the instance, as {@linkcode Inotify.close} does: `await using ino = new Inotify()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** How much a {@linkcode InotifyQueue} reads at least at a time. */
const READ_AT_LEAST = 64 * 1024;

/**
 * A queue of inotify events kept as the kernel's bytes and decoded one at a time, when taken:
 * a reader that falls behind by thousands of events holds them in a few bytes each, with no
 * object per event for the garbage collector to copy. `fill()` moves what the kernel holds
 * into the queue (up to a bound), `next()` takes the next event into the queue's own fields.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IN, Inotify, InotifyQueue } from "./inotify.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await using ino = new Inotify();
 * ino.add(dir, IN.CLOSE_WRITE);
 * for (const name of ["a", "b"]) Deno.writeTextFileSync(`${dir}/${name}`, name);
 * const queue = new InotifyQueue(ino);
 * queue.fill();
 * const names: string[] = [];
 * while (queue.next()) names.push(queue.name);
 * assert.deepEqual(names, ["a", "b"]);
 * assert.ok(ino.drainedAt > 0); // the kernel's queue was found empty
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class InotifyQueue {
  /** The taken event's watch descriptor (-1 for `IN_Q_OVERFLOW`). */
  wd = 0;
  /** The taken event's bits. */
  mask = 0;
  /** The taken event's rename cookie. */
  cookie = 0;
  /** The taken event's name ("" for an event on the watched object itself). */
  name = "";
  readonly #ino: Inotify;
  readonly #maxBytes: number;
  #buf = new Uint8Array(READ_AT_LEAST * 2);
  #view = new DataView(this.#buf.buffer);
  #start = 0;
  #end = 0;

  /**
   * Makes an empty queue that reads from `ino`.
   *
   * @param ino The inotify instance to read.
   * @param maxBytes The most bytes held (the kernel's queue holds the rest): 4 MiB, some
   *   70,000 events of 36-character names.
   */
  constructor(ino: Inotify, maxBytes: number = 4 << 20) {
    this.#ino = ino;
    this.#maxBytes = Math.max(maxBytes, READ_AT_LEAST * 2);
  }

  /** How many bytes of events are queued (0: none). */
  get bytes(): number {
    return this.#end - this.#start;
  }

  /**
   * Moves the events the kernel holds now into this queue, while there is room.
   *
   * @returns False when this queue is full (the kernel still holds events), else true.
   */
  fill(): boolean {
    for (;;) {
      if (this.#start === this.#end) this.#start = this.#end = 0;
      const free = this.#buf.length - this.#end;
      if (free < READ_AT_LEAST) {
        if (this.#start > 0) {
          this.#buf.copyWithin(0, this.#start, this.#end);
          this.#end -= this.#start;
          this.#start = 0;
        } else if (this.#buf.length < this.#maxBytes) {
          const bigger = new Uint8Array(Math.min(this.#maxBytes, this.#buf.length * 2));
          bigger.set(this.#buf.subarray(0, this.#end));
          this.#buf = bigger;
          this.#view = new DataView(bigger.buffer);
        } else {
          return false;
        }
        continue;
      }
      const n = this.#ino.readInto(this.#buf.subarray(this.#end));
      this.#end += n;
      if (n + MAX_EVENT <= free) return true;
    }
  }

  /**
   * Takes the next event into {@linkcode InotifyQueue.wd}, `mask`, `cookie` and `name`.
   *
   * @returns False when the queue is empty (call {@linkcode InotifyQueue.fill}).
   */
  next(): boolean {
    const at = this.#start;
    if (at + 16 > this.#end) return false;
    const view = this.#view;
    const len = view.getUint32(at + 12, true);
    this.wd = view.getInt32(at, true);
    this.mask = view.getUint32(at + 4, true);
    this.cookie = view.getUint32(at + 8, true);
    this.name = len === 0 ? "" : decodeName(this.#buf, at + 16, len);
    this.#start = at + 16 + len;
    return true;
  }
}
