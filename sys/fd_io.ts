/**
 * Positioned and synchronous descriptor calls for record files: `pread`/`pwrite` at an
 * offset, the size and position of a descriptor, a blocking `flock(2)`, `ftruncate` and
 * hole punching. Used where a few microseconds per call matter (mq's write path).
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

const AT_EMPTY_PATH = 0x1000;
const STATX_SIZE = 0x200;
const EMPTY = new Uint8Array(1);
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

/**
 * Reads up to `buf.length` bytes at `offset`, retrying on EINTR.
 *
 * @param fd The descriptor.
 * @param buf Where to put the bytes.
 * @param offset The file offset.
 * @returns How many bytes were read (0 at end of file).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { preadFd } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/records`, "0123456789");
 * const fd = openFd(`${dir}/records`, O.RDONLY);
 * const buf = new Uint8Array(64);
 * assert.equal(preadFd(fd, buf, 4), 6);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, 6)), "456789");
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function preadFd(fd: number, buf: Uint8Array, offset: number): number {
  const c = libc();
  for (;;) {
    const n = Number(
      c.pread(fd, buf as Uint8Array<ArrayBuffer>, BigInt(buf.length), BigInt(offset)),
    );
    if (n >= 0) return n;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("pread", e);
  }
}

/**
 * Reads exactly `buf.length` bytes at `offset` unless end of file comes first.
 *
 * @param fd The descriptor.
 * @param buf Where to put the bytes.
 * @param offset The file offset.
 * @returns How many bytes were read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { preadFull } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeFileSync(`${dir}/records`, new Uint8Array(100_000));
 * const fd = openFd(`${dir}/records`, O.RDONLY);
 * assert.equal(preadFull(fd, new Uint8Array(1 << 20), 0), 100_000); // stops at end of file
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function preadFull(fd: number, buf: Uint8Array, offset: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = preadFd(fd, buf.subarray(got), offset + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * Writes all of `data` at `offset` (on a descriptor opened without `O_APPEND`).
 *
 * @param fd The descriptor.
 * @param data The bytes.
 * @param offset The file offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdSize, pwriteAll } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/records`, O.RDWR | O.CREAT);
 * pwriteAll(fd, new Uint8Array([1]), 4096);
 * assert.equal(fdSize(fd), 4097);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function pwriteAll(fd: number, data: Uint8Array, offset: number): void {
  const c = libc();
  let off = 0;
  while (off < data.length) {
    // The whole of it on the first try (most writes): no view made per call.
    const n = Number(
      c.pwrite(
        fd,
        (off === 0 ? data : data.subarray(off)) as Uint8Array<ArrayBuffer>,
        BigInt(data.length - off),
        BigInt(offset + off),
      ),
    );
    if (n < 0) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      throw new SysError("pwrite", e);
    }
    off += n;
  }
}

/**
 * The size of an open file (`statx` asking for the size only).
 *
 * @param fd The descriptor.
 * @returns The size in bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdSize } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const fd = openFd(`${dir}/file`, O.RDONLY);
 * assert.equal(fdSize(fd), 5);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function fdSize(fd: number): number {
  check(libc().statx(fd, EMPTY, AT_EMPTY_PATH, STATX_SIZE, statxBuf), "statx");
  return statxView.getUint32(40, true) + statxView.getUint32(44, true) * 2 ** 32;
}

const STATX_MTIME = 0x40;

/**
 * The modification time of an open file or directory, in microseconds since the epoch
 * (`statx` asking for the time only; cheaper than a full stat).
 *
 * @param fd The descriptor.
 * @returns Microseconds since the epoch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdMtimeUs } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dirFd = openFd(dir, O.RDONLY | O.DIRECTORY);
 * const lastSeen = fdMtimeUs(dirFd);
 * Deno.utimeSync(dir, 0, 1); // one second after the epoch
 * const changed = fdMtimeUs(dirFd) !== lastSeen;
 * assert.ok(changed);
 * assert.equal(fdMtimeUs(dirFd), 1_000_000);
 * closeFd(dirFd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function fdMtimeUs(fd: number): number {
  check(libc().statx(fd, EMPTY, AT_EMPTY_PATH, STATX_MTIME, statxBuf), "statx");
  const sec = statxView.getUint32(112, true) + statxView.getInt32(116, true) * 2 ** 32;
  return sec * 1e6 + Math.floor(statxView.getUint32(120, true) / 1000);
}

/**
 * The size of an open regular file, by moving its position to the end (`lseek(SEEK_END)`):
 * the same size `statx` gives, at a lower cost per call, for a descriptor whose position
 * nothing else relies on (one written with `O_APPEND` and read with `pread`).
 *
 * @param fd The descriptor (a regular file: a pipe or socket fails with ESPIPE).
 * @returns The size in bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdEnd } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/log`, "hello");
 * const fd = openFd(`${dir}/log`, O.RDWR | O.APPEND);
 * assert.equal(fdEnd(fd), 5);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function fdEnd(fd: number): number {
  return check(libc().lseek(fd, 0n, 2), "lseek");
}

/**
 * The current file position of a descriptor (after an `O_APPEND` write: where it ended).
 *
 * @param fd The descriptor.
 * @returns The offset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdPosition } from "./fd_io.ts";
 * import { closeFd, O, openFd, writeAllFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/log`, "one\n");
 * const fd = openFd(`${dir}/log`, O.WRONLY | O.APPEND);
 * writeAllFd(fd, new TextEncoder().encode("two\n"));
 * const end = fdPosition(fd);
 * assert.equal(end, 8);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function fdPosition(fd: number): number {
  return check(libc().lseek(fd, 0n, 1), "lseek");
}

/**
 * Sets the length of an open file.
 *
 * @param fd The descriptor.
 * @param length The new length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdSize, truncateTo } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const fd = openFd(`${dir}/file`, O.RDWR);
 * truncateTo(fd, 0);
 * assert.equal(fdSize(fd), 0);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function truncateTo(fd: number, length: number): void {
  for (;;) {
    if (libc().ftruncate(fd, BigInt(length)) === 0) return;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("ftruncate", e);
  }
}

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_UN = 8;

/**
 * Takes a `flock(2)` lock, blocking the calling thread until it is granted. Meant for
 * critical sections of microseconds; a lock held for long belongs on a worker thread.
 *
 * @param fd The lock file's descriptor.
 * @param exclusive Exclusive (default) or shared.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockFd, unlockFd } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/lock`, O.RDWR | O.CREAT);
 * let inside = false;
 * lockFd(fd);
 * try {
 *   inside = true; // critical section
 * } finally {
 *   unlockFd(fd);
 * }
 * assert.ok(inside);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function lockFd(fd: number, exclusive = true): void {
  const c = libc();
  for (;;) {
    if (c.flock(fd, exclusive ? LOCK_EX : LOCK_SH) === 0) return;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("flock", e);
  }
}

/**
 * Takes a `flock(2)` lock if it is free, without waiting.
 *
 * @param fd The lock file's descriptor (read-only is enough).
 * @param exclusive Exclusive (default) or shared.
 * @returns True when the lock is now held, false when another descriptor holds it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tryLockFd, unlockFd } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const a = openFd(`${dir}/lock`, O.RDONLY | O.CREAT, 0o600);
 * const b = openFd(`${dir}/lock`, O.RDONLY);
 * assert.equal(tryLockFd(a), true); // nobody held it
 * assert.equal(tryLockFd(b), false); // held through the other descriptor
 * unlockFd(a);
 * assert.equal(tryLockFd(b), true);
 * closeFd(a);
 * closeFd(b);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function tryLockFd(fd: number, exclusive = true): boolean {
  const c = libc();
  for (;;) {
    if (c.flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | 4 /* LOCK_NB */) === 0) return true;
    const e = errno();
    if (e === Errno.EAGAIN) return false;
    if (e !== Errno.EINTR) throw new SysError("flock", e);
  }
}

