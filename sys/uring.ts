/**
 * A small io_uring through FFI: many `openat`, `read` and `close` calls submitted, and their
 * completions waited for, in one `io_uring_enter(2)`. Each kernel entry costs more than the
 * work of these calls on a VM without PCID (every entry flushes the TLB), and more from a
 * large process such as Deno's than from a small C one: a batch of files read through a ring
 * costs two entries instead of two per file.
 *
 * The rings are mapped with {@linkcode mapShared} and entries are written through a
 * `DataView`; {@linkcode Uring.submit} waits for every completion of what it submitted, so no
 * request outlives the call and the enter call itself orders the memory accesses.
 *
 * {@linkcode Uring.open} returns undefined where io_uring cannot be used (a kernel before
 * 5.12, `kernel.io_uring_disabled`, a seccomp filter, no FFI) or when the environment sets
 * `FSBUS_URING=0`: callers then make the plain calls.
 *
 * @module
 */

import { type Mapping, mapShared } from "./mman.ts";
import { closeFd, O } from "./fs.ts";
import { Errno, SysError } from "./errno.ts";
import { errno, ffiAvailable, libc } from "./libc.ts";
import { getI64, setU64 } from "./le64.ts";

const SYS_IO_URING_SETUP = 425n; // the same on x86_64 and aarch64
const SYS_IO_URING_ENTER = 426n;
const SETUP_CQSIZE = 1 << 3;
const SETUP_SINGLE_ISSUER = 1 << 12;
const SETUP_DEFER_TASKRUN = 1 << 13;
const FEAT_SINGLE_MMAP = 1 << 0;
const FEAT_SUBMIT_STABLE = 1 << 2;
const FEAT_NATIVE_WORKERS = 1 << 9; // Linux 5.12: openat, read and close are all there
const ENTER_GETEVENTS = 1;
const OFF_SQES = 0x10000000;
const OP_OPENAT = 18;
const OP_CLOSE = 19;
const OP_READ = 22;
const SQE_IO_HARDLINK = 1 << 3;
const SQE_BYTES = 64;
const CQE_BYTES = 16;
/** Room for one name (255 bytes at most on Linux) and its NUL, per entry. */
const NAME_BYTES = 256;

/** The environment variable that, set to "0", makes {@linkcode Uring.open} say no. */
export const URING_ENV = "FSBUS_URING";

function disabledByEnv(): boolean {
  try {
    return Deno.env.get(URING_ENV) === "0";
  } catch {
    return false; // no permission to read the environment: not disabled by it
  }
}

function address(buf: Uint8Array): bigint {
  // A typed array of 64 bytes or less may live inside V8's heap, where it moves: asking for
  // its buffer moves it out for good, so that the kernel can be given its address.
  void buf.buffer;
  const p = Deno.UnsafePointer.of(buf as Uint8Array<ArrayBuffer>);
  return BigInt(Deno.UnsafePointer.value(p));
}

