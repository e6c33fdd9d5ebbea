/**
 * The user-space ring: /dev/fanout's semantics in a shared-memory file that every process
 * maps through FFI.
 *
 * ## File layout (all integers little-endian)
 *
 * ```text
 *    0  magic "fsbusrng"         8 bytes
 *    8  version                  u32 (1)
 *   12  flags                    u32 (bit 0: message mode)
 *   16  size                     u32: history a reader may lag behind before it is overrun
 *   20  capacity                 u32: bytes in the data area = size + maxWrite
 *   24  maxWrite                 u32: largest single commit = floor(size / 4)
 *   28  dataOffset               u32 (4096)
 *   32  created                  u64, CLOCK_REALTIME ns (informational)
 *   64  seq                      i32: commit counter << 1 | "someone sleeps" bit (futex word)
 *  128  lock                     u64: owner pid | owner start time << 32; 0 = free (futex on
 *                                the low word)
 *  136  lockWaiters              i32: writers sleeping on the lock
 *  192  slots[16]                { head f64, tail f64 }: stream positions after commit c live
 *                                in slot c % 16
 *  512  clients[128]             { pid i32, role << 31 | start i32 }: who has the ring open
 * 4096  data                     `capacity` bytes; stream position p lives at p % capacity
 * ```
 *
 * ## Why a killed process cannot break the ring
 *
 * Writers serialise on a lock word holding the owner's pid and start time. Under the lock a
 * writer copies its bytes to the data area past the committed head, writes the new head (and,
 * in message mode, the new oldest record) into the slot of the next commit, and then commits
 * with ONE atomic step: a compare-and-swap that adds 2 to `seq`, or, when a reader has set
 * the sleeper bit, `FUTEX_WAKE_OP`, which adds 1 (clearing the bit and counting the commit)
 * and wakes every sleeper inside the kernel as one operation. So a writer killed at any
 * instruction has either committed and woken, or done neither (no lost wake-up), and what it
 * wrote before dying lies past the committed head, where the next writer overwrites it: no
 * torn record is ever visible.
 *
 * The data area is `size + maxWrite` bytes while a reader may lag at most `size` behind the
 * head, so a write in progress (at most `maxWrite` bytes past the head) only ever overwrites
 * bytes that every reader already treats as lost. A reader copies what it wants, then re-reads
 * the committed head: if its start fell more than `size` behind meanwhile, the copy may be
 * torn, and it reports an overrun instead of delivering it (a seqlock, per reader).
 *
 * A writer that finds the lock held spins briefly, then sleeps on the lock word with a short
 * timeout; while it waits it checks whether the owner still runs (/proc/PID/stat: gone, a
 * zombie, or a different start time means dead) and, if not, takes the lock over with a
 * compare-and-swap. The dead owner can have left nothing half-done that matters (see above).
 * Readers never touch the lock, and writers never look at readers, so a stalled reader
 * cannot slow a writer.
 *
 * Readers sleep with `FUTEX_WAIT` on `seq` after setting its low bit (compare-and-swap, so a
 * commit racing with it makes the swap or the wait fail and the reader re-checks).
 *
 * ## What another user with access to the ring can do
 *
 * Every reader needs write access (it sets the sleeper bit and registers itself), so anyone
 * who can read a ring can also write any byte of it, or truncate it. fsbus cannot stop that
 * (it is what the permission grants); it makes sure such a user can spoil the topic's data
 * but never crash, hang or spin the other processes, nor make them read or write outside the
 * ring:
 *
 * - **Geometry is read once.** `open` reads the header with `pread` (a shrinking file gives a
 *   short read, not a fault), validates it and the file's size, and the ring keeps that copy:
 *   sizes in shared memory are never read again, so every offset computed later is bounded
 *   by the validated data area.
 * - **Every value read from the mapping is checked before use.** The committed head and
 *   oldest record must be whole numbers with `head - size <= tail <= head`; a reader's
 *   position outside `[head - size, head]` is an overrun; record lengths must fit both the
 *   largest write and the committed head. Bad values give a clear `FsbusError`, never an
 *   out-of-range copy.
 * - **Every loop is bounded.** The seqlock read of the head, the commit's compare-and-swap and
 *   the sleeper-bit swap give up after a fixed number of tries (legitimate contention needs a
 *   handful); the writer's walk over record lengths moves at least 4 bytes a step and stops
 *   at the head; the client table has 128 slots.
 * - **A lock owner is trusted only while it can be checked and not for long.** A lock word
 *   naming a dead process (by pid and start time) is taken over; one naming a live process
 *   (pid 1, say, which any reader can write) is waited for at most
 *   {@linkcode LOCK_TIMEOUT_MS}, then the write fails with a "busy" error naming the pid.
 * - **A truncated ring never kills the process.** Shrinking a file under a shared mapping
 *   makes the next touch of a lost page raise SIGBUS, which Deno cannot catch, and no check
 *   can close the race (the file can shrink right after any check: there is no lock a
 *   hostile user must respect, and tmpfs files cannot be sealed). Reading everything with
 *   `pread` instead would cost a system call per access and lose the fast path. So the ring
 *   is mapped only after its size is checked, and the mapping is registered with the SIGBUS
 *   guard of `sys/sigbus.ts`: a fault in it is answered by mapping a private zero page over
 *   the lost one and counting the fault. Every path that trusts shared memory (the head
 *   read that follows each copy, the commit, the lock) compares that count with the last
 *   one it saw (one load), and once the ring lost a page every call fails with "the ring
 *   file was truncated while in use": nothing read from the zero page is delivered, and
 *   nothing written there is committed. On architectures the guard does not support
 *   (anything but x86_64), a ring truncated under a live mapping still raises SIGBUS: give
 *   write access to a ring only to users trusted not to do that.
 * - A reader already asleep when the ring is truncated stays asleep until woken (a truncation
 *   wakes nobody); the next wake-up or timeout makes it report the damage.
 *
 * @module
 */

