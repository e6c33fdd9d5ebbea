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
 * @module
 */

import { errno, libc } from "../libc.ts";
import { Errno } from "../errno.ts";
import { closeFd, O, openFd } from "../fs.ts";
import { yieldTurn } from "../poll.ts";
import {
  direntSize,
  direntType,
  FATTR,
  FOPEN,
  getU64,
  INIT,
  KERNEL_MAJOR,
  KERNEL_MINOR,
  MIN_KERNEL_MINOR,
  OP,
  setU64,
  SIZE,
  type WireAttr,
  writeAttrOut,
  writeDirent,
  writeEntryOut,
  writeOpenOut,
  writeOutHeader,
} from "./_wire.ts";
import { type FuseConnection, mountTable, unmountPath } from "./mount.ts";

const { ENODEV, ENOENT, EPROTO } = Errno;
const POLLIN = 1;
const POLLPRI = 2;
const POLLERR = 8;
const MAX_WRITE = 1 << 20;
const MAX_PAGES = 256;
const BUF_SIZE = MAX_WRITE + 4096;
const IN_LENGTH = BigInt(BUF_SIZE);
const YIELD_EVERY_MS = 20;
const GRACE_MS = 2000;
const POLL_SCHEDULE_NOTIFY = 1;
const NOTIFY_POLL = 1;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * A failure to report to the kernel as an errno (`ENOENT`, `EINVAL`, ...): what a
 * {@linkcode FileSystem} method throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuseError } from "./server.ts";
 * const err = new FuseError(2, "no such stream"); // thrown by a method: the caller gets ENOENT
 * assert.equal(err.errno, 2);
 * assert.equal(err.message, "no such stream");
 * ```
 */
export class FuseError extends Error {
  /** The errno given to the caller. */
  readonly errno: number;

  /**
   * Makes the error.
   *
   * @param errno The errno (positive).
   * @param message Why, for the server's log.
   */
  constructor(errno: number, message = `errno ${errno}`) {
    super(message);
    this.name = "FuseError";
    this.errno = errno;
  }
}

/** File attributes a {@linkcode FileSystem} reports (missing fields get defaults). */
export interface FuseAttr {
  /** Type and permission bits, such as `0o100644` (file) or `0o040755` (directory). */
  mode: number;
  /** The inode number (default: the node id). */
  ino?: number;
  /** Size in bytes (default 0). */
  size?: number;
  /** Links (default 2 for directories, 1 otherwise). */
  nlink?: number;
  /** Owner (default: the server's user). */
  uid?: number;
  /** Group (default: the server's group). */
  gid?: number;
  /** Modification time, ms since the epoch (default: when the server started). */
  mtimeMs?: number;
}

/** What a lookup, mkdir or create finds or makes. */
export interface FuseEntry {
  /** The node id (not 0; 1 is the root); the kernel refers to the node by it. */
  node: number;
  /** The node's attributes. */
  attr: FuseAttr;
  /** How long the kernel may cache the name (default: the server's `entryTtlMs`). */
  entryTtlMs?: number;
  /** How long the kernel may cache the attributes (default: the server's `attrTtlMs`). */
  attrTtlMs?: number;
}

/** What an open or create returns. */
export interface FuseOpened {
  /** The file handle the kernel gives back with each request on this open file. */
  fh: number;
  /** Bypass the page cache: each read(2) and write(2) reaches the server as it is. */
  directIo?: boolean;
  /** A stream: no file position and no seeking (pipes, message streams). */
  stream?: boolean;
}

/** One directory entry. */
export interface FuseDirEntry {
  /** The name. */
  name: string;
  /** The inode number. */
  ino: number;
  /** The mode (only the type bits matter). */
  mode: number;
}

/** Attribute changes requested by chmod, chown, truncate, utimes. */
export interface FuseSetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtimeMs?: number;
  /** The file handle, when the change came through an open file (ftruncate). */
  fh?: number;
}

/** File system statistics (statfs). */
export interface FuseStatfs {
  blocks?: number;
  bfree?: number;
  bavail?: number;
  files?: number;
  ffree?: number;
  bsize?: number;
  namelen?: number;
}

/**
 * Who made a request, and how to answer it later. Valid only during the method call it is
 * passed to (one object serves every request): read what is needed, and call `defer` before
 * returning.
 */
export interface FuseContext {
  /** The caller's user id. */
  readonly uid: number;
  /** The caller's group id. */
  readonly gid: number;
  /** The caller's process id. */
  readonly pid: number;
  /**
   * Parks this request: return the result from the method, and answer through it later
   * (any number of parked requests cost nothing while they wait).
   */
  defer<T>(): Deferred<T>;
}

/**
 * A parked request: answered later with {@linkcode Deferred.resolve} or
 * {@linkcode Deferred.reject}. If the caller is interrupted (Ctrl-C), the server calls
 * `onInterrupt` and answers EINTR itself.
 *
 * @example Park a read until data comes
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Deferred, type FileSystem, mount } from "./mod.ts";
 * const waiting = new Set<Deferred<Uint8Array>>();
 * const news: FileSystem = {
 *   lookup: () => ({ node: 2, attr: { mode: 0o100444 } }),
 *   getattr: (node) => node === 1 ? { mode: 0o040755 } : { mode: 0o100444 },
 *   readdir: () => [{ name: "news", ino: 2, mode: 0o100444 }],
 *   open: () => ({ fh: 1, directIo: true, stream: true }), // every read reaches the server
 *   read(_node, _fh, _offset, _size, ctx) {
 *     const later = ctx.defer<Uint8Array>();
 *     waiting.add(later);
 *     later.onInterrupt = () => waiting.delete(later);
 *     return later;
 *   },
 * };
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const server = await mount(dir, news, { fsname: "news", subtype: "demo" });
 * try {
 *   // A reader in another process (a read of this process's own mount would wait on itself).
 *   const cat = new Deno.Command("cat", { args: [`${dir}/news`], stdout: "piped" }).spawn();
 *   for (const end = Date.now() + 5000; waiting.size === 0;) {
 *     if (Date.now() > end) throw new Error("the read never reached the server");
 *     await new Promise((r) => setTimeout(r, 1));
 *   }
 *   for (const w of waiting) w.resolve(new TextEncoder().encode("extra")); // data came
 *   waiting.clear();
 *   const out = await cat.stdout.getReader().read();
 *   assert.equal(new TextDecoder().decode(out.value), "extra");
 *   cat.kill();
 *   await cat.status;
 * } finally {
 *   await server.stop();
 * }
 * Deno.removeSync(dir);
 * ```
 */
