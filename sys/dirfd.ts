/**
 * Working inside a directory tree that other users may share, relative to directory
 * descriptors: `openat`, `mkdirat`, `unlinkat`, `renameat` and `getdents64`, every name one
 * path segment, never a symlink followed. A directory swapped for a symlink in a race makes
 * the next call fail (ELOOP, ENOTDIR), never act somewhere else.
 *
 * @module
 */

import { check, cpath, cstring, errno, lengthCache, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { type FileKind, fileKind, O } from "./fs.ts";

/** `AT_FDCWD`: "relative to the current directory" for the `*at` calls. */
export const AT_FDCWD = -100;
const AT_REMOVEDIR = 0x200;
const SYS_GETDENTS64 = Deno.build.arch === "aarch64" ? 61 : 217;

function segment(name: string): string {
  if (name === "" || name.includes("/") || name === "." || name === "..") {
    throw new SysError("openat", Errno.EINVAL, name);
  }
  return name;
}

/**
 * Opens a name inside a directory with raw `open(2)` flags; `O_NOFOLLOW` and `O_CLOEXEC` are
 * always added, and the name must be one path segment.
 *
 * @param dirfd The directory's descriptor (or {@linkcode AT_FDCWD}).
 * @param name One path segment.
 * @param flags `O.*` flags.
 * @param mode Permission bits for a file being created.
 * @returns The descriptor.
 * @throws {SysError} ELOOP for a symlink, ENOENT, EEXIST with `O.EXCL`, and so on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAt, openDir } from "./dirfd.ts";
 * import { closeFd, fstat, O } from "./fs.ts";
 * const dir = openDir("/etc");
 * const fd = openAt(dir, "hostname", O.RDONLY | O.NONBLOCK);
 * assert.equal(fstat(fd).kind, "file");
 * closeFd(fd);
 * closeFd(dir);
 * ```
 */
export function openAt(dirfd: number, name: string, flags: number, mode = 0o600): number {
  return openAtBytes(dirfd, cpath(segment(name)), flags, mode, name);
}

/**
 * {@linkcode openAt} for a name already encoded, for hot paths that make many files: `cname`
 * holds the name's bytes followed by NUL, written by the caller (no encoding per call).
 * `O_NOFOLLOW` and `O_CLOEXEC` are always added. The caller vouches that the name is one path
 * segment (not "", "." or "..", no "/"): this function does not look (the message ids a
 * publisher writes are made of hex digits and dashes, or checked against the id pattern).
 *
 * @param dirfd The directory's descriptor.
 * @param cname The name's bytes, then NUL.
 * @param flags `O.*` flags.
 * @param mode Permission bits for a file being created.
 * @param name The name as text, for the error.
 * @returns The descriptor.
 * @throws {SysError} ELOOP for a symlink, ENOENT, EEXIST with `O.EXCL`, and so on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAtBytes, openDir } from "./dirfd.ts";
 * import { closeFd, O } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = openDir(path);
 * const cname = new TextEncoder().encode("msg\0");
 * const fd = openAtBytes(dir, cname, O.WRONLY | O.CREAT | O.EXCL, 0o600, "msg");
 * closeFd(fd);
 * assert.throws(() => openAtBytes(dir, cname, O.WRONLY | O.CREAT | O.EXCL, 0o600, "msg"), {
 *   code: "EEXIST",
 * });
 * closeFd(dir);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function openAtBytes(
  dirfd: number,
  cname: Uint8Array<ArrayBuffer>,
  flags: number,
  mode: number,
  name: string,
): number {
  const fd = libc().openat(dirfd, cname, flags | O.NOFOLLOW | O.CLOEXEC, mode);
  if (fd < 0) throw new SysError("openat", errno(), name);
  return fd;
}

/**
 * Opens a directory for walking: `O_RDONLY|O_DIRECTORY` (following symlinks in `path`, which
 * its caller names), or, with `dirfd`, one segment inside an open directory with
 * `O_NOFOLLOW` as well.
 *
 * @param path A path, or one segment when `dirfd` is given.
 * @param dirfd The directory it is in.
 * @returns The descriptor.
 * @throws {SysError} ENOTDIR for a non-directory, ELOOP for a symlink inside `dirfd`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir } from "./dirfd.ts";
 * import { closeFd, fstat } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${path}/sensors`);
 * const bus = openDir(path);
 * const topic = openDir("sensors", bus);
 * assert.equal(fstat(topic).kind, "directory");
 * closeFd(topic);
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function openDir(path: string, dirfd?: number): number {
  if (dirfd === undefined) {
    return check(
      libc().open(cpath(path), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0),
      "open",
      path,
    );
  }
  return openAt(dirfd, path, O.RDONLY | O.DIRECTORY | O.NONBLOCK);
}

/**
 * Makes a directory inside an open directory (`mkdirat`); the umask applies, so set the final
 * mode with {@linkcode fchmod} on the opened directory.
 *
 * @param dirfd The parent's descriptor.
 * @param name One path segment.
 * @param mode Permission bits.
 * @returns False when something of that name already exists.
 * @throws {SysError} For other failures.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdirAt, openDir } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const bus = openDir(path);
 * assert.equal(mkdirAt(bus, "sensors", 0o700), true);
 * assert.equal(mkdirAt(bus, "sensors", 0o700), false); // already there
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function mkdirAt(dirfd: number, name: string, mode: number): boolean {
  if (libc().mkdirat(dirfd, cpath(segment(name)), mode) === 0) return true;
  const e = errno();
  if (e === Errno.EEXIST) return false;
  throw new SysError("mkdirat", e, name);
}

/**
 * Removes a name inside an open directory (`unlinkat`); a symlink is removed itself.
 *
 * @param dirfd The directory's descriptor.
 * @param name One path segment.
 * @param dir Remove an (empty) directory instead of a file.
 * @returns False when the name was already gone.
 * @throws {SysError} EPERM under the sticky bit, EISDIR, and so on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, unlinkAt } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${path}/0190a1b2`, "hello");
 * const bus = openDir(path);
 * assert.equal(unlinkAt(bus, "0190a1b2"), true);
 * assert.equal(unlinkAt(bus, "0190a1b2"), false); // already gone
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function unlinkAt(dirfd: number, name: string, dir = false): boolean {
  if (libc().unlinkat(dirfd, cpath(segment(name)), dir ? AT_REMOVEDIR : 0) === 0) return true;
  const e = errno();
  if (e === Errno.ENOENT) return false;
  throw new SysError("unlinkat", e, name);
}

/**
 * Renames a name from one open directory to another (`renameat`).
 *
 * @param fromDir The source directory's descriptor.
 * @param from One path segment.
 * @param toDir The target directory's descriptor.
 * @param to One path segment.
 * @throws {SysError} When the rename fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, renameAt } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${path}/.fsbus-tmp`);
 * Deno.writeTextFileSync(`${path}/.fsbus-tmp/msg`, "hello");
 * const bus = openDir(path);
 * const tmp = openDir(".fsbus-tmp", bus);
 * renameAt(tmp, "msg", bus, "msg");
 * assert.equal(Deno.readTextFileSync(`${path}/msg`), "hello");
 * closeFd(tmp);
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function renameAt(fromDir: number, from: string, toDir: number, to: string): void {
  check(
    libc().renameat(fromDir, cstring(segment(from)), toDir, cstring(segment(to))),
    "renameat",
    to,
  );
}

/**
 * {@linkcode renameAt} with both names already C strings (NUL-terminated single path
 * segments the caller made, as a publisher's ids): no encoding on a hot path.
 *
 * @param fromDir The source directory's descriptor.
 * @param from The source name, NUL-terminated.
 * @param toDir The target directory's descriptor.
 * @param to The target name, NUL-terminated.
 * @param name The target name, for the error.
 * @throws {SysError} When the rename fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, renameAtBytes } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${path}/a`, "hello");
 * const dir = openDir(path);
 * const c = (s: string) => new TextEncoder().encode(s + "\0");
 * renameAtBytes(dir, c("a"), dir, c("b"), "b");
 * assert.equal(Deno.readTextFileSync(`${path}/b`), "hello");
 * closeFd(dir);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function renameAtBytes(
  fromDir: number,
  from: Uint8Array<ArrayBuffer>,
  toDir: number,
  to: Uint8Array<ArrayBuffer>,
  name: string,
): void {
  check(libc().renameat(fromDir, from, toDir, to), "renameat", name);
}

/**
 * Sets an open file's permission bits (setgid and sticky included, whatever the umask).
 *
 * @param fd The descriptor.
 * @param mode The bits (`& 0o7777`).
 * @throws {SysError} EPERM when not the owner.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fchmod, openDir } from "./dirfd.ts";
 * import { closeFd, fstat } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const bus = openDir(path);
 * fchmod(bus, 0o3770);
 * assert.equal(fstat(bus).mode, 0o3770);
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function fchmod(fd: number, mode: number): void {
  check(libc().fchmod(fd, mode & 0o7777), "fchmod");
}

/**
 * Sets an open file's group (the owner stays).
 *
 * @param fd The descriptor.
 * @param gid The group id.
 * @throws {SysError} EPERM when not allowed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fchgrp, openDir } from "./dirfd.ts";
 * import { closeFd, fstat } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const bus = openDir(path);
 * fchgrp(bus, Deno.gid()!); // one's own group is always allowed
 * assert.equal(fstat(bus).gid, Deno.gid());
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function fchgrp(fd: number, gid: number): void {
  check(libc().fchown(fd, 0xffffffff, gid), "fchown");
}

/**
 * Sets an open file's access and modification times to now (`futimens(fd, NULL)`), which
 * write permission allows (explicit times need ownership).
 *
 * @param fd The descriptor.
 * @throws {SysError} When not allowed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, touchFd } from "./dirfd.ts";
 * import { closeFd, fstat } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = openDir(path);
 * Deno.utimeSync(path, 0, 0); // back to 1970
 * touchFd(dir);
 * assert.ok(fstat(dir).mtimeNs > 1_000_000_000n * 1_000_000_000n); // now, not 1970
 * closeFd(dir);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function touchFd(fd: number): void {
  check(libc().futimens(fd, null), "futimens");
}

/**
 * One directory entry from {@linkcode readDirFd}.
 *
 * @example
 * ```ts
 * import type { DirEntryAt } from "./dirfd.ts";
 * const e: DirEntryAt = { name: "msg", kind: "file" };
 * ```
 */
export interface DirEntryAt {
  /** The name (never "." or ".."). */
  name: string;
  /** The kind from the directory entry, or undefined when the file system does not say. */
  kind: FileKind | undefined;
}

const DT_KINDS: Record<number, FileKind> = {
  1: "fifo",
  2: "char",
  4: "directory",
  6: "block",
  8: "file",
  10: "symlink",
  12: "socket",
};
const DIRENT_BUFFER = 64 * 1024;
const decoder = new TextDecoder();

/**
 * Reads an open directory from its start in batches (`getdents64`), so that a huge directory
 * never sits in memory whole. Entries added or removed meanwhile may or may not be seen; the
 * others are seen once.
 *
 * @param fd The directory's descriptor (its read position is reset to the start).
 * @returns The batches of entries.
 * @throws {SysError} When the directory cannot be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, readDirFd } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const path = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${path}/msg`, "hello");
 * Deno.mkdirSync(`${path}/sensors`);
 * const bus = openDir(path);
 * const seen: string[] = [];
 * for (const batch of readDirFd(bus)) {
 *   for (const e of batch) seen.push(`${e.name} ${e.kind}`);
 * }
 * assert.deepEqual(seen.sort(), ["msg file", "sensors directory"]);
 * closeFd(bus);
 * Deno.removeSync(path, { recursive: true });
 * ```
 */
export function* readDirFd(fd: number): Generator<DirEntryAt[], void, undefined> {
  const c = libc();
  check(c.lseek(fd, 0n, 0), "lseek");
  const buf = new Uint8Array(DIRENT_BUFFER);
  const view = new DataView(buf.buffer);
  for (;;) {
    const n = Number(c.syscall3(BigInt(SYS_GETDENTS64), BigInt(fd), buf, BigInt(buf.length)));
    if (n < 0) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      throw new SysError("getdents64", e);
    }
    if (n === 0) return;
    const batch: DirEntryAt[] = [];
    for (let off = 0; off < n;) {
      const reclen = view.getUint16(off + 16, true);
      const type = buf[off + 18]!;
      let end = off + 19;
      while (end < off + reclen && buf[end] !== 0) end++;
      const name = decoder.decode(buf.subarray(off + 19, end));
      off += reclen;
      if (name === "." || name === "..") continue;
      batch.push({ name, kind: DT_KINDS[type] });
    }
    yield batch;
  }
}

