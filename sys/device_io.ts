/**
 * Plain descriptor I/O through FFI for devices: one `read`, one `write`, a synchronous
 * `poll` of one descriptor, and `ioctl`s that pass a pointer to a C int.
 *
 * @module
 */

import { errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

/**
 * One `read(2)`, retried on EINTR.
 *
 * @param fd The descriptor.
 * @param buf Where to put the bytes.
 * @returns How many bytes were read (0 at end of file).
 * @throws {SysError} On failure (EPIPE from a fanout reader that fell behind).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readFd } from "./device_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/zero", O.RDONLY);
 * assert.equal(readFd(fd, new Uint8Array(4096)), 4096);
 * closeFd(fd);
 * ```
 */
export function readFd(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  for (;;) {
    const n = Number(libc().read(fd, buf, BigInt(buf.length)));
    if (n >= 0) return n;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("read", e);
  }
}

/**
 * One `write(2)`, retried on EINTR; it may write fewer bytes than given.
 *
 * @param fd The descriptor.
 * @param data The bytes.
 * @returns How many bytes were written.
 * @throws {SysError} On failure.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeFd } from "./device_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/null", O.WRONLY);
 * assert.equal(writeFd(fd, new TextEncoder().encode("hi\n")), 3);
 * closeFd(fd);
 * ```
 */
export function writeFd(fd: number, data: Uint8Array): number {
  for (;;) {
    const n = Number(
      libc().write(fd, data as Uint8Array<ArrayBuffer>, BigInt(data.length)),
    );
    if (n >= 0) return n;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("write", e);
  }
}

const POLLIN = 0x1;
let pollBuf = new Uint8Array(64);
let pollView = new DataView(pollBuf.buffer);

/**
 * Waits, blocking the thread, until one of some descriptors is readable (`poll(2)` for
 * POLLIN).
 *
 * @param fds The descriptor, or several.
 * @param timeoutMs The longest wait in milliseconds; 0 checks without waiting; negative
 *   waits without limit.
 * @returns The `revents` bits of the first descriptor with any (0 when the time ran out).
 * @throws {SysError} On failure other than EINTR (which returns 0).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pollIn } from "./device_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/zero", O.RDONLY);
 * assert.notEqual(pollIn(fd, 0), 0); // readable
 * closeFd(fd);
 * ```
 */
export function pollIn(fds: number | readonly number[], timeoutMs: number): number {
  const list = typeof fds === "number" ? [fds] : fds;
  if (list.length * 8 > pollBuf.length) {
    pollBuf = new Uint8Array(Math.max(64, list.length * 8));
    pollView = new DataView(pollBuf.buffer);
  }
  list.forEach((fd, i) => {
    pollView.setInt32(i * 8, fd, true);
    pollView.setInt16(i * 8 + 4, POLLIN, true);
    pollView.setInt16(i * 8 + 6, 0, true);
  });
  const n = libc().poll(pollBuf, BigInt(list.length), Math.trunc(timeoutMs));
  if (n < 0) {
    const e = errno();
    if (e === Errno.EINTR) return 0;
    throw new SysError("poll", e);
  }
  if (n === 0) return 0;
  for (let i = 0; i < list.length; i++) {
    const r = pollView.getInt16(i * 8 + 6, true);
    if (r !== 0) return r;
  }
  return 0;
}

const intBuf = new Uint8Array(64);
const intView = new DataView(intBuf.buffer);

/**
 * An `ioctl(2)` whose argument is a pointer to a C int: sets the int to `value` first and
 * returns what it holds afterwards (for "get" requests, what the driver stored).
 *
 * @param fd The descriptor.
 * @param request The request number.
 * @param value The int to pass (for "set" requests).
 * @returns The int after the call.
 * @throws {SysError} With the errno (ENOTTY when the driver has no such request).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ioctlInt } from "./device_io.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * // FIONREAD: how many bytes can be read (a fanout device answers its own requests, such as
 * // 0x80046600 for its count of readers).
 * const FIONREAD = 0x541b;
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const fd = openFd(`${dir}/file`, O.RDONLY);
 * assert.equal(ioctlInt(fd, FIONREAD), 5);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function ioctlInt(fd: number, request: number, value = 0): number {
  intView.setInt32(0, value, true);
  const r = libc().ioctl(fd, BigInt(request >>> 0), intBuf);
  if (r < 0) throw new SysError("ioctl", errno());
  return intView.getInt32(0, true);
}