/**
 * Releases a `flock(2)` lock.
 *
 * @param fd The lock file's descriptor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockFd, unlockFd } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const a = openFd(`${dir}/lock`, O.RDWR | O.CREAT);
 * const b = openFd(`${dir}/lock`, O.RDWR);
 * lockFd(a);
 * unlockFd(a);
 * lockFd(b); // free again: does not block
 * unlockFd(b);
 * closeFd(a);
 * closeFd(b);
 * assert.ok(true);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function unlockFd(fd: number): void {
  libc().flock(fd, LOCK_UN);
}

const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;

/**
 * Frees the blocks of a byte range, keeping the file's size (the range then reads as zeros).
 *
 * @param fd The descriptor.
 * @param offset Where the range starts.
 * @param length How long it is.
 * @returns False when the file system cannot punch holes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdSize, preadFd, punchHole } from "./fd_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeFileSync(`${dir}/history`, new Uint8Array(1 << 20).fill(7));
 * const fd = openFd(`${dir}/history`, O.RDWR);
 * if (punchHole(fd, 0, 1 << 16)) {
 *   const head = new Uint8Array(16);
 *   preadFd(fd, head, 0);
 *   assert.deepEqual(head, new Uint8Array(16)); // reads as zeros now
 * }
 * assert.equal(fdSize(fd), 1 << 20); // the size is kept
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function punchHole(fd: number, offset: number, length: number): boolean {
  if (length <= 0) return true;
  const c = libc();
  for (;;) {
    const r = c.fallocate(
      fd,
      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
      BigInt(offset),
      BigInt(length),
    );
    if (r === 0) return true;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.ENOTSUP || e === Errno.ENOSYS) return false;
    throw new SysError("fallocate", e);
  }
}