import { fromFsError, FsbusError, OverrunError } from "../../types.ts";
import { closeFd, type FdStat, fstat, O, openFd } from "../../sys/fs.ts";
import { preadFull } from "../../sys/fd_io.ts";
import { faultCounter, faultedIn, guardRange, unguardRange } from "../../sys/sigbus.ts";
import { allocateFd, type Mapping, mapShared } from "../../sys/mman.ts";
import { futexAddAndWake, futexWait, type FutexWaitItem, futexWake } from "../../sys/futex.ts";
import { SysError } from "../../sys/errno.ts";
import { isAlive, selfIdentity } from "./_owner.ts";

/** The default ring size, as the kernel module's `buffersize`. */
export const DEFAULT_RING_SIZE = 16384;
/** The smallest ring size accepted. */
export const MIN_RING_SIZE = 1024;
/** The largest ring size accepted (1 GiB). */
export const MAX_RING_SIZE = 1 << 30;

const MAGIC = new TextEncoder().encode("fsbusrng");
const VERSION = 1;
const FLAG_MESSAGES = 1;
const HEADER_SIZE = 4096;
const OFF_SEQ = 64;
const OFF_LOCK = 128;
const OFF_LOCK_WAITERS = 136;
const OFF_SLOTS = 192;
const SLOTS = 16;
const OFF_CLIENTS = 512;
const CLIENTS = 128;
/** How long a writer waits for a writer lock held by a live process (milliseconds). */
export const LOCK_TIMEOUT_MS = 3000;
/** Bytes of the length prefix of a record in message mode. */
export const RECORD_HEADER = 4;

/** What a ring file says about itself. */
export interface RingInfo {
  /** History in bytes: how far a reader may lag before it is overrun. */
  size: number;
  /** The largest single write (bytes in byte mode; prefix plus payload in message mode). */
  maxWrite: number;
  /** Whether readers get whole messages (the fsbus extension) rather than a byte stream. */
  messages: boolean;
}

/**
 * The geometry of a ring of `size` bytes.
 *
 * @param size The history size in bytes.
 * @returns The largest single write and the data area's length.
 */