export class Deferred<T> {
  /** Called when the caller was interrupted (the server then answers EINTR). */
  onInterrupt: (() => void) | undefined;
  #answer: ((value: T) => void) | undefined;
  #fail: ((errno: number) => void) | undefined;

  /** @internal */
  constructor(answer: (value: T) => void, fail: (errno: number) => void) {
    this.#answer = answer;
    this.#fail = fail;
  }

  /** Whether it has been answered (or interrupted). */
  get settled(): boolean {
    return this.#answer === undefined;
  }

  /**
   * Answers the request.
   *
   * @param value The method's result.
   */
  resolve(value: T): void {
    const answer = this.#answer;
    this.#answer = this.#fail = undefined;
    answer?.(value);
  }

  /**
   * Fails the request.
   *
   * @param errno The errno.
   */
  reject(errno: number): void {
    const fail = this.#fail;
    this.#answer = this.#fail = undefined;
    fail?.(errno);
  }

  /** @internal Marks it settled without answering (the server answered). */
  _drop(): void {
    this.#answer = this.#fail = undefined;
  }
}

/** A result now, or later. */
export type Maybe<T> = T | Deferred<T>;

/**
 * The operations a file system implements; node ids are chosen by the file system (1 is the
 * root). Methods throw {@linkcode FuseError} for an errno; anything else thrown is EIO and
 * reported to `onError`. A missing method answers ENOSYS (or a harmless default: open and
 * release succeed, flush does nothing).
 *
 * Buffers passed in (`write`'s data) are only valid during the call.
 */