/**
 * An io_uring for synchronous batches: queue calls, then {@linkcode Uring.submit} runs them
 * all and reports each call's result by the tag it was queued with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Uring } from "./uring.ts";
 * import { openDir } from "./dirfd.ts";
 * import { closeFd, O } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/a`, "hello");
 * const ring = Uring.open(8);
 * if (ring) { // undefined where io_uring is not allowed
 *   const dirFd = openDir(dir);
 *   ring.openAt(dirFd, "a", O.RDONLY, 0);
 *   ring.openAt(dirFd, "missing", O.RDONLY, 1);
 *   const res: number[] = [];
 *   ring.submit((tag, r) => (res[tag] = r));
 *   assert.ok(res[0]! >= 0);
 *   assert.equal(res[1], -2); // -ENOENT
 *   const buf = new Uint8Array(6);
 *   ring.read(res[0]!, buf, 0, { close: true });
 *   ring.submit((tag, r) => (res[tag] = r));
 *   assert.equal(new TextDecoder().decode(buf.subarray(0, res[0])), "hello");
 *   ring.close();
 *   closeFd(dirFd);
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Uring {
  readonly #fd: number;
  readonly #rings: Mapping;
  readonly #sqeMap: Mapping;
  readonly #sqes: DataView;
  readonly #sqeBytes: Uint8Array;
  readonly #sqTail: Uint32Array;
  readonly #sqMask: number;
  readonly #cqHead: Uint32Array;
  readonly #cqTail: Uint32Array;
  readonly #cqMask: number;
  readonly #cqes: DataView;
  /** The names of queued opens, one {@linkcode NAME_BYTES} slot per entry. */
  readonly #names: Uint8Array;
  /** Its address (below 2^53: an exact number). */
  readonly #namesAt: number;
  readonly #encoder = new TextEncoder();
  /** Buffers the kernel writes into, kept alive until their reads complete. */
  #pinned: Uint8Array[] = [];
  #tail: number;
  /** Entries queued and not submitted yet. */
  #queued = 0;
  /** How many entries may be queued before a submit. */
  readonly entries: number;
  #closed = false;

  private constructor(fd: number, params: DataView, rings: Mapping, sqes: Mapping) {
    this.#fd = fd;
    this.#rings = rings;
    this.#sqeMap = sqes;
    const sq = (i: number) => params.getUint32(40 + 4 * i, true);
    const cq = (i: number) => params.getUint32(80 + 4 * i, true);
    const sqEntries = params.getUint32(0, true);
    const cqEntries = params.getUint32(4, true);
    const buf = rings.buffer;
    this.#sqTail = new Uint32Array(buf, sq(1), 1);
    this.#sqMask = new Uint32Array(buf, sq(2), 1)[0]!;
    const array = new Uint32Array(buf, sq(6), sqEntries);
    for (let i = 0; i < sqEntries; i++) array[i] = i;
    this.#cqHead = new Uint32Array(buf, cq(0), 1);
    this.#cqTail = new Uint32Array(buf, cq(1), 1);
    this.#cqMask = new Uint32Array(buf, cq(2), 1)[0]!;
    this.#cqes = new DataView(buf, cq(5), cqEntries * CQE_BYTES);
    this.#sqes = new DataView(sqes.buffer);
    this.#sqeBytes = new Uint8Array(sqes.buffer);
    this.#tail = this.#sqTail[0]!;
    this.entries = sqEntries;
    this.#names = new Uint8Array(sqEntries * NAME_BYTES);
    this.#namesAt = Number(address(this.#names));
  }

  /**
   * Sets up a ring, or says it cannot be.
   *
   * @param entries How many calls a batch may hold (rounded up to a power of two by the
   *   kernel).
   * @returns The ring; undefined where io_uring cannot be used, or with `FSBUS_URING=0`.
   */
  static open(entries: number): Uring | undefined {
    if (disabledByEnv() || !ffiAvailable() || Deno.build.os !== "linux") return undefined;
    const c = libc();
    const p = new Uint8Array(120);
    const params = new DataView(p.buffer);
    let fd = -1;
    // One thread submits, and completions are run only when it waits: the cheapest setup
    // (Linux 6.1); plainer before.
    for (const flags of [SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN, 0]) {
      p.fill(0);
      params.setUint32(8, flags | SETUP_CQSIZE, true);
      params.setUint32(4, entries * 2, true); // room for every completion of a full batch
      fd = Number(c.uring_setup(SYS_IO_URING_SETUP, entries, p));
      if (fd >= 0 || errno() !== Errno.EINVAL) break;
    }
    if (fd < 0) return undefined; // ENOSYS, EPERM (io_uring_disabled, seccomp), ENOMEM...
    const need = FEAT_SINGLE_MMAP | FEAT_SUBMIT_STABLE | FEAT_NATIVE_WORKERS;
    if ((params.getUint32(20, true) & need) !== need) {
      closeFd(fd);
      return undefined;
    }
    const sqEntries = params.getUint32(0, true);
    const cqEntries = params.getUint32(4, true);
    const ringBytes = Math.max(
      params.getUint32(40 + 4 * 6, true) + sqEntries * 4,
      params.getUint32(80 + 4 * 5, true) + cqEntries * CQE_BYTES,
    );
    let rings: Mapping | undefined;
    try {
      rings = mapShared(fd, ringBytes, { populate: true });
      const sqes = mapShared(fd, sqEntries * SQE_BYTES, { populate: true, offset: OFF_SQES });
      return new Uring(fd, params, rings, sqes);
    } catch {
      rings?.unmap();
      closeFd(fd);
      return undefined;
    }
  }

  /** How many more calls can be queued before {@linkcode Uring.submit}. */
  get room(): number {
    return this.entries - this.#queued;
  }

  #sqe(opcode: number, fd: number, tag: number): number {
    if (this.#closed) throw new Error("Uring used after close");
    if (this.#queued >= this.entries) throw new RangeError("Uring is full: submit first");
    const at = (this.#tail & this.#sqMask) * SQE_BYTES;
    this.#sqeBytes.fill(0, at, at + SQE_BYTES);
    this.#sqes.setUint8(at, opcode);
    this.#sqes.setInt32(at + 4, fd, true);
    setU64(this.#sqes, at + 32, tag);
    this.#tail = (this.#tail + 1) >>> 0;
    this.#queued++;
    return at;
  }

  /**
   * Queues `openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC)`; its result is the new
   * descriptor or a negated errno.
   *
   * @param dirfd The directory's descriptor.
   * @param name One path segment (no "/", not "", "." or "..").
   * @param flags `O.*` flags, without `O.CREAT` (an open that may create runs on a kernel
   *   worker thread: not what a batch is for).
   * @param tag What the completion is reported with (0 to 2^53).
   * @throws {SysError} EINVAL for a name that is not one segment, or asks to create.
   */
  openAt(dirfd: number, name: string, flags: number, tag: number): void {
    if (name === "" || name === "." || name === ".." || flags & O.CREAT) {
      throw new SysError("openat", Errno.EINVAL, name);
    }
    const slot = (this.#tail & this.#sqMask) * NAME_BYTES;
    const names = this.#names;
    const n = name.length;
    // ASCII names (fsbus's) byte by byte: no view and no encoder call per open; a "/" or a NUL
    // (not one segment) is refused in the same pass, not looked for in two more.
    let i = 0;
    if (n < NAME_BYTES) {
      for (; i < n; i++) {
        const c = name.charCodeAt(i);
        if (c >= 0x80) break;
        if (c === 0x2f || c === 0) throw new SysError("openat", Errno.EINVAL, name);
        names[slot + i] = c;
      }
    }
    let written = i;
    if (i < n) {
      if (name.includes("/", i) || name.includes("\0", i)) {
        throw new SysError("openat", Errno.EINVAL, name);
      }
      const got = this.#encoder.encodeInto(name, names.subarray(slot, slot + NAME_BYTES - 1));
      if (got.read !== n) throw new SysError("openat", 36, /* ENAMETOOLONG */ name);
      written = got.written;
    }
    names[slot + written] = 0;
    const at = this.#sqe(OP_OPENAT, dirfd, tag);
    setU64(this.#sqes, at + 16, this.#namesAt + slot);
    this.#sqes.setUint32(at + 28, flags | O.NOFOLLOW | O.CLOEXEC, true);
  }

  /**
   * Queues `pread(fd, into, into.length, 0)`, and with `close` a `close(fd)` that runs after
   * it, whatever the read gave. The read's result is the byte count or a negated errno.
   *
   * @param fd An open descriptor.
   * @param into Where the bytes go: not to be touched until {@linkcode Uring.submit} returns.
   * @param tag What the read's completion is reported with.
   * @param options `close`: close `fd` once read.
   */
  read(fd: number, into: Uint8Array, tag: number, options: { close?: boolean } = {}): void {
    if (options.close && this.room < 2) throw new RangeError("Uring is full: submit first");
    const at = this.#sqe(OP_READ, fd, tag);
    this.#sqes.setBigUint64(at + 16, address(into), true);
    this.#sqes.setUint32(at + 24, into.length, true);
    this.#pinned.push(into);
    // A hard link: the close waits for the read, and runs even when the read fails or reads
    // short (which a plain link would take for a failure).
    if (options.close) {
      this.#sqes.setUint8(at + 1, SQE_IO_HARDLINK);
      this.closeFd(fd);
    }
  }

  /**
   * Queues `close(fd)`; its completion is reported with tag -1.
   *
   * @param fd The descriptor.
   */
  closeFd(fd: number): void {
    this.#sqe(OP_CLOSE, fd, -1);
  }

  /**
   * Submits every queued call and waits until all have completed.
   *
   * @param onResult Called once per call, with its tag and result (a negated errno when it
   *   failed); closes report tag -1.
   * @throws {SysError} When `io_uring_enter` itself fails.
   */
  submit(onResult: (tag: number, result: number) => void): void {
    const c = libc();
    let unsubmitted = this.#queued;
    let pending = this.#queued;
    this.#queued = 0;
    this.#sqTail[0] = this.#tail; // the enter below is the barrier that publishes it
    try {
      while (pending > 0) {
        const n = Number(
          c.uring_enter(
            SYS_IO_URING_ENTER,
            this.#fd,
            unsubmitted,
            pending,
            ENTER_GETEVENTS,
            null,
            0n,
          ),
        );
        if (n < 0) {
          const e = errno();
          if (e === Errno.EINTR || e === Errno.EAGAIN || e === Errno.EBUSY) continue;
          throw new SysError("io_uring_enter", e);
        }
        unsubmitted -= n;
        pending -= this.#reap(onResult);
      }
    } finally {
      this.#pinned = [];
    }
  }

  #reap(onResult: (tag: number, result: number) => void): number {
    let head = this.#cqHead[0]!;
    const tail = this.#cqTail[0]!;
    let n = 0;
    for (; head !== tail; head = (head + 1) >>> 0, n++) {
      const at = (head & this.#cqMask) * CQE_BYTES;
      const tag = getI64(this.#cqes, at);
      onResult(tag, this.#cqes.getInt32(at + 8, true));
    }
    this.#cqHead[0] = head;
    return n;
  }

  /** Frees the ring; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sqeMap.unmap();
    this.#rings.unmap();
    closeFd(this.#fd);
  }
}