export function ringGeometry(size: number): { maxWrite: number; capacity: number } {
  const maxWrite = Math.floor(size / 4);
  return { maxWrite, capacity: size + maxWrite };
}

/**
 * Checks a requested ring size.
 *
 * @param size The size in bytes.
 * @param what Where it came from, for the message.
 * @throws {FsbusError} When it is out of range.
 */
export function checkRingSize(size: number, what = "Ring size"): void {
  if (!Number.isSafeInteger(size) || size < MIN_RING_SIZE || size > MAX_RING_SIZE) {
    throw new FsbusError(
      "invalid",
      `${what} "${size}" is out of range: expected ${MIN_RING_SIZE} to ${MAX_RING_SIZE} bytes`,
    );
  }
}

/**
 * Writes a fresh ring into an open, empty file (ftruncate, then the header).
 *
 * @param fd The descriptor, opened read-write.
 * @param size The history size in bytes.
 * @param messages Whether the ring is in message mode.
 */
export function initRingFile(fd: number, size: number, messages: boolean): void {
  checkRingSize(size);
  const { maxWrite, capacity } = ringGeometry(size);
  // Real pages now (on tmpfs), not on the hot path's first touch.
  allocateFd(fd, HEADER_SIZE + capacity);
  const map = mapShared(fd, HEADER_SIZE);
  try {
    const u8 = new Uint8Array(map.buffer);
    const dv = new DataView(map.buffer);
    dv.setUint32(8, VERSION, true);
    dv.setUint32(12, messages ? FLAG_MESSAGES : 0, true);
    dv.setUint32(16, size, true);
    dv.setUint32(20, capacity, true);
    dv.setUint32(24, maxWrite, true);
    dv.setUint32(28, HEADER_SIZE, true);
    dv.setBigUint64(32, BigInt(Date.now()) * 1_000_000n, true);
    // The magic goes last: a file without it is not (yet) a ring.
    u8.set(MAGIC, 0);
  } finally {
    map.unmap();
  }
}

/** A ring's geometry, read once from its header and validated; never re-read. */
interface Geometry {
  size: number;
  capacity: number;
  maxWrite: number;
  messages: boolean;
}

/** The geometry a header gives, or why the file is not a usable ring. */
function checkHeader(dv: DataView, fileSize: number): Geometry | string {
  for (let i = 0; i < MAGIC.length; i++) {
    if (dv.getUint8(i) !== MAGIC[i]) return "not an fsbus ring (bad magic)";
  }
  const version = dv.getUint32(8, true);
  if (version !== VERSION) return `unsupported ring version ${version}`;
  const flags = dv.getUint32(12, true);
  const size = dv.getUint32(16, true);
  const capacity = dv.getUint32(20, true);
  const maxWrite = dv.getUint32(24, true);
  const dataOffset = dv.getUint32(28, true);
  const g = ringGeometry(size);
  if (
    size < MIN_RING_SIZE || size > MAX_RING_SIZE || capacity !== g.capacity ||
    maxWrite !== g.maxWrite || dataOffset !== HEADER_SIZE || (flags & ~FLAG_MESSAGES) !== 0
  ) {
    return "corrupt ring header";
  }
  if (fileSize !== HEADER_SIZE + capacity) {
    return `wrong size: ${fileSize} bytes, expected ${HEADER_SIZE + capacity}`;
  }
  return { size, capacity, maxWrite, messages: (flags & FLAG_MESSAGES) !== 0 };
}

/**
 * Reads a ring file's header without keeping it open, for listings.
 *
 * @param path The ring file.
 * @returns The ring's parameters and live reader/writer counts.
 * @throws {FsbusError} When the file is not a valid ring.
 */
export function inspectRing(path: string): RingInfo & { readers: number; writers: number } {
  const ring = Ring.open(path, { populate: false });
  try {
    return { ...ring.info(), ...ring.clients() };
  } finally {
    ring.close();
  }
}

