/**
 * futex(2) and futex_waitv(2) through FFI, on shared (not `_PRIVATE`) futex words, so that
 * processes mapping the same file can sleep on a word and wake each other.
 *
 * The waits come in two shapes: synchronous (the calling thread sleeps, errno is readable)
 * and asynchronous (the wait runs on a worker thread and the event loop stays free; errno is
 * not readable afterwards, so callers re-check their condition whatever the result).
 *
 * @module
 */

import { errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

const ARM = Deno.build.arch === "aarch64";
const SYS_FUTEX = ARM ? 98n : 202n;
const SYS_FUTEX_WAITV = 449n;

const FUTEX_WAIT = 0;
const FUTEX_WAKE = 1;
const FUTEX_WAKE_OP = 5;
const FUTEX_OP_ADD = 1;
const FUTEX_32 = 2;
const CLOCK_MONOTONIC = 1;

/** How a futex wait ended: woken (or spuriously returned), the word differed, or timed out. */
export type FutexWaitResult = "woken" | "changed" | "timeout";

const NULL_PTR = null;

function timespecRel(timeoutMs: number, buf: BigInt64Array): Deno.PointerObject | null {
  if (timeoutMs < 0 || !Number.isFinite(timeoutMs)) return NULL_PTR;
  const ns = Math.max(0, Math.round(timeoutMs * 1e6));
  buf[0] = BigInt(Math.floor(ns / 1e9));
  buf[1] = BigInt(ns % 1e9);
  return Deno.UnsafePointer.of(buf) as Deno.PointerObject;
}

// 128 bytes: large enough to live outside the V8 heap, so its address is stable.
const tsSync = new BigInt64Array(16);

/**
 * Sleeps while the 32-bit word at `addr` holds `expected` (FUTEX_WAIT, shared), blocking
 * the calling thread.
 *
 * @param addr The word's address (4-byte aligned, in a shared mapping).
 * @param expected The value it must hold for the wait to start.
 * @param timeoutMs The longest sleep in milliseconds; negative means none.
 * @returns How the wait ended ("woken" also covers signals and spurious returns).
 * @throws {SysError} On EFAULT, EINVAL or ENOSYS.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWait } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * assert.equal(futexWait(mapping.at(64), 0, 10), "timeout"); // holds 0: sleeps 10 ms
 * assert.equal(futexWait(mapping.at(64), 1, 10), "changed"); // does not hold 1: returns at once
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function futexWait(
  addr: Deno.PointerObject,
  expected: number,
  timeoutMs = -1,
): FutexWaitResult {
  const ts = timespecRel(timeoutMs, tsSync);
  const r = Number(libc().syscall6(SYS_FUTEX, addr, FUTEX_WAIT, expected >>> 0, ts, null, 0));
  return waitResult(r, "futex");
}

/**
 * Classifies a failed wait. Only EFAULT, EINVAL and ENOSYS are real errors (a bad address or
 * call); anything else is reported as "woken" so callers re-check: the runtime may run other
 * native code between the call and the errno read, so an unexpected value is not trusted.
 */
function waitResult(r: number, name: string): FutexWaitResult {
  if (r >= 0) return "woken";
  const e = errno();
  if (e === Errno.EAGAIN) return "changed";
  if (e === Errno.ETIMEDOUT) return "timeout";
  if (e === Errno.EFAULT || e === Errno.EINVAL || e === Errno.ENOSYS) {
    throw new SysError(name, e);
  }
  return "woken";
}

/**
 * Sleeps while the word at `addr` holds `expected`, on a worker thread: the event loop
 * stays free. The result cannot say why the wait ended (errno is not readable after an
 * asynchronous call): re-check the condition.
 *
 * @param addr The word's address.
 * @param expected The value it must hold for the wait to start.
 * @param timeoutMs The longest sleep in milliseconds; negative means none.
 * @returns The raw result: 0 when woken, negative otherwise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWaitAsync, futexWake } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * const word = new Int32Array(mapping.buffer, 64, 1);
 * const waiting = futexWaitAsync(mapping.at(64), 0);
 * // Another process would store and wake; until the waiter sleeps, a wake may find nobody.
 * Atomics.store(word, 0, 1);
 * futexWake(mapping.at(64));
 * await waiting; // it slept and was woken, or saw 1 and did not sleep
 * assert.equal(Atomics.load(word, 0), 1);
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function futexWaitAsync(
  addr: Deno.PointerObject,
  expected: number,
  timeoutMs = -1,
): Promise<number> {
  // Each pending call needs its own timespec, alive until the worker has returned.
  const tsBuf = timeoutMs >= 0 ? new BigInt64Array(16) : undefined;
  const ts = tsBuf ? timespecRel(timeoutMs, tsBuf) : null;
  const r = await libc().syscall6_async(SYS_FUTEX, addr, FUTEX_WAIT, expected >>> 0, ts, null, 0);
  void tsBuf;
  return Number(r);
}

/**
 * Wakes up to `count` waiters on the word at `addr` (FUTEX_WAKE, shared).
 *
 * @param addr The word's address.
 * @param count How many to wake (default: all).
 * @returns How many were woken.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWake } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * assert.equal(futexWake(mapping.at(64)), 0); // nobody waits
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function futexWake(addr: Deno.PointerObject, count = 0x7fffffff): number {
  const r = Number(libc().syscall6(SYS_FUTEX, addr, FUTEX_WAKE, count, null, null, 0));
  if (r < 0) throw new SysError("futex", errno());
  return r;
}

/**
 * Adds `add` (-2048..2047) to the word at `addr` and wakes every waiter on it, as one atomic
 * step in the kernel (FUTEX_WAKE_OP): a process killed around this call has either done
 * both or neither.
 *
 * @param addr The word's address.
 * @param add The amount to add.
 * @returns How many were woken.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexAddAndWake } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * futexAddAndWake(mapping.at(64), 1);
 * assert.equal(new Int32Array(mapping.buffer)[16], 1);
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function futexAddAndWake(addr: Deno.PointerObject, add: number): number {
  // op = (FUTEX_OP_ADD << 28) | (FUTEX_OP_CMP_EQ << 24) | (oparg << 12) | cmparg; the
  // second wake (of the same word) wakes nobody: nr_wake2 is 0.
  const op = ((FUTEX_OP_ADD << 28) | ((add & 0xfff) << 12)) >>> 0;
  const r = Number(
    libc().syscall6(SYS_FUTEX, addr, FUTEX_WAKE_OP, 0x7fffffff, null, addr, op),
  );
  if (r < 0) throw new SysError("futex", errno());
  return r;
}

/** One word to wait on with {@linkcode futexWaitv}. */
export interface FutexWaitItem {
  /** The word's address. */
  addr: Deno.PointerObject;
  /** The value it must hold for the wait to start. */
  expected: number;
}

function waitvArgs(items: readonly FutexWaitItem[], timeoutMs: number) {
  // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }
  const buf = new BigUint64Array(Math.max(16, items.length * 3));
  items.forEach((it, i) => {
    buf[i * 3] = BigInt(it.expected >>> 0);
    buf[i * 3 + 1] = Deno.UnsafePointer.value(it.addr) as bigint;
    buf[i * 3 + 2] = BigInt(FUTEX_32);
  });
  let ts: Deno.PointerObject | null = null;
  let tsBuf: BigInt64Array | undefined;
  if (timeoutMs >= 0 && Number.isFinite(timeoutMs)) {
    // futex_waitv takes an absolute CLOCK_MONOTONIC deadline.
    tsBuf = new BigInt64Array(16);
    libc().clock_gettime(CLOCK_MONOTONIC, new Uint8Array(tsBuf.buffer));
    const ns = tsBuf[0]! * 1_000_000_000n + tsBuf[1]! + BigInt(Math.round(timeoutMs * 1e6));
    tsBuf[0] = ns / 1_000_000_000n;
    tsBuf[1] = ns % 1_000_000_000n;
    ts = Deno.UnsafePointer.of(tsBuf) as Deno.PointerObject;
  }
  const clock = Deno.UnsafePointer.create(BigInt(CLOCK_MONOTONIC));
  return { buf, ts, tsBuf, clock, waiters: Deno.UnsafePointer.of(buf) as Deno.PointerObject };
}

/**
 * Sleeps until any of several words no longer holds its expected value or is woken
 * (futex_waitv, Linux 5.16 and later), blocking the calling thread.
 *
 * @param items The words and their expected values (at most 128).
 * @param timeoutMs The longest sleep in milliseconds; negative means none.
 * @returns How the wait ended.
 * @throws {SysError} ENOSYS on kernels without futex_waitv, and other unexpected errors.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWaitv, futexWaitvSupported } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * if (futexWaitvSupported()) {
 *   new Int32Array(mapping.buffer)[32] = 4;
 *   const words = [{ addr: mapping.at(64), expected: 0 }, { addr: mapping.at(128), expected: 4 }];
 *   assert.equal(futexWaitv(words, 10), "timeout");
 *   assert.equal(futexWaitv([{ addr: mapping.at(128), expected: 0 }], 1000), "changed");
 * }
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function futexWaitv(items: readonly FutexWaitItem[], timeoutMs = -1): FutexWaitResult {
  const a = waitvArgs(items, timeoutMs);
  const r = Number(
    libc().syscall6(SYS_FUTEX_WAITV, a.waiters, items.length, 0, a.ts, a.clock, 0),
  );
  return waitResult(r, "futex_waitv");
}

let waitvSupported: boolean | undefined;

/**
 * Whether this kernel has futex_waitv (Linux 5.16 and later).
 *
 * @returns True when {@linkcode futexWaitv} can be used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWaitvSupported } from "./futex.ts";
 * // false before Linux 5.16: wait on one word per topic instead
 * assert.equal(typeof futexWaitvSupported(), "boolean");
 * ```
 */
export function futexWaitvSupported(): boolean {
  if (waitvSupported === undefined) {
    // With no words the call fails at once: EINVAL where it exists, ENOSYS where it does not.
    const r = Number(libc().syscall6(SYS_FUTEX_WAITV, null, 0, 0, null, null, 0));
    waitvSupported = r >= 0 || errno() !== Errno.ENOSYS;
  }
  return waitvSupported;
}

/**
 * The asynchronous twin of {@linkcode futexWaitv}: waits on a worker thread. Re-check the
 * condition whatever the result (errno is not readable).
 *
 * @param items The words and their expected values (at most 128).
 * @param timeoutMs The longest sleep in milliseconds; negative means none.
 * @returns The raw result: the index of a woken word, or negative.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { futexWaitvAsync, futexWaitvSupported } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * if (futexWaitvSupported()) {
 *   // The word does not hold 1: the wait returns at once (re-check the words afterwards).
 *   await futexWaitvAsync([{ addr: mapping.at(64), expected: 1 }]);
 *   assert.equal(new Int32Array(mapping.buffer)[16], 0);
 * }
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function futexWaitvAsync(
  items: readonly FutexWaitItem[],
  timeoutMs = -1,
): Promise<number> {
  const a = waitvArgs(items, timeoutMs);
  const r = await libc().syscall6_async(
    SYS_FUTEX_WAITV,
    a.waiters,
    items.length,
    0,
    a.ts,
    a.clock,
    0,
  );
  // Keep the buffers alive until the call has returned.
  void a.buf;
  void a.tsBuf;
  return Number(r);
}

/**
 * A private futex word for cutting an asynchronous wait short without a lost wake-up: wait
 * on it together with the real word (futex_waitv), taking its value when the wait starts;
 * `cancel()` changes the value and wakes it, so a wait that had not yet reached the kernel
 * returns at once instead of sleeping forever.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CancelWord, futexWaitvAsync, futexWaitvSupported } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * if (futexWaitvSupported()) {
 *   const cancel = new CancelWord();
 *   const pending = futexWaitvAsync([{ addr: mapping.at(64), expected: 0 }, cancel.item()]);
 *   cancel.cancel(); // pending resolves, whether or not the wait had started yet
 *   await pending;
 *   assert.equal(new Int32Array(mapping.buffer)[16], 0);
 * }
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class CancelWord {
  // 128 bytes: large enough to live outside the V8 heap, so its address is stable.
  readonly #word = new Int32Array(32);
  readonly #addr = Deno.UnsafePointer.of(this.#word) as Deno.PointerObject;

  /**
   * The word and its current value, to include in a wait.
   *
   * @returns The wait item.
   */
  item(): FutexWaitItem {
    return { addr: this.#addr, expected: Atomics.load(this.#word, 0) };
  }

  /** Ends every wait that includes an item taken before this call. */
  cancel(): void {
    Atomics.add(this.#word, 0, 1);
    futexWake(this.#addr);
  }
}

/**
 * A reusable list of words for futex_waitv, so that a wait that repeats (a reader's loop)
 * allocates nothing: set the expected values, then wait. One wait at a time per list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CancelWord, futexWaitvSupported, WaitvList } from "./futex.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * if (futexWaitvSupported()) {
 *   const list = new WaitvList(2);
 *   const cancel = new CancelWord();
 *   list.set(0, { addr: mapping.at(64), expected: 0 });
 *   list.set(1, cancel.item());
 *   const pending = list.waitAsync(2);
 *   cancel.cancel();
 *   await pending;
 *   assert.equal(new Int32Array(mapping.buffer)[16], 0);
 * }
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class WaitvList {
  readonly #buf: BigUint64Array;
  readonly #ptr: Deno.PointerObject;
  readonly #clock = Deno.UnsafePointer.create(BigInt(CLOCK_MONOTONIC));
  #pending = false;

  /**
   * Makes a list for up to `capacity` words (at most 128).
   *
   * @param capacity The most words one wait will use.
   */
  constructor(capacity: number) {
    // At least 128 bytes, so the buffer lives outside the V8 heap at a stable address.
    this.#buf = new BigUint64Array(Math.max(16, capacity * 3));
    this.#ptr = Deno.UnsafePointer.of(this.#buf) as Deno.PointerObject;
    for (let i = 0; i < capacity; i++) this.#buf[i * 3 + 2] = BigInt(FUTEX_32);
  }

  /**
   * Sets the i-th word and its expected value.
   *
   * @param i The index.
   * @param item The word and value.
   */
  set(i: number, item: FutexWaitItem): void {
    if (this.#pending) throw new Error("WaitvList changed while a wait is pending");
    this.#buf[i * 3] = BigInt(item.expected >>> 0);
    this.#buf[i * 3 + 1] = Deno.UnsafePointer.value(item.addr) as bigint;
  }

  /**
   * Waits on a worker thread, without limit, until any of the first `count` words is woken
   * or does not hold its value. Re-check the condition whatever the result.
   *
   * @param count How many words of the list to wait on.
   * @returns The raw result.
   */
  async waitAsync(count: number): Promise<number> {
    this.#pending = true;
    try {
      return Number(
        await libc().syscall6_async(SYS_FUTEX_WAITV, this.#ptr, count, 0, null, this.#clock, 0),
      );
    } finally {
      this.#pending = false;
    }
  }
}
