/**
 * File calls Deno's own API lacks: `open` with `O_NOFOLLOW`/`O_NONBLOCK`, `statx` on an fd,
 * and whole-file reads and writes on raw descriptors.
 *
 * @module
 */

import { check, cpath, cstring, errno, lengthCache, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";

const ARM = Deno.build.arch === "aarch64";

/**
 * `open(2)` flags for this architecture (O_DIRECTORY and O_NOFOLLOW differ on aarch64).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { O } from "./fs.ts";
 * const flags = O.RDONLY | O.NOFOLLOW | O.CLOEXEC;
 * assert.ok(flags & O.NOFOLLOW);
 * ```
 */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: ARM ? 0o40000 : 0o200000,
  NOFOLLOW: ARM ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

/** The kind of file, from the mode bits. */
export type FileKind = "file" | "directory" | "symlink" | "fifo" | "socket" | "char" | "block";

/**
 * What {@linkcode fstat} reports about an open file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, type FdStat, fstat, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/null", O.RDONLY);
 * const st: FdStat = fstat(fd);
 * assert.equal(st.kind, "char");
 * closeFd(fd);
 * ```
 */
export interface FdStat {
  /** The kind of file. */
  kind: FileKind;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  /** Size in bytes. */
  size: number;
  /** Inode number. */
  ino: bigint;
  /** Modification time, nanoseconds since the epoch. */
  mtimeNs: bigint;
  /** Status change time, nanoseconds since the epoch. */
  ctimeNs: bigint;
  /** Owner's user id. */
  uid: number;
  /** Owner's group id. */
  gid: number;
  /** Number of hard links (0 once the file has been removed). */
  nlink: number;
  /** Major and minor numbers of the device holding the file. */
  dev: [number, number];
  /** Device major and minor numbers, for character and block devices. */
  rdev: [number, number];
}

const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;
const EMPTY = new Uint8Array(1);
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

/**
 * Opens a file with raw `open(2)` flags (see {@linkcode O}).
 *
 * @param path The path.
 * @param flags `O.*` flags; `O.CLOEXEC` is always added.
 * @param mode Permission bits for a file being created.
 * @returns The file descriptor.
 * @throws {SysError} With the errno (ELOOP for a symlink under `O.NOFOLLOW`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "x");
 * Deno.symlinkSync(`${dir}/file`, `${dir}/link`);
 * const fd = openFd(`${dir}/file`, O.RDONLY | O.NOFOLLOW);
 * closeFd(fd);
 * assert.throws(() => openFd(`${dir}/link`, O.RDONLY | O.NOFOLLOW), { code: "ELOOP" });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function openFd(path: string, flags: number, mode = 0o644): number {
  const c = libc();
  // Only an open that creates nothing may be made again (see `believed`).
  const again = (flags & O.CREAT) === 0;
  let previous = 0;
  for (;;) {
    const fd = c.open(cpath(path), flags | O.CLOEXEC, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (!again || believed(e, previous)) throw new SysError("open", e, path);
    previous = e;
  }
}

/** The errors a call on a path commonly reports: believed at once. */
const COMMON: ReadonlySet<number> = new Set([
  Errno.ENOENT,
  Errno.ENOTDIR,
  Errno.ELOOP,
  Errno.EACCES,
  Errno.EEXIST,
]);

/**
 * Whether a failed call's errno `e` is to be believed. The runtime may run other native code
 * between a call and the errno read (a filebus consumer once saw EAGAIN from `statx` for a
 * missing file), so an uncommon error counts only once the same call, made again, repeats it.
 */
function believed(e: number, previous: number): boolean {
  return COMMON.has(e) || e === previous;
}

/**
 * Closes a file descriptor, ignoring errors (there is nothing useful to do with them).
 *
 * @param fd The descriptor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const fd = openFd("/dev/null", O.RDONLY);
 * closeFd(fd);
 * closeFd(fd); // a second close is ignored
 * assert.ok(fd >= 0);
 * ```
 */
export function closeFd(fd: number): void {
  libc().close(fd);
}

/** False once close_range(2) has failed (a kernel before 5.9): close one at a time. */
let closeRangeWorks = true;

/**
 * Closes several descriptors with as few system calls as it can: each run of consecutive
 * numbers (as descriptors opened one after another get) is closed by one `close_range(2)`,
 * the others one by one. Every descriptor given must be open and the caller's, so that a run
 * holds no one else's. Errors are ignored, as {@linkcode closeFd} does.
 *
 * @param fds The descriptors.
 * @param count How many of `fds` to close, from the first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFds, fstat, O, openFd } from "./fs.ts";
 * const fds = [openFd("/dev/null", O.RDONLY), openFd("/dev/null", O.RDONLY)];
 * closeFds(fds);
 * assert.throws(() => fstat(fds[0]!));
 * assert.throws(() => fstat(fds[1]!));
 * ```
 */
export function closeFds(fds: ArrayLike<number>, count: number = fds.length): void {
  const c = libc();
  let i = 0;
  while (i < count) {
    let j = i + 1;
    while (j < count && fds[j] === fds[j - 1]! + 1) j++;
    if (j - i > 1 && closeRangeWorks && c.close_range !== null) {
      if (c.close_range(fds[i]!, fds[j - 1]!, 0) === 0) {
        i = j;
        continue;
      }
      closeRangeWorks = false;
    }
    for (; i < j; i++) c.close(fds[i]!);
  }
}

/**
 * The kind of file a `st_mode` value names.
 *
 * @param mode The mode as `stat(2)`/`statx(2)` return it (type bits and permissions).
 * @returns The kind; an unknown type counts as a regular file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileKind } from "./fs.ts";
 * assert.equal(fileKind(0o100644), "file");
 * assert.equal(fileKind(0o040755), "directory");
 * assert.equal(fileKind(0o120777), "symlink");
 * ```
 */
export function fileKind(mode: number): FileKind {
  switch (mode & 0o170000) {
    case 0o040000:
      return "directory";
    case 0o120000:
      return "symlink";
    case 0o010000:
      return "fifo";
    case 0o140000:
      return "socket";
    case 0o020000:
      return "char";
    case 0o060000:
      return "block";
    default:
      return "file";
  }
}

function timestamp(offset: number): bigint {
  return statxView.getBigInt64(offset, true) * 1_000_000_000n +
    BigInt(statxView.getUint32(offset + 8, true));
}

/**
 * `statx(2)` on an open descriptor (the layout is the same on every architecture).
 *
 * @param fd The descriptor.
 * @returns What the kernel reports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fstat, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const fd = openFd(`${dir}/file`, O.RDONLY);
 * assert.equal(fstat(fd).size, 5);
 * assert.equal(fstat(fd).uid, Deno.uid());
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function fstat(fd: number): FdStat {
  check(libc().statx(fd, EMPTY, AT_EMPTY_PATH, STATX_BASIC_STATS, statxBuf), "statx");
  return decodeStatx();
}

function decodeStatx(): FdStat {
  const mode = statxView.getUint16(28, true);
  return {
    kind: fileKind(mode),
    mode: mode & 0o7777,
    size: Number(statxView.getBigUint64(40, true)),
    ino: statxView.getBigUint64(32, true),
    mtimeNs: timestamp(112),
    ctimeNs: timestamp(96),
    uid: statxView.getUint32(20, true),
    gid: statxView.getUint32(24, true),
    nlink: statxView.getUint32(16, true),
    dev: [statxView.getUint32(136, true), statxView.getUint32(140, true)],
    rdev: [statxView.getUint32(128, true), statxView.getUint32(132, true)],
  };
}

/**
 * `statx(2)` on a path, without following a final symlink (an `lstat` with nanosecond times).
 *
 * @param path The path.
 * @returns What the kernel reports.
 * @throws {SysError} ENOENT when the path does not exist, and so on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lstatPath } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.symlinkSync("/dev/null", `${dir}/link`);
 * assert.equal(lstatPath(`${dir}/link`).kind, "symlink");
 * assert.ok(lstatPath(dir).mtimeNs > 0n);
 * assert.throws(() => lstatPath(`${dir}/missing`), { code: "ENOENT" });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function lstatPath(path: string): FdStat {
  check(
    libc().statx(AT_FDCWD, cpath(path), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf),
    "statx",
    path,
  );
  return decodeStatx();
}

/**
 * What the kernel reports about a path (not following a final symlink), or `undefined` when
 * nothing is there: {@linkcode lstatPath} without an exception for the common "absent" case,
 * for cheap existence checks on hot paths.
 *
 * @param path The path.
 * @returns The status, or undefined for ENOENT (and ENOTDIR on a parent).
 * @throws {SysError} For other failures, such as EACCES on a parent directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { statPath } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(statPath(`${dir}/bus`), undefined); // absent
 * assert.equal(statPath(dir)?.kind, "directory");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function statPath(path: string): FdStat | undefined {
  const c = libc();
  let previous = 0;
  for (;;) {
    if (c.statx(AT_FDCWD, cpath(path), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf) === 0) {
      return decodeStatx();
    }
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.ENOENT || e === Errno.ENOTDIR) return undefined;
    if (believed(e, previous)) throw new SysError("statx", e, path);
    previous = e;
  }
}

/**
 * `statx(2)` of a name inside an open directory, without following a symlink (`fstatat` with
 * `AT_SYMLINK_NOFOLLOW`), or `undefined` when nothing is there.
 *
 * @param dirfd The directory's descriptor.
 * @param name A name inside it.
 * @returns The status, or undefined for ENOENT.
 * @throws {SysError} For other failures.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, O, openFd, statAt } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/hostname`, "x");
 * const dirFd = openFd(dir, O.RDONLY | O.DIRECTORY);
 * assert.equal(statAt(dirFd, "hostname")?.kind, "file");
 * assert.equal(statAt(dirFd, "missing"), undefined);
 * closeFd(dirFd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function statAt(dirfd: number, name: string): FdStat | undefined {
  const c = libc();
  for (;;) {
    if (c.statx(dirfd, cpath(name), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf) === 0) {
      return decodeStatx();
    }
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.ENOENT) return undefined;
    throw new SysError("statx", e, name);
  }
}

/**
 * Reads from a descriptor until end of file, or until `limit` bytes would be exceeded.
 *
 * @param fd The descriptor.
 * @param sizeHint The expected size (from fstat), to size the buffer once.
 * @param limit The most bytes to accept.
 * @returns The bytes, or `undefined` when the file holds more than `limit`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, fstat, O, openFd, readAllFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const fd = openFd(`${dir}/file`, O.RDONLY);
 * const bytes = readAllFd(fd, fstat(fd).size, 1 << 20);
 * assert.equal(new TextDecoder().decode(bytes), "hello");
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readAllFd(fd: number, sizeHint: number, limit: number): Uint8Array | undefined {
  if (sizeHint > limit) return undefined;
  let buf = new Uint8Array(Math.min(limit + 1, Math.max(sizeHint + 1, 64)));
  let len = 0;
  const c = libc();
  for (;;) {
    if (len === buf.length) {
      if (len > limit) return undefined;
      const bigger = new Uint8Array(Math.min(limit + 1, buf.length * 2));
      bigger.set(buf);
      buf = bigger;
    }
    const n = Number(c.read(fd, buf.subarray(len), BigInt(buf.length - len)));
    if (n < 0) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      throw new SysError("read", e);
    }
    if (n === 0) break;
    len += n;
    // A regular file returns less than asked only at its end: skip the read that returns 0.
    if (len < buf.length && len === sizeHint) break;
  }
  if (len > limit) return undefined;
  return len === buf.length ? buf : buf.slice(0, len);
}

/**
 * The JSON value in a small regular file, read without following a symlink; `undefined` when
 * the file is missing, not a regular file, larger than `limit` or not JSON. For state files
 * in directories others may share: opened `O_NOFOLLOW|O_NONBLOCK` (a planted FIFO does not
 * block) and checked on the descriptor.
 *
 * @param path The file.
 * @param limit The largest size accepted, in bytes.
 * @returns The parsed value, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readJsonFile } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/state.json`, '{"id":"s1"}');
 * Deno.symlinkSync(`${dir}/state.json`, `${dir}/link.json`);
 * assert.deepEqual(readJsonFile(`${dir}/state.json`, 1024), { id: "s1" });
 * assert.equal(readJsonFile(`${dir}/link.json`, 1024), undefined);
 * assert.equal(readJsonFile(`${dir}/state.json`, 4), undefined);
 * assert.equal(readJsonFile(`${dir}/missing.json`, 1024), undefined);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readJsonFile(path: string, limit: number): unknown {
  let fd: number;
  try {
    fd = openFd(path, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstat(fd);
    if (st.kind !== "file") return undefined;
    const bytes = readAllFd(fd, st.size, limit);
    if (bytes === undefined) return undefined;
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  } finally {
    closeFd(fd);
  }
}

/**
 * Writes all of `data` to a descriptor, looping over short writes.
 *
 * @param fd The descriptor.
 * @param data The bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closeFd, O, openFd, writeAllFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/file`, O.WRONLY | O.CREAT | O.EXCL);
 * writeAllFd(fd, new TextEncoder().encode("hi\n"));
 * closeFd(fd);
 * assert.equal(Deno.readTextFileSync(`${dir}/file`), "hi\n");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function writeAllFd(fd: number, data: Uint8Array): void {
  const len = data.length;
  if (len === 0) return;
  const c = libc();
  // The whole of it on the first try (most writes): no view made, and the length's BigInt
  // made once per size.
  const bigSize = writeLength(len);
  const first = c.write(fd, data as Uint8Array<ArrayBuffer>, bigSize);
  if (first === bigSize) return;
  let off = 0;
  let n = Number(first);
  for (;;) {
    if (n < 0) {
      const e = errno();
      if (e !== Errno.EINTR) throw new SysError("write", e);
    } else {
      off += n;
    }
    if (off >= len) return;
    n = Number(c.write(fd, data.subarray(off) as Uint8Array<ArrayBuffer>, BigInt(len - off)));
  }
}

/** {@linkcode writeAllFd}'s lengths as BigInts. */
const writeLength = lengthCache();

/**
 * Removes a name (`unlink(2)`; a symlink is removed itself, never followed), without the
 * exception Deno's `removeSync` makes for a name that is not there.
 *
 * @param path The path.
 * @returns False when nothing was there.
 * @throws {SysError} For other failures (EISDIR, EACCES, ...).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unlinkPath } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "x");
 * assert.equal(unlinkPath(`${dir}/file`), true);
 * assert.equal(unlinkPath(`${dir}/file`), false);
 * Deno.removeSync(dir);
 * ```
 */
export function unlinkPath(path: string): boolean {
  if (libc().unlinkat(AT_FDCWD, cpath(path), 0) === 0) return true;
  const e = errno();
  if (e === Errno.ENOENT) return false;
  throw new SysError("unlink", e, path);
}

/**
 * Renames `from` over `to` (`rename(2)`: atomic, replacing what `to` named; neither path's
 * last component is followed if it is a symlink).
 *
 * @param from The current path.
 * @param to The new path.
 * @throws {SysError} When the rename fails (ENOENT, EISDIR, EXDEV, ...).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renamePath } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/new`, "x");
 * renamePath(`${dir}/new`, `${dir}/file`);
 * assert.equal(Deno.readTextFileSync(`${dir}/file`), "x");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function renamePath(from: string, to: string): void {
  check(libc().renameat(AT_FDCWD, cstring(from), AT_FDCWD, cstring(to)), "rename", to);
}