/**
 * The `/proc/self/fd` path of an open descriptor: a name for exactly the file it is open on
 * (to watch a directory by descriptor with inotify), when /proc is mounted.
 *
 * @param fd The descriptor.
 * @returns The path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fdPath, openDir } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const fd = openDir("/etc");
 * assert.equal(fdPath(fd), `/proc/self/fd/${fd}`);
 * assert.equal(Deno.realPathSync(fdPath(fd)), "/etc");
 * closeFd(fd);
 * ```
 */
export function fdPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

/**
 * What a reader checks about a file, from `statx(2)`, in plain numbers: no BigInt, no
 * strings, so that checking a file costs no more than the call (the 64-bit inode, size and
 * seconds are exact below 2^53).
 *
 * @example
 * ```ts
 * import type { FileStatus } from "./dirfd.ts";
 * const s: FileStatus = {
 *   kind: "file", size: 5, ino: 42, nlink: 1, mtimeSec: 1700000000, mtimeNsec: 0,
 *   mtimeMs: 1700000000000, ctimeMs: 0,
 * };
 * ```
 */
export interface FileStatus {
  /** The kind of file. */
  kind: FileKind;
  /** Size in bytes. */
  size: number;
  /** Inode number. */
  ino: number;
  /** Hard links (0 once the file is removed). */
  nlink: number;
  /** Modification time: whole seconds since the epoch. */
  mtimeSec: number;
  /** Modification time: nanoseconds within the second. */
  mtimeNsec: number;
  /** Modification time in milliseconds since the epoch (with a fraction). */
  mtimeMs: number;
  /** Status change time in milliseconds since the epoch (with a fraction). */
  ctimeMs: number;
}