/** One ring file, mapped. Shared by the readers and writers that use it. */
export class Ring {
  /** The file's path. */
  readonly path: string;
  /** History in bytes. */
  readonly size: number;
  /** Bytes in the data area. */
  readonly capacity: number;
  /** Largest single commit in bytes. */
  readonly maxWrite: number;
  /** Whether the ring is in message mode. */
  readonly messages: boolean;
  #fd: number;
  #map: Mapping;
  /** The whole mapping as bytes. */
  u8: Uint8Array;
  #i32: Int32Array;
  #i64: BigInt64Array;
  #f64: Float64Array;
  #seqAddr: Deno.PointerObject;
  #lockAddr: Deno.PointerObject;
  #users = 1;
  /** What the file was when opened (device and inode identify it). */
  readonly stat: FdStat;
  #guardSlot: number;
  /** The SIGBUS guard's fault counter (element 0), and its value when last checked. */
  readonly #faults: Int32Array = faultCounter();
  #seenFaults: number;
  #damage: FsbusError | undefined;

  private constructor(path: string, fd: number, map: Mapping, g: Geometry, stat: FdStat) {
    this.path = path;
    this.#fd = fd;
    this.#map = map;
    this.stat = stat;
    this.u8 = new Uint8Array(map.buffer);
    this.#i32 = new Int32Array(map.buffer, 0, HEADER_SIZE / 4);
    this.#i64 = new BigInt64Array(map.buffer, 0, HEADER_SIZE / 8);
    this.#f64 = new Float64Array(map.buffer, 0, HEADER_SIZE / 8);
    // The geometry comes from the validated copy of the header, never from shared memory
    // again: another process may rewrite the header at any time.
    this.size = g.size;
    this.capacity = g.capacity;
    this.maxWrite = g.maxWrite;
    this.messages = g.messages;
    this.#seqAddr = map.at(OFF_SEQ);
    this.#lockAddr = map.at(OFF_LOCK);
    this.#guardSlot = guardRange(map.pointer, map.length);
    this.#seenFaults = this.#faults[0]!;
  }

  /**
   * Throws when the mapping lost pages (the file was truncated under it; see the module
   * doc): call after touching shared memory and before trusting what was read.
   */
  checkIntact(): void {
    if (this.#faults[0] !== this.#seenFaults) this.#checkFaults();
    if (this.#damage) throw this.#damage;
  }

  #checkFaults(): void {
    const since = this.#seenFaults;
    this.#seenFaults = this.#faults[0]!;
    if (!this.#damage && faultedIn(this.#map.pointer, this.#map.length, since)) {
      this.#damage = new FsbusError(
        "invalid",
        `Cannot use topic "${this.path}": the ring file was truncated while in use ` +
          `(by a process with write access); reopen it once it is repaired`,
      );
    }
  }

  /** Throws a clear error about a value in shared memory that cannot be right. */
  corrupt(what: string): never {
    this.checkIntact();
    throw new FsbusError("invalid", `Cannot use topic "${this.path}": it is corrupt: ${what}`);
  }