export interface FileSystem {
  /** Finds `name` in directory `parent`. */
  lookup(parent: number, name: string, ctx: FuseContext): Maybe<FuseEntry>;
  /** The kernel forgot `nlookup` lookups of `node`. */
  forget?(node: number, nlookup: number): void;
  /** The attributes of `node`. */
  getattr(node: number, ctx: FuseContext): Maybe<FuseAttr>;
  /** Changes attributes; returns the new ones. */
  setattr?(node: number, changes: FuseSetAttr, ctx: FuseContext): Maybe<FuseAttr>;
  /** Opens a file; `flags` are open(2)'s. */
  open?(node: number, flags: number, ctx: FuseContext): Maybe<FuseOpened>;
  /** Creates and opens a file. */
  create?(
    parent: number,
    name: string,
    mode: number,
    flags: number,
    ctx: FuseContext,
  ): Maybe<FuseEntry & FuseOpened>;
  /** Reads up to `size` bytes (fewer, or none for end of file). */
  read?(node: number, fh: number, offset: number, size: number, ctx: FuseContext): Maybe<
    Uint8Array
  >;
  /** Writes; returns how many bytes were taken. */
  write?(node: number, fh: number, offset: number, data: Uint8Array, ctx: FuseContext): Maybe<
    number
  >;
  /** A close(2) of one descriptor of an open file. */
  flush?(node: number, fh: number, ctx: FuseContext): void;
  /** The last descriptor of an open file is gone. */
  release?(node: number, fh: number, flags: number): void;
  /** Checks that a directory may be listed (default: allowed). */
  opendir?(node: number, ctx: FuseContext): void;
  /** The entries of a directory ("." and ".." are added). */
  readdir?(node: number, ctx: FuseContext): FuseDirEntry[];
  /** Makes a directory. */
  mkdir?(parent: number, name: string, mode: number, ctx: FuseContext): Maybe<FuseEntry>;
  /** Removes a file. */
  unlink?(parent: number, name: string, ctx: FuseContext): Maybe<void>;
  /** Removes a directory. */
  rmdir?(parent: number, name: string, ctx: FuseContext): Maybe<void>;
  /** File system statistics. */
  statfs?(ctx: FuseContext): FuseStatfs;
  /**
   * `poll(2)`, `select(2)` and epoll on an open file: returns the ready `POLL*` bits among
   * `events`. When `wake` is given, the kernel waits: call it once when the file becomes
   * ready (it asks again then, with a new `wake`).
   */
  poll?(
    node: number,
    fh: number,
    events: number,
    wake: (() => void) | undefined,
    ctx: FuseContext,
  ): Maybe<
    number
  >;
  /** The server is stopping: answer parked requests now (those left get EOF or EIO). */
  shutdown?(): void;
}

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

interface DirHandle {
  node: number;
  entries: FuseDirEntry[] | undefined;
}

type Encoder<T> = (unique: number, value: T) => void;

const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(OP).map(([k, v]) => [v, k.toLowerCase()]),
);