const AT_EMPTY_PATH = 0x1000;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;
const EMPTY_PATH = new Uint8Array(1);
const statxBuf = new Uint8Array(256);
const statxView = new DataView(statxBuf.buffer);

function u64(offset: number): number {
  return statxView.getUint32(offset + 4, true) * 0x1_0000_0000 +
    statxView.getUint32(offset, true);
}

function i64(offset: number): number {
  return statxView.getInt32(offset + 4, true) * 0x1_0000_0000 + statxView.getUint32(offset, true);
}

function decodeStatus(): FileStatus {
  const mtimeSec = i64(112);
  const mtimeNsec = statxView.getUint32(120, true);
  return {
    kind: fileKind(statxView.getUint16(28, true)),
    size: u64(40),
    ino: u64(32),
    nlink: statxView.getUint32(16, true),
    mtimeSec,
    mtimeNsec,
    mtimeMs: mtimeSec * 1000 + mtimeNsec / 1e6,
    ctimeMs: i64(96) * 1000 + statxView.getUint32(104, true) / 1e6,
  };
}

/**
 * `statx(2)` on an open descriptor, in plain numbers.
 *
 * @param fd The descriptor.
 * @returns Its status.
 * @throws {SysError} When the call fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAt, openDir, statusFd } from "./dirfd.ts";
 * import { closeFd, O } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const dirFd = openDir(dir);
 * const fd = openAt(dirFd, "file", O.RDONLY);
 * assert.equal(statusFd(fd).size, 5);
 * closeFd(fd);
 * closeFd(dirFd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function statusFd(fd: number): FileStatus {
  check(libc().statx(fd, EMPTY_PATH, AT_EMPTY_PATH, STATX_BASIC_STATS, statxBuf), "statx");
  return decodeStatus();
}

/**
 * `statx(2)` of a name inside an open directory, without following a symlink, in plain
 * numbers; `undefined` when nothing is there.
 *
 * @param dirfd The directory's descriptor.
 * @param name One path segment.
 * @returns Its status, or undefined for ENOENT.
 * @throws {SysError} For other failures.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openDir, statusAt } from "./dirfd.ts";
 * import { closeFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.symlinkSync("/etc/hostname", `${dir}/link`);
 * const dirFd = openDir(dir);
 * assert.equal(statusAt(dirFd, "link")?.kind, "symlink");
 * assert.equal(statusAt(dirFd, "missing"), undefined);
 * closeFd(dirFd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function statusAt(dirfd: number, name: string): FileStatus | undefined {
  const c = libc();
  const path = cpath(segment(name));
  for (;;) {
    if (c.statx(dirfd, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuf) === 0) {
      return decodeStatus();
    }
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.ENOENT) return undefined;
    throw new SysError("statx", e, name);
  }
}

/** {@linkcode readSized}'s read lengths (messages of one size follow each other). */
const readLength = lengthCache();

