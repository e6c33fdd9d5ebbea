/**
 * The typed API a FUSE file system implements: the {@linkcode FileSystem} methods, the values
 * they take and return ({@linkcode FuseAttr}, {@linkcode FuseEntry}, ...), errors as errnos
 * ({@linkcode FuseError}) and parked requests answered later ({@linkcode Deferred}). No wire
 * format and no I/O: `FuseServer` in `server.ts` serves it.
 *
 * @module
 */

/**
 * A failure to report to the kernel as an errno (`ENOENT`, `EINVAL`, ...): what a
 * {@linkcode FileSystem} method throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FuseError } from "./file_system.ts";
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
  /** New permission bits (chmod). */
  mode?: number;
  /** New owner (chown). */
  uid?: number;
  /** New group (chown, chgrp). */
  gid?: number;
  /** New size in bytes (truncate). */
  size?: number;
  /** New modification time, ms since the epoch (utimes, touch). */
  mtimeMs?: number;
  /** The file handle, when the change came through an open file (ftruncate). */
  fh?: number;
}

/** File system statistics (statfs). */
export interface FuseStatfs {
  /** Size of the file system in `bsize` blocks (default 0). */
  blocks?: number;
  /** Free blocks (default 0). */
  bfree?: number;
  /** Free blocks available to unprivileged users (default 0). */
  bavail?: number;
  /** Number of inodes (default 0). */
  files?: number;
  /** Free inodes (default 0). */
  ffree?: number;
  /** Block size in bytes (default 4096). */
  bsize?: number;
  /** Longest file name in bytes (default 255). */
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
  /** A close(2) of one descriptor of an open file (an error thrown here is close's). */
  flush?(node: number, fh: number, ctx: FuseContext): void;
  /**
   * `fsync(2)` or `fdatasync(2)` (`datasync`) of an open file: returns once what was written
   * through `fh` is stored, or throws why it could not be (default: succeeds at once).
   */
  fsync?(node: number, fh: number, datasync: boolean, ctx: FuseContext): void;
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
  /**
   * Runs after each request has been answered (its reply written, or the request parked),
   * before the server reads the next one: work the caller need not wait for, such as
   * storing a write that was acknowledged as soon as it was checked (write-behind). Every
   * later request sees the work done. What it throws goes to the server's `onError`.
   *
   * @example Acknowledge each write at once, store it right after the reply
   * ```ts
   * import assert from "node:assert/strict";
   * import { type FileSystem, mount } from "./mod.ts";
   * const stored: string[] = [];
   * let pending: Uint8Array | undefined;
   * const log: FileSystem = {
   *   lookup: () => ({ node: 2, attr: { mode: 0o100644 } }),
   *   getattr: (node) => node === 1 ? { mode: 0o040755 } : { mode: 0o100644 },
   *   open: () => ({ fh: 1, directIo: true }),
   *   write(_node, _fh, _offset, data) {
   *     pending = data.slice(); // the request's buffer is only valid during the call
   *     return data.length; // the writer goes on now
   *   },
   *   afterReply() {
   *     if (pending !== undefined) stored.push(new TextDecoder().decode(pending));
   *     pending = undefined;
   *   },
   * };
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const server = await mount(dir, log, { fsname: "log", subtype: "demo" });
   * try {
   *   // A writer in another process (this one serves the mount).
   *   const sh = await new Deno.Command("sh", { args: ["-c", `echo one >${dir}/log`] }).output();
   *   assert.equal(sh.code, 0);
   *   assert.deepEqual(stored, ["one\n"]); // stored before the next request (the flush)
   * } finally {
   *   await server.stop();
   * }
   * Deno.removeSync(dir);
   * ```
   */
  afterReply?(): void;
  /** The server is stopping: answer parked requests now (those left get EOF or EIO). */
  shutdown?(): void;
}
