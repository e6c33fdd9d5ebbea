/**
 * Handling one FUSE request: decode it from the request buffer, call the
 * {@linkcode FileSystem} method, and encode and write the reply to `/dev/fuse`, now or later
 * (parked requests, FUSE_INTERRUPT). Used by `FuseServer` in `server.ts`, which
 * reads the requests and owns the connection's life.
 *
 * @module
 */

import { errno, libc } from "../libc.ts";
import { Errno } from "../errno.ts";
import { getU64, setU64 } from "../le64.ts";
import {
  direntSize,
  direntType,
  FOPEN,
  INIT,
  KERNEL_MAJOR,
  KERNEL_MINOR,
  MIN_KERNEL_MINOR,
  OP,
  readSetattrIn,
  SIZE,
  type WireAttr,
  writeAttrOut,
  writeDirent,
  writeEntryOut,
  writeInitOut,
  writeOpenOut,
  writeOutHeader,
  writeStatfsOut,
} from "./_wire.ts";
import {
  Deferred,
  type FileSystem,
  type FuseAttr,
  type FuseContext,
  type FuseDirEntry,
  type FuseEntry,
  FuseError,
  type FuseOpened,
  type FuseStatfs,
  type Maybe,
} from "./file_system.ts";

const { EPROTO } = Errno;
/** The largest write(2) the kernel passes to the server in one request (its max_write). */
export const MAX_WRITE = 1 << 20;
const MAX_PAGES = 256;
/** The size of the request buffer: the largest write the kernel sends, and its header. */
export const BUF_SIZE = MAX_WRITE + 4096;
const POLL_SCHEDULE_NOTIFY = 1;
/** fsync_in's flag for fdatasync(2). */
const FSYNC_FDATASYNC = 1;
const NOTIFY_POLL = 1;

const decoder = new TextDecoder();
const encoder = new TextEncoder();

interface DirHandle {
  node: number;
  entries: FuseDirEntry[] | undefined;
}

type Encoder<T> = (unique: number, value: T) => void;

const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(OP).map(([k, v]) => [v, k.toLowerCase()]),
);

/** What {@linkcode Requests} needs from the server that owns the connection. */
export interface RequestHost {
  /** The connection is closed: nothing more is written. */
  readonly closed: boolean;
  /** The server is stopping: nothing more is parked. */
  readonly stopping: boolean;
  /** Stops the server (see `FuseServer`'s `#shutdown`). */
  shutdown(unmount: boolean, now: boolean): void;
}

/** Settings for {@linkcode Requests}, resolved by the server. */
export interface RequestOptions {
  /** How long the kernel may cache names, in milliseconds. */
  entryTtlMs: number;
  /** How long the kernel may cache attributes, in milliseconds. */
  attrTtlMs: number;
  /** Told about unexpected errors in methods (answered EIO). */
  onError: (err: unknown, op: string) => void;
}

/**
 * Decodes requests, calls a {@linkcode FileSystem} and writes the replies; keeps the parked
 * requests and the open directories of one connection.
 */
export class Requests {
  /** The request buffer: the server reads each request into it, then calls `dispatch`. */
  readonly input = new Uint8Array(BUF_SIZE);
  readonly #inView = new DataView(this.input.buffer);
  readonly #fs: FileSystem;
  readonly #fd: number;
  readonly #host: RequestHost;
  readonly #entryTtl: number;
  readonly #attrTtl: number;
  readonly #onError: (err: unknown, op: string) => void;
  readonly #out = new Uint8Array(MAX_WRITE + 4096);
  readonly #outView = new DataView(this.#out.buffer);
  readonly #pending = new Map<number, { d: Deferred<unknown>; op: number }>();
  readonly #dirs = new Map<number, DirHandle>();
  readonly #uid = Deno.uid() ?? 0;
  readonly #gid = Deno.gid() ?? 0;
  readonly #started = Date.now();
  #nextDir = 1;
  #initDone = false;

  /**
   * Makes the handler of one connection.
   *
   * @param fd The `/dev/fuse` descriptor replies are written to.
   * @param fs The file system.
   * @param options Cache timeouts and error reporting.
   * @param host The server.
   */
  constructor(fd: number, fs: FileSystem, options: RequestOptions, host: RequestHost) {
    this.#fd = fd;
    this.#fs = fs;
    this.#entryTtl = options.entryTtlMs;
    this.#attrTtl = options.attrTtlMs;
    this.#onError = options.onError;
    this.#host = host;
  }

  /** How many requests are parked. */
  get parked(): number {
    return this.#pending.size;
  }