  /**
   * Opens and maps an existing ring file, checking its header and size.
   *
   * @param path The ring file.
   * @param options `populate` (default true): map every page now, so that the hot path
   *   takes no page faults; `expect`: the file must be this one (same device and inode).
   * @returns The ring.
   * @throws {FsbusError} When the file is missing or not a valid ring.
   */
  static open(path: string, options: { populate?: boolean; expect?: FdStat } = {}): Ring {
    const { populate = true, expect } = options;
    let fd: number;
    try {
      fd = openFd(path, O.RDWR | O.NOFOLLOW);
    } catch (err) {
      throw sysToFsbus(err, "Cannot open topic", path);
    }
    try {
      const st = fstat(fd);
      if (st.kind !== "file") {
        throw new FsbusError("invalid", `Cannot open topic "${path}": not a ring file`);
      }
      if (expect && !sameFile(st, expect)) {
        throw new FsbusError(
          "invalid",
          `Cannot open topic "${path}": it was replaced by another file since it was checked`,
        );
      }
      if (st.size < HEADER_SIZE) {
        throw new FsbusError(
          "invalid",
          `Cannot open topic "${path}": not an fsbus ring (${st.size} bytes is too small)`,
        );
      }
      // The header is read with pread, into private memory: a file that shrinks now gives a
      // short read, never a SIGBUS, and the values checked are the values used.
      const header = new Uint8Array(64);
      if (preadFull(fd, header, 0) < header.length) {
        throw new FsbusError("invalid", `Cannot open topic "${path}": the file shrank`);
      }
      const g = checkHeader(new DataView(header.buffer), st.size);
      if (typeof g === "string") {
        throw new FsbusError("invalid", `Cannot open topic "${path}": ${g}`);
      }
      const length = HEADER_SIZE + g.capacity;
      const map = mapShared(fd, length, { populate });
      // Shrunk between the check and the mapping? Then say so now rather than at first use
      // (nothing has touched the mapping yet).
      try {
        if (fstat(fd).size < length) {
          throw new FsbusError("invalid", `Cannot open topic "${path}": the file shrank`);
        }
        return new Ring(path, fd, map, g, st);
      } catch (err) {
        map.unmap();
        throw err;
      }
    } catch (err) {
      closeFd(fd);
      throw sysToFsbus(err, "Cannot open topic", path);
    }
  }

  /** Adds a user: the ring is unmapped when the last one closes. */
  retain(): this {
    this.#users++;
    return this;
  }

  /** The ring's parameters. */
  info(): RingInfo {
    return { size: this.size, maxWrite: this.maxWrite, messages: this.messages };
  }

  /** The byte offset of the data area in {@linkcode Ring.u8}. */
  get dataOffset(): number {
    return HEADER_SIZE;
  }

  /** The futex word readers sleep on. */
  get seqAddr(): Deno.PointerObject {
    return this.#seqAddr;
  }