/**
 * Reads a file whose size its status gave, in one `read(2)` when it still holds exactly that
 * many bytes: it asks for one byte more, so that a file that grew since shows without a second
 * call (a regular file's short read is its end).
 *
 * @param fd The descriptor, at offset 0.
 * @param size The file's size from its status.
 * @param into Where to read (`size + 1` bytes long at least); a new buffer when not given.
 * @returns The `size` bytes (a view of `into`, or of a new buffer one byte longer), or
 *   `undefined` when the file now holds more or fewer bytes than `size`.
 * @throws {SysError} When a read fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openAt, openDir, readSized, statusFd } from "./dirfd.ts";
 * import { closeFd, O } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/file`, "hello");
 * const dirFd = openDir(dir);
 * const fd = openAt(dirFd, "file", O.RDONLY);
 * const size = statusFd(fd).size;
 * assert.equal(new TextDecoder().decode(readSized(fd, size)), "hello");
 * const again = openAt(dirFd, "file", O.RDONLY);
 * assert.equal(readSized(again, size - 1), undefined); // more than its status said
 * closeFd(again);
 * closeFd(fd);
 * closeFd(dirFd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readSized(
  fd: number,
  size: number,
  into?: Uint8Array,
): Uint8Array | undefined {
  const buf = into ?? new Uint8Array(size + 1);
  const c = libc();
  let len = 0;
  for (;;) {
    const n = Number(c.read(fd, len === 0 ? buf : buf.subarray(len), readLength(size + 1 - len)));
    if (n < 0) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      throw new SysError("read", e);
    }
    if (n === 0) break;
    len += n;
    if (len >= size) break;
  }
  return len === size ? buf.subarray(0, size) : undefined;
}