  /** Answers every parked request: reads with end of file, the rest with EIO. */
  answerParked(): void {
    for (const [unique, p] of [...this.#pending]) {
      this.#pending.delete(unique);
      p.d._drop();
      if (p.op === OP.READ) this.#send(unique, 0, 0);
      else this.#send(unique, -Errno.EIO, 0);
    }
  }

  /** The request being handled: what {@linkcode FuseContext.defer} parks. */
  readonly #req = { unique: 0, op: 0, size: 0, encode: undefined as Encoder<never> | undefined };

  /** The one context object, valid during a method call (the request's header). */
  readonly #context: FuseContext = ((server: Requests, v: DataView) => ({
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
        if (!this.#host.closed) this.#safe(op, () => encode(unique, value));
      },
      (e) => {
        this.#pending.delete(unique);
        if (!this.#host.closed) this.#send(unique, -Math.abs(e), 0);
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
      if (this.#host.stopping) this.answerParked(); // no more waiting once stopping
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
    if (this.#host.closed) return;
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
    const nul = this.input.indexOf(0, at);
    return decoder.decode(this.input.subarray(at, nul < 0 || nul > end ? end : nul));
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

  /**
   * Handles the request of `n` bytes in {@linkcode Requests.input}: decodes it, calls the file
   * system, and writes the reply (or parks it).
   */
  dispatch(n: number): void {
    const op = this.#inView.getUint32(4, true);
    // READ and WRITE carry the messages: each in a small method of its own, so that the first
    // calls of the rarer requests (a client's open, its close) do not deoptimize their code
    // (V8 drops a whole function's optimized code when it meets a branch it has no feedback
    // for; one switch for every request ran unoptimized for a while after each open).
    if (this.#initDone) {
      if (op === OP.WRITE) return this.#write(n);
      if (op === OP.READ) return this.#read();
    }
    this.#dispatchOther(n, op);
  }

  #dispatchOther(n: number, op: number): void {
    const v = this.#inView;
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
        const ch = readSetattrIn(v, B);
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
          writeStatfsOut(this.#out, this.#outView, 16, s);
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
      case OP.FSYNC: {
        const fsync = fs.fsync;
        if (!fsync) return this.#send(unique, 0, 0);
        const fh = getU64(v, B);
        const datasync = (v.getUint32(B + 8, true) & FSYNC_FDATASYNC) !== 0;
        return this.#call(
          unique,
          op,
          this.#sendEmpty,
          (ctx) => fsync.call(fs, node, fh, datasync, ctx),
        );
      }
      case OP.FSYNCDIR:
        return this.#send(unique, 0, 0);
      case OP.DESTROY:
        this.#send(unique, 0, 0);
        this.#host.shutdown(false, true);
        return;
      default:
        return this.#send(unique, -Errno.ENOSYS, 0);
    }
  }

  /** A READ request: no closure per request (see #defer). */
  #read(): void {
    const v = this.#inView;
    const B = SIZE.IN_HEADER;
    const unique = getU64(v, 8);
    const node = getU64(v, 16);
    const fs = this.#fs;
    const op = OP.READ;
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

  /** A WRITE request of `n` bytes: no closure per request. */
  #write(n: number): void {
    const v = this.#inView;
    const B = SIZE.IN_HEADER;
    const unique = getU64(v, 8);
    const node = getU64(v, 16);
    const fs = this.#fs;
    const op = OP.WRITE;
    if (!fs.write) return this.#send(unique, -Errno.ENOSYS, 0);
    const fh = getU64(v, B);
    const offset = getU64(v, B + 8);
    const size = v.getUint32(B + 16, true);
    const data = this.input.subarray(B + SIZE.WRITE_IN, Math.min(n, B + SIZE.WRITE_IN + size));
    const ctx = this.#ctx(unique, op, this.#sendWritten as Encoder<never>);
    let written: Maybe<number>;
    try {
      written = fs.write(node, fh, offset, data, ctx);
    } catch (err) {
      return this.#failed(unique, op, err);
    }
    if (written instanceof Deferred) return this.#answer(unique, op, this.#sendWritten, written);
    try {
      this.#sendWritten(unique, written); // not through #answer: one call target here
    } catch (err) {
      this.#onError(err, "write");
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
      this.#host.shutdown(true, true);
      return;
    }
    if (major > KERNEL_MAJOR) {
      // The kernel offers a newer major: answer with ours, it asks again.
      writeInitOut(this.#out, this.#outView, 16, undefined);
      this.#send(unique, 0, 8);
      return;
    }
    const want = INIT.ASYNC_READ | INIT.ATOMIC_O_TRUNC | INIT.BIG_WRITES | INIT.MAX_PAGES |
      INIT.PARALLEL_DIROPS;
    writeInitOut(this.#out, this.#outView, 16, {
      minor: Math.min(minor, KERNEL_MINOR),
      readahead,
      flags: (kflags & want) >>> 0,
      maxWrite: MAX_WRITE,
      maxPages: MAX_PAGES,
    });
    this.#initDone = true;
    this.#send(unique, 0, SIZE.INIT_OUT);
  }
}