  /** The current value of the futex word. */
  seq(): number {
    return Atomics.load(this.#i32, OFF_SEQ / 4);
  }

  /** `seq` as read by the last {@linkcode Ring.head} call. */
  lastSeq = 0;
  /** The oldest record boundary as read by the last {@linkcode Ring.head} call. */
  lastTail = 0;

  /**
   * The committed head and oldest record, consistent with each other.
   *
   * @returns `[seq, head, tail]`.
   */
  committed(): [number, number, number] {
    const head = this.head();
    return [this.lastSeq, head, this.lastTail];
  }

  /**
   * The committed head, without allocating; the matching `seq` and oldest record boundary
   * are left in {@linkcode Ring.lastSeq} and {@linkcode Ring.lastTail}.
   *
   * @returns The head.
   */
  head(): number {
    const i32 = this.#i32;
    const f64 = this.#f64;
    // Bounded: commits are rare next to this loop's few instructions, so only a process
    // rewriting `seq` on purpose keeps it from settling.
    for (let tries = 0; tries < 100_000; tries++) {
      const s = Atomics.load(i32, OFF_SEQ / 4);
      const c = s >>> 1;
      const slot = (OFF_SLOTS >> 3) + (c & (SLOTS - 1)) * 2;
      const head = f64[slot]!;
      const tail = f64[slot + 1]!;
      const c2 = Atomics.load(i32, OFF_SEQ / 4) >>> 1;
      // Slot c is rewritten only while commit c + 16 is being prepared.
      if (((c2 - c) & 0x7fffffff) < SLOTS - 2) {
        if (this.#faults[0] !== this.#seenFaults || this.#damage) this.checkIntact();
        // Positions are whole numbers; the oldest record lies within the history.
        if (
          !(head <= Number.MAX_SAFE_INTEGER && tail <= head && tail >= head - this.size &&
            tail >= 0 && Math.floor(head) === head && Math.floor(tail) === tail)
        ) {
          this.corrupt(`bad head ${head} or oldest record ${tail}`);
        }
        this.lastSeq = s;
        this.lastTail = tail;
        return head;
      }
    }
    return this.corrupt("its commit counter never settles");
  }

  // ---- writer side ---------------------------------------------------------------------

  #lockWord(): bigint {
    const me = selfIdentity();
    return BigInt(me.pid) | (BigInt(me.start) << 32n);
  }

  /**
   * Takes the writer lock, taking it over from a dead owner if need be.
   *
   * @param timeoutMs How long a live owner may keep it (default {@linkcode LOCK_TIMEOUT_MS}).
   * @throws {FsbusError} "busy" when the owner keeps it longer: a stopped writer, or a word
   *   that names a process that is not a writer at all (any reader can write it).
   */
  lock(timeoutMs = LOCK_TIMEOUT_MS): void {
    const mine = this.#lockWord();
    const idx = OFF_LOCK / 8;
    const i64 = this.#i64;
    if (Atomics.compareExchange(i64, idx, 0n, mine) === 0n) return;
    for (let spin = 0; spin < 200; spin++) {
      if (Atomics.load(i64, idx) === 0n && Atomics.compareExchange(i64, idx, 0n, mine) === 0n) {
        return;
      }
    }
    this.checkIntact();
    const waiters = OFF_LOCK_WAITERS / 4;
    Atomics.add(this.#i32, waiters, 1);
    const deadline = performance.now() + timeoutMs;
    try {
      let waited = 0;
      let owner = 0n;
      // Every turn sleeps up to 2 ms or sees the word change, and the deadline bounds both.
      while (performance.now() < deadline) {
        owner = Atomics.load(i64, idx);
        if (owner === 0n) {
          if (Atomics.compareExchange(i64, idx, 0n, mine) === 0n) return;
          continue;
        }
        const pid = Number(owner & 0xffffffffn);
        const start = Number(owner >> 32n);
        if (++waited % 4 === 0 && !isAlive(pid, start)) {
          // The owner died holding the lock: whatever it left lies past the committed
          // head and is overwritten by this write.
          if (Atomics.compareExchange(i64, idx, owner, mine) === owner) return;
          continue;
        }
        futexWait(this.#lockAddr, pid | 0, 2);
      }
      this.checkIntact();
      throw new FsbusError(
        "busy",
        `Cannot write to topic "${this.path}": its writer lock has been held by pid ${
          Number(owner & 0xffffffffn)
        } for over ${timeoutMs / 1000} s (a stopped writer, or a lock word written by ` +
          `another process)`,
      );
    } finally {
      Atomics.sub(this.#i32, waiters, 1);
    }
  }

  /** Releases the writer lock and wakes one waiting writer, if any. */
  unlock(): void {
    Atomics.store(this.#i64, OFF_LOCK / 8, 0n);
    if (Atomics.load(this.#i32, OFF_LOCK_WAITERS / 4) > 0) futexWake(this.#lockAddr, 1);
  }

  /** Copies bytes into the data area at stream position `pos` (wrapping). */
  put(pos: number, data: Uint8Array): void {
    const cap = this.capacity;
    const at = pos % cap;
    const first = Math.min(data.length, cap - at);
    this.u8.set(first === data.length ? data : data.subarray(0, first), HEADER_SIZE + at);
    if (first < data.length) this.u8.set(data.subarray(first), HEADER_SIZE);
  }

  /** Copies `length` bytes out of the data area from stream position `pos` (wrapping). */
  get(pos: number, length: number, into?: Uint8Array, intoOffset = 0): Uint8Array {
    const cap = this.capacity;
    const at = pos % cap;
    const first = Math.min(length, cap - at);
    const start = HEADER_SIZE + at;
    if (into === undefined && first === length) return this.u8.slice(start, start + length);
    const out = into ?? new Uint8Array(length);
    out.set(this.u8.subarray(start, start + first), intoOffset);
    if (first < length) {
      out.set(this.u8.subarray(HEADER_SIZE, HEADER_SIZE + length - first), intoOffset + first);
    }
    return out;
  }

  /** Writes a little-endian u32 at stream position `pos` (wrapping). */
  putU32(pos: number, value: number): void {
    const cap = this.capacity;
    for (let i = 0; i < 4; i++) {
      this.u8[HEADER_SIZE + ((pos + i) % cap)] = (value >>> (8 * i)) & 0xff;
    }
  }

  /** Reads a little-endian u32 at stream position `pos` (wrapping). */
  getU32(pos: number): number {
    const cap = this.capacity;
    const u8 = this.u8;
    const at = pos % cap;
    if (at + 4 <= cap) {
      const o = HEADER_SIZE + at;
      return (u8[o]! | (u8[o + 1]! << 8) | (u8[o + 2]! << 16) | (u8[o + 3]! << 24)) >>> 0;
    }
    let v = 0;
    for (let i = 0; i < 4; i++) v |= u8[HEADER_SIZE + ((pos + i) % cap)]! << (8 * i);
    return v >>> 0;
  }

  /**
   * Publishes a commit: call with the lock held, after the bytes are in place.
   *
   * @param s The `seq` read at the start of this write (under the lock).
   * @param head The new head.
   * @param tail The new oldest record boundary.
   */
  commit(s: number, head: number, tail: number): void {
    // Nothing from a mapping that lost pages is published (the bytes may be zeros).
    if (this.#faults[0] !== this.#seenFaults || this.#damage) this.checkIntact();
    const c1 = ((s >>> 1) + 1) & 0x7fffffff;
    const slot = (OFF_SLOTS >> 3) + (c1 & (SLOTS - 1)) * 2;
    this.#f64[slot] = head;
    this.#f64[slot + 1] = tail;
    const i32 = this.#i32;
    const idx = OFF_SEQ / 4;
    // Only readers setting the sleeper bit race with this swap, and each sets it once per
    // commit: a word that keeps changing is being rewritten on purpose.
    for (let tries = 0; tries < 10_000; tries++) {
      const w = Atomics.load(i32, idx);
      if ((w & 1) !== 0) {
        // Someone sleeps: count the commit, clear the bit and wake them in one step.
        futexAddAndWake(this.#seqAddr, 1);
        this.checkIntact();
        return;
      }
      if (Atomics.compareExchange(i32, idx, w, (w + 2) | 0) === w) {
        if (this.#faults[0] !== this.#seenFaults) this.checkIntact();
        return;
      }
    }
    this.corrupt("its commit counter never settles");
  }

  // ---- reader side -----------------------------------------------------------------------

  /**
   * Prepares to sleep until the next commit: sets the sleeper bit on `seq` if `head` is
   * still the committed head.
   *
   * @param pos The reader's position.
   * @returns The futex word and value to wait on, or undefined when data is already there.
   */
  prepareWait(pos: number): FutexWaitItem | undefined {
    const i32 = this.#i32;
    const idx = OFF_SEQ / 4;
    for (let tries = 0;; tries++) {
      if (tries === 10_000) this.corrupt("its commit counter never settles");
      const head = this.head();
      const s = this.lastSeq;
      if (head !== pos) return undefined;
      if ((s & 1) !== 0) return { addr: this.#seqAddr, expected: s };
      if (Atomics.compareExchange(i32, idx, s, s | 1) === s) {
        return { addr: this.#seqAddr, expected: s | 1 };
      }
    }
  }

  /** Wakes every sleeper on `seq` (to cut one of our own waits short). */
  wakeAll(): void {
    if (!this.#map.unmapped) futexWake(this.#seqAddr);
  }

  /**
   * Sleeps (blocking the thread) until the head moves past `pos` or `timeoutMs` passes.
   *
   * @param pos The reader's position.
   * @param timeoutMs The longest wait; negative means none.
   * @returns True when data is there.
   */
  waitSync(pos: number, timeoutMs: number): boolean {
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      const item = this.prepareWait(pos);
      if (item === undefined) return true;
      const left = deadline === Infinity ? -1 : deadline - performance.now();
      if (left !== -1 && left <= 0) return false;
      futexWait(item.addr, item.expected, left);
    }
  }

  /**
   * Clears the sleeper bit if `seq` still holds `expected` (the value a cancelled wait was
   * started with): a wait that has not reached the kernel yet then finds the word changed.
   *
   * @param expected The value the wait was started with.
   */
  clearSleeper(expected: number): void {
    if (this.#map.unmapped || (expected & 1) === 0) return;
    Atomics.compareExchange(this.#i32, OFF_SEQ / 4, expected, expected & ~1);
  }

  // ---- clients ---------------------------------------------------------------------------

  /**
   * Records that this process has the ring open as a reader or writer.
   *
   * @param role "reader" or "writer".
   * @returns The slot, to pass to {@linkcode Ring.unregister} (-1 when the table is full).
   */
  register(role: "reader" | "writer"): number {
    const me = selfIdentity();
    const tag = ((role === "writer" ? 0x80000000 : 0) | (me.start & 0x7fffffff)) | 0;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < CLIENTS; i++) {
        const idx = OFF_CLIENTS / 4 + i * 2;
        if (Atomics.compareExchange(this.#i32, idx, 0, me.pid) === 0) {
          Atomics.store(this.#i32, idx + 1, tag);
          return i;
        }
      }
      this.#sweepClients();
    }
    return -1;
  }

  /**
   * Clears a slot taken by {@linkcode Ring.register}.
   *
   * @param slot The slot.
   */
  unregister(slot: number): void {
    if (slot < 0 || this.#map.unmapped) return;
    const idx = OFF_CLIENTS / 4 + slot * 2;
    Atomics.store(this.#i32, idx + 1, 0);
    Atomics.store(this.#i32, idx, 0);
  }

  #sweepClients(): void {
    for (let i = 0; i < CLIENTS; i++) {
      const idx = OFF_CLIENTS / 4 + i * 2;
      const pid = Atomics.load(this.#i32, idx);
      const tag = Atomics.load(this.#i32, idx + 1);
      // (A tag of 0 with a pid: the owner died between its two stores, or is making them.)
      if (pid !== 0 && !isAlive(pid, tag & 0x7fffffff)) {
        if (Atomics.compareExchange(this.#i32, idx + 1, tag, 0) === tag) {
          Atomics.compareExchange(this.#i32, idx, pid, 0);
        }
      }
    }
  }

  /** Counts the live readers and writers (processes that died are not counted). */
  clients(): { readers: number; writers: number } {
    let readers = 0;
    let writers = 0;
    for (let i = 0; i < CLIENTS; i++) {
      const idx = OFF_CLIENTS / 4 + i * 2;
      const pid = Atomics.load(this.#i32, idx);
      const tag = Atomics.load(this.#i32, idx + 1);
      if (pid === 0 || tag === 0 || !isAlive(pid, tag & 0x7fffffff)) continue;
      if (tag < 0) writers++;
      else readers++;
    }
    return { readers, writers };
  }

  /** Whether the ring has been closed by every user. */
  get closed(): boolean {
    return this.#map.unmapped;
  }

  /** Drops one user; the last one unmaps and closes the file. */
  close(): void {
    if (--this.#users > 0 || this.#map.unmapped) return;
    unguardRange(this.#guardSlot);
    this.#map.unmap();
    closeFd(this.#fd);
  }
}

/**
 * Whether two stats describe the same file (same device and inode).
 *
 * @param a One stat.
 * @param b The other.
 * @returns True when they are the same file.
 */
export function sameFile(a: FdStat, b: FdStat): boolean {
  return a.ino === b.ino && a.dev[0] === b.dev[0] && a.dev[1] === b.dev[1];
}

/**
 * Translates a libc or Deno error into an FsbusError saying what was done to which path:
 * {@linkcode fromFsError}, except that EPIPE (a /dev/fanout reader left behind by its
 * writers) becomes an {@linkcode OverrunError}.
 *
 * @param err The caught error.
 * @param action The action, such as "Cannot open topic".
 * @param path The path.
 * @returns The error to throw.
 */
export function sysToFsbus(err: unknown, action: string, path: string): FsbusError {
  if (err instanceof SysError && err.code === "EPIPE") {
    return new OverrunError(`${action} "${path}": reader overrun`);
  }
  return fromFsError(err, action, path);
}