/**
 * Serves a {@linkcode FileSystem} on a mounted FUSE connection until it is unmounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fuseMount, mountAt } from "./mount.ts";
 * import { type FileSystem, FuseError, FuseServer } from "./server.ts";
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
  readonly #entryTtl: number;
  readonly #attrTtl: number;
  readonly #onError: (err: unknown, op: string) => void;
  readonly #in = new Uint8Array(BUF_SIZE);
  readonly #inView = new DataView(this.#in.buffer);
  readonly #out = new Uint8Array(MAX_WRITE + 4096);
  readonly #outView = new DataView(this.#out.buffer);
  readonly #pending = new Map<number, { d: Deferred<unknown>; op: number }>();
  readonly #dirs = new Map<number, DirHandle>();
  readonly #watches: Watch[] = [];
  readonly #idle: (() => void)[] = [];
  readonly #uid = Deno.uid() ?? 0;
  readonly #gid = Deno.gid() ?? 0;
  readonly #started = Date.now();
  readonly #efd: number;
  readonly #mountsFd: number;
  #pfds = new Uint8Array(0);
  #pfdsDirty = true;
  #nextDir = 1;
  #stopping = false;
  #closed = false;
  #graceUntil = 0;
  #initDone = false;

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
    const { blockMs = 0, entryTtlMs = 1000, attrTtlMs = 1000, onError = () => {} } = options;
    this.#blockMs = Math.max(0, blockMs);
    this.#entryTtl = entryTtlMs;
    this.#attrTtl = attrTtlMs;
    this.#onError = onError;
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
    return this.#pending.size;
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
   *
   * @param fn What to run.
   * @returns A function that removes it.
   */
  idle(fn: () => void): () => void {
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
      this.#graceUntil = performance.now() + GRACE_MS;
      try {
        this.#fs.shutdown?.();
      } catch (err) {
        this.#onError(err, "shutdown");
      }
      this.#answerParked();
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

  #answerParked(): void {
    for (const [unique, p] of [...this.#pending]) {
      this.#pending.delete(unique);
      p.d._drop();
      if (p.op === OP.READ) this.#send(unique, 0, 0);
      else this.#send(unique, -Errno.EIO, 0);
    }
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
    this.#answerParked();
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
    const v = new DataView(this.#pfds.buffer);
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
    let lastYield = performance.now();
    try {
      while (!this.#closed) {
        this.#drain();
        if (this.#closed) break;
        for (const fn of this.#idle) {
          try {
            fn();
          } catch (err) {
            this.#onError(err, "idle");
          }
        }
        if (this.#stopping && performance.now() > this.#graceUntil) break;
        if (this.#pfdsDirty) this.#buildPfds();
        const pfds = this.#pfds;
        const count = BigInt(pfds.length / 8);
        let n: number;
        const limit = this.#stopping
          ? Math.max(1, Math.ceil(this.#graceUntil - performance.now()))
          : -1;
        if (this.#blockMs > 0) {
          n = c.poll(pfds, count, limit > 0 ? Math.min(limit, this.#blockMs) : this.#blockMs);
          const now = performance.now();
          if (n <= 0 || now - lastYield > YIELD_EVERY_MS) {
            await yieldTurn();
            lastYield = performance.now();
          }
        } else {
          n = c.poll(pfds, count, 0);
          if (n === 0) n = await c.poll_async(pfds, count, limit);
        }
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

  #afterPoll(pfds: Uint8Array): void {
    const v = new DataView(pfds.buffer);
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
    const buf = this.#in;
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
      this.#dispatch(n);
    }
  }

  /** The request being handled: what {@linkcode FuseContext.defer} parks. */
  readonly #req = { unique: 0, op: 0, size: 0, encode: undefined as Encoder<never> | undefined };

  /** The one context object, valid during a method call (the request's header). */
  readonly #context: FuseContext = ((server: FuseServer, v: DataView) => ({
    get uid() {
      return v.getUint32(24, true);
    },
    get gid() {
      return v.getUint32(28, true);
    },
    get pid() {
      return v.getUint32(32, true);
    },
    defer: <T>() => server.#defer<T>(),
  }))(this, this.#inView);

  #ctx(unique: number, op: number, encode: Encoder<never>): FuseContext {
    const r = this.#req;
    r.unique = unique;
    r.op = op;
    r.encode = encode;
    return this.#context;
  }

  /** Parks the request being handled. */
  #defer<T>(): Deferred<T> {
    const { unique, op, size } = this.#req;
    const encode =
      (op === OP.READ
        ? (u: number, data: Uint8Array) => this.#sendRead(u, data, size)
        : this.#req.encode) as Encoder<T>;
    const d = new Deferred<T>(
      (value) => {
        this.#pending.delete(unique);
        if (!this.#closed) this.#safe(op, () => encode(unique, value));
      },
      (e) => {
        this.#pending.delete(unique);
        if (!this.#closed) this.#send(unique, -Math.abs(e), 0);
      },
    );
    this.#pending.set(unique, { d: d as Deferred<unknown>, op });
    return d;
  }

  #safe(op: number, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#onError(err, OP_NAMES[op] ?? String(op));
    }
  }

  /** Runs a method and answers with `encode`, an error, or nothing (parked). */
  #call<T>(unique: number, op: number, encode: Encoder<T>, fn: (ctx: FuseContext) => Maybe<T>) {
    const ctx = this.#ctx(unique, op, encode as Encoder<never>);
    let result: Maybe<T>;
    try {
      result = fn(ctx);
    } catch (err) {
      this.#failed(unique, op, err);
      return;
    }
    this.#answer(unique, op, encode, result);
  }

  /** Answers a method's error. */
  #failed(unique: number, op: number, err: unknown): void {
    const p = this.#pending.get(unique);
    if (p) {
      this.#pending.delete(unique);
      p.d._drop();
    }
    if (err instanceof FuseError) {
      this.#send(unique, -err.errno, 0);
    } else {
      this.#onError(err, OP_NAMES[op] ?? String(op));
      this.#send(unique, -Errno.EIO, 0);
    }
  }

  /** Answers a method's result with `encode`, or nothing when it was parked. */
  #answer<T>(unique: number, op: number, encode: Encoder<T>, result: Maybe<T>): void {
    if (result instanceof Deferred) {
      if (this.#stopping) this.#answerParked(); // no more waiting once stopping
      return; // answered later (or already)
    }
    try {
      encode(unique, result);
    } catch (err) {
      this.#onError(err, OP_NAMES[op] ?? String(op));
    }
  }

  /** Writes a reply: the header, then `len` bytes already in the out buffer at 16. */
  #send(unique: number, error: number, len: number): void {
    const total = SIZE.OUT_HEADER + (error === 0 ? len : 0);
    writeOutHeader(this.#outView, total, error, unique);
    const c = libc();
    for (;;) {
      const n = Number(c.write(this.#fd, this.#out, BigInt(total)));
      if (n >= 0) return;
      const e = errno();
      if (e === Errno.EINTR) continue;
      // ENOENT: the request was interrupted meanwhile; ENODEV: unmounted.
      return;
    }
  }

  /** Tells the kernel that the file polled with handle `kh` is ready (FUSE_NOTIFY_POLL). */
  #notifyPoll(kh: number): void {
    if (this.#closed) return;
    const buf = new Uint8Array(SIZE.OUT_HEADER + 8);
    const v = new DataView(buf.buffer);
    writeOutHeader(v, buf.length, NOTIFY_POLL, 0);
    setU64(v, SIZE.OUT_HEADER, kh);
    const c = libc();
    while (Number(c.write(this.#fd, buf, BigInt(buf.length))) < 0 && errno() === Errno.EINTR) {
      // again
    }
  }

  #name(at: number, end: number): string {
    const nul = this.#in.indexOf(0, at);
    return decoder.decode(this.#in.subarray(at, nul < 0 || nul > end ? end : nul));
  }

  #wire(node: number, a: FuseAttr): WireAttr {
    const dir = (a.mode & 0o170000) === 0o040000;
    return {
      ino: a.ino ?? node,
      size: a.size ?? 0,
      mode: a.mode,
      nlink: a.nlink ?? (dir ? 2 : 1),
      uid: a.uid ?? this.#uid,
      gid: a.gid ?? this.#gid,
      mtimeMs: a.mtimeMs ?? this.#started,
      rdev: 0,
    };
  }

  #sendEntry = (unique: number, e: FuseEntry): void => {
    writeEntryOut(
      this.#outView,
      16,
      e.node,
      0,
      e.entryTtlMs ?? this.#entryTtl,
      e.attrTtlMs ?? this.#attrTtl,
      this.#wire(e.node, e.attr),
    );
    this.#send(unique, 0, SIZE.ENTRY_OUT);
  };

  #openFlags(o: FuseOpened): number {
    return (o.directIo ? FOPEN.DIRECT_IO : 0) |
      (o.stream ? FOPEN.STREAM | FOPEN.NONSEEKABLE : 0);
  }

  #sendOpen = (unique: number, o: FuseOpened): void => {
    writeOpenOut(this.#outView, 16, o.fh, this.#openFlags(o));
    this.#send(unique, 0, SIZE.OPEN_OUT);
  };

  #sendEmpty = (unique: number): void => this.#send(unique, 0, 0);

  #sendData = (unique: number, data: Uint8Array): void => {
    this.#out.set(data, 16);
    this.#send(unique, 0, data.length);
  };

  /** The reply to a read of `size` bytes (never more). */
  #sendRead(unique: number, data: Uint8Array, size: number): void {
    this.#sendData(unique, data.length > size ? data.subarray(0, size) : data);
  }

  #sendWritten = (unique: number, written: number): void => {
    this.#outView.setUint32(16, written, true);
    this.#outView.setUint32(20, 0, true);
    this.#send(unique, 0, SIZE.WRITE_OUT);
  };

  #dispatch(n: number): void {
    const v = this.#inView;
    const op = v.getUint32(4, true);
    const unique = getU64(v, 8);
    const node = getU64(v, 16);
    const fs = this.#fs;
    const B = SIZE.IN_HEADER;
    if (!this.#initDone && op !== OP.INIT) {
      this.#send(unique, -Errno.EIO, 0);
      return;
    }
    switch (op) {
      case OP.INIT:
        return this.#init(unique);
      case OP.LOOKUP: {
        const name = this.#name(B, n);
        return this.#call(unique, op, this.#sendEntry, (ctx) => fs.lookup(node, name, ctx));
      }
      case OP.FORGET:
        this.#safe(op, () => fs.forget?.(node, getU64(v, B)));
        return;
      case OP.BATCH_FORGET: {
        const count = v.getUint32(B, true);
        for (let i = 0; i < count && B + 8 + i * 16 + 16 <= n; i++) {
          const at = B + 8 + i * 16;
          this.#safe(op, () => fs.forget?.(getU64(v, at), getU64(v, at + 8)));
        }
        return;
      }
      case OP.GETATTR:
        return this.#call(unique, op, this.#sendAttr(node), (ctx) => fs.getattr(node, ctx));
      case OP.SETATTR: {
        const valid = v.getUint32(B, true);
        const ch: FuseSetAttr = {};
        if (valid & FATTR.MODE) ch.mode = v.getUint32(B + 68, true);
        if (valid & FATTR.UID) ch.uid = v.getUint32(B + 76, true);
        if (valid & FATTR.GID) ch.gid = v.getUint32(B + 80, true);
        if (valid & FATTR.SIZE) ch.size = getU64(v, B + 16);
        if (valid & FATTR.MTIME) ch.mtimeMs = getU64(v, B + 40) * 1000;
        if (valid & FATTR.FH) ch.fh = getU64(v, B + 8);
        const set = fs.setattr;
        return this.#call(
          unique,
          op,
          this.#sendAttr(node),
          (ctx) => set ? set.call(fs, node, ch, ctx) : fs.getattr(node, ctx),
        );
      }
      case OP.OPEN: {
        const flags = v.getUint32(B, true);
        const open = fs.open;
        return this.#call(
          unique,
          op,
          this.#sendOpen,
          (ctx) => open ? open.call(fs, node, flags, ctx) : { fh: 0 },
        );
      }
      case OP.CREATE: {
        const flags = v.getUint32(B, true);
        const mode = v.getUint32(B + 4, true);
        const name = this.#name(B + 16, n);
        const create = fs.create;
        if (!create) return this.#send(unique, -Errno.ENOSYS, 0);
        return this.#call(unique, op, (u, r: FuseEntry & FuseOpened) => {
          writeEntryOut(
            this.#outView,
            16,
            r.node,
            0,
            r.entryTtlMs ?? this.#entryTtl,
            r.attrTtlMs ?? this.#attrTtl,
            this.#wire(r.node, r.attr),
          );
          writeOpenOut(this.#outView, 16 + SIZE.ENTRY_OUT, r.fh, this.#openFlags(r));
          this.#send(u, 0, SIZE.ENTRY_OUT + SIZE.OPEN_OUT);
        }, (ctx) => create.call(fs, node, name, mode, flags, ctx));
      }
      // READ and WRITE carry the messages: no closure per request (see #defer).
      case OP.READ: {
        if (!fs.read) return this.#send(unique, -Errno.ENOSYS, 0);
        const fh = getU64(v, B);
        const offset = getU64(v, B + 8);
        const size = Math.min(v.getUint32(B + 16, true), MAX_WRITE);
        const ctx = this.#ctx(unique, op, this.#sendData as Encoder<never>);
        this.#req.size = size;
        let data: Maybe<Uint8Array>;
        try {
          data = fs.read(node, fh, offset, size, ctx);
        } catch (err) {
          return this.#failed(unique, op, err);
        }
        if (data instanceof Deferred) return this.#answer(unique, op, this.#sendData, data);
        return this.#sendRead(unique, data, size);
      }
      case OP.WRITE: {
        if (!fs.write) return this.#send(unique, -Errno.ENOSYS, 0);
        const fh = getU64(v, B);
        const offset = getU64(v, B + 8);
        const size = v.getUint32(B + 16, true);
        const data = this.#in.subarray(B + SIZE.WRITE_IN, Math.min(n, B + SIZE.WRITE_IN + size));
        const ctx = this.#ctx(unique, op, this.#sendWritten as Encoder<never>);
        let written: Maybe<number>;
        try {
          written = fs.write(node, fh, offset, data, ctx);
        } catch (err) {
          return this.#failed(unique, op, err);
        }
        return this.#answer(unique, op, this.#sendWritten, written);
      }
      case OP.FLUSH: {
        const fh = getU64(v, B);
        return this.#call(unique, op, this.#sendEmpty, (ctx) => fs.flush?.(node, fh, ctx));
      }
      case OP.RELEASE: {
        const fh = getU64(v, B);
        const flags = v.getUint32(B + 8, true);
        this.#safe(op, () => fs.release?.(node, fh, flags));
        return this.#send(unique, 0, 0);
      }
      case OP.OPENDIR:
        return this.#call(unique, op, this.#sendOpen, (ctx) => {
          fs.opendir?.(node, ctx);
          const fh = this.#nextDir++;
          this.#dirs.set(fh, { node, entries: undefined });
          return { fh };
        });
      case OP.READDIR:
        return this.#readdir(
          unique,
          node,
          getU64(v, B),
          getU64(v, B + 8),
          v.getUint32(B + 16, true),
        );
      case OP.RELEASEDIR:
        this.#dirs.delete(getU64(v, B));
        return this.#send(unique, 0, 0);
      case OP.MKDIR: {
        const mode = v.getUint32(B, true);
        const name = this.#name(B + 8, n);
        const mkdir = fs.mkdir;
        if (!mkdir) return this.#send(unique, -Errno.ENOSYS, 0);
        return this.#call(
          unique,
          op,
          this.#sendEntry,
          (ctx) => mkdir.call(fs, node, name, mode, ctx),
        );
      }
      case OP.UNLINK:
      case OP.RMDIR: {
        const name = this.#name(B, n);
        const fn = op === OP.UNLINK ? fs.unlink : fs.rmdir;
        if (!fn) return this.#send(unique, -Errno.ENOSYS, 0);
        return this.#call(unique, op, this.#sendEmpty, (ctx) => fn.call(fs, node, name, ctx));
      }
      case OP.STATFS:
        return this.#call(unique, op, (u, s: FuseStatfs) => {
          const o = this.#outView;
          this.#out.fill(0, 16, 16 + SIZE.STATFS_OUT);
          setU64(o, 16, s.blocks ?? 0);
          setU64(o, 24, s.bfree ?? 0);
          setU64(o, 32, s.bavail ?? 0);
          setU64(o, 40, s.files ?? 0);
          setU64(o, 48, s.ffree ?? 0);
          o.setUint32(56, s.bsize ?? 4096, true);
          o.setUint32(60, s.namelen ?? 255, true);
          o.setUint32(64, s.bsize ?? 4096, true);
          this.#send(u, 0, SIZE.STATFS_OUT);
        }, (ctx) => fs.statfs?.(ctx) ?? {});
      case OP.INTERRUPT: {
        const target = getU64(v, B);
        const p = this.#pending.get(target);
        if (p === undefined) return; // answered already
        this.#pending.delete(target);
        p.d._drop();
        this.#safe(op, () => p.d.onInterrupt?.());
        return this.#send(target, -Errno.EINTR, 0);
      }
      case OP.POLL: {
        const poll = fs.poll;
        if (!poll) return this.#send(unique, -Errno.ENOSYS, 0);
        const fh = getU64(v, B);
        const kh = getU64(v, B + 8);
        const flags = v.getUint32(B + 16, true);
        const events = v.getUint32(B + 20, true);
        const wake = flags & POLL_SCHEDULE_NOTIFY ? () => this.#notifyPoll(kh) : undefined;
        return this.#call(unique, op, (u, revents: number) => {
          this.#outView.setUint32(16, revents & events, true);
          this.#outView.setUint32(20, 0, true);
          this.#send(u, 0, 8);
        }, (ctx) => poll.call(fs, node, fh, events, wake, ctx));
      }
      case OP.FSYNC:
      case OP.FSYNCDIR:
        return this.#send(unique, 0, 0);
      case OP.DESTROY:
        this.#send(unique, 0, 0);
        this.#shutdown(false, true);
        return;
      default:
        return this.#send(unique, -Errno.ENOSYS, 0);
    }
  }

  #sendAttr(node: number): Encoder<FuseAttr> {
    return (unique, a) => {
      writeAttrOut(this.#outView, 16, this.#attrTtl, this.#wire(node, a));
      this.#send(unique, 0, SIZE.ATTR_OUT);
    };
  }

  #readdir(unique: number, node: number, fh: number, offset: number, size: number): void {
    const h = this.#dirs.get(fh);
    if (h === undefined) return this.#send(unique, -Errno.EBADF, 0);
    if (h.entries === undefined || offset === 0) {
      const readdir = this.#fs.readdir;
      if (!readdir) return this.#send(unique, -Errno.ENOSYS, 0);
      try {
        const ctx = this.#ctx(unique, OP.READDIR, (() => {}) as Encoder<never>);
        h.entries = [
          { name: ".", ino: node, mode: 0o040000 },
          { name: "..", ino: node, mode: 0o040000 },
          ...readdir.call(this.#fs, node, ctx),
        ];
      } catch (err) {
        if (err instanceof FuseError) return this.#send(unique, -err.errno, 0);
        this.#onError(err, "readdir");
        return this.#send(unique, -Errno.EIO, 0);
      }
    }
    const limit = Math.min(size, this.#out.length - 16);
    let len = 0;
    for (let i = offset; i < h.entries.length; i++) {
      const e = h.entries[i]!;
      const name = encoder.encode(e.name);
      if (len + direntSize(name.length) > limit) break;
      len += writeDirent(
        this.#out,
        this.#outView,
        16 + len,
        e.ino,
        i + 1,
        direntType(e.mode),
        name,
      );
    }
    this.#send(unique, 0, len);
  }

  #init(unique: number): void {
    const v = this.#inView;
    const B = SIZE.IN_HEADER;
    const major = v.getUint32(B, true);
    const minor = v.getUint32(B + 4, true);
    const readahead = v.getUint32(B + 8, true);
    const kflags = v.getUint32(B + 12, true);
    if (major < KERNEL_MAJOR || (major === KERNEL_MAJOR && minor < MIN_KERNEL_MINOR)) {
      this.#onError(
        new Error(`The kernel's FUSE protocol ${major}.${minor} is too old (need 7.28)`),
        "init",
      );
      this.#send(unique, -EPROTO, 0);
      this.#shutdown(true, true);
      return;
    }
    const o = this.#outView;
    this.#out.fill(0, 16, 16 + SIZE.INIT_OUT);
    o.setUint32(16, KERNEL_MAJOR, true);
    if (major > KERNEL_MAJOR) {
      // The kernel offers a newer major: answer with ours, it asks again.
      this.#send(unique, 0, 8);
      return;
    }
    const want = INIT.ASYNC_READ | INIT.ATOMIC_O_TRUNC | INIT.BIG_WRITES | INIT.MAX_PAGES |
      INIT.PARALLEL_DIROPS;
    o.setUint32(20, Math.min(minor, KERNEL_MINOR), true);
    o.setUint32(24, readahead, true);
    o.setUint32(28, (kflags & want) >>> 0, true);
    o.setUint16(32, 16, true); // max_background
    o.setUint16(34, 12, true); // congestion_threshold
    o.setUint32(36, MAX_WRITE, true);
    o.setUint32(40, 1, true); // time_gran: nanoseconds
    o.setUint16(44, MAX_PAGES, true);
    this.#initDone = true;
    this.#send(unique, 0, SIZE.INIT_OUT);
  }
}
