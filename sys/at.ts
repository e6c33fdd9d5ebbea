/**
 * File calls relative to a directory descriptor (`openat`, `mkdirat`, `unlinkat`,
 * `renameat`, `statx` at a name) and `fchmod`/`fchown`: a directory is opened once, and
 * the names in it are reached from that descriptor, never by re-joining a path another user
 * could swap for a symbolic link.
 *
 * @module
 */

import { check, cpath, cstring, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { type FdStat, fstat, O } from "./fs.ts";

const AT_REMOVEDIR = 0x200;

/**
 * Opens `name` in the directory `dirFd` (`openat(2)`); `O.CLOEXEC` is always added.
 *
 * @param dirFd The directory's descriptor.
 * @param name A name in it (one component).
 * @param flags `O.*` flags (add `O.NOFOLLOW` to refuse a symbolic link).
 * @param mode Permission bits for a file being created.
 * @returns The file descriptor.
 * @throws {SysError} With the errno (ELOOP for a symbolic link under `O.NOFOLLOW`).
 *
 * @example
 * ```ts ignore
 * import { O, openFd } from "./fs.ts";
 * import { openAt } from "./at.ts";
 * const dir = openFd("/etc", O.RDONLY | O.DIRECTORY);
 * const fd = openAt(dir, "hostname", O.RDONLY | O.NOFOLLOW);
 * ```
 */
export function openAt(dirFd: number, name: string, flags: number, mode = 0o644): number {
  for (;;) {
    const fd = libc().openat(dirFd, cpath(name), flags | O.CLOEXEC, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("openat", e, name);
  }
}

/**
 * Makes a directory `name` in `dirFd` (`mkdirat(2)`).
 *
 * @param dirFd The parent's descriptor.
 * @param name The new directory's name.
 * @param mode Its permission bits (before the umask).
 * @returns True when it was made, false when something of that name exists.
 *
 * @example
 * ```ts ignore
 * import { mkdirAt } from "./at.ts";
 * mkdirAt(dirFd, ".mq", 0o755);
 * ```
 */
export function mkdirAt(dirFd: number, name: string, mode = 0o777): boolean {
  if (libc().mkdirat(dirFd, cpath(name), mode) === 0) return true;
  const e = errno();
  if (e === Errno.EEXIST) return false;
  throw new SysError("mkdirat", e, name);
}

/**
 * Removes `name` from `dirFd` (`unlinkat(2)`).
 *
 * @param dirFd The directory's descriptor.
 * @param name The name.
 * @param dir Whether it is a directory.
 * @returns False when there was nothing of that name.
 *
 * @example
 * ```ts ignore
 * import { unlinkAt } from "./at.ts";
 * unlinkAt(dirFd, "settings.tmp");
 * ```
 */
export function unlinkAt(dirFd: number, name: string, dir = false): boolean {
  if (libc().unlinkat(dirFd, cpath(name), dir ? AT_REMOVEDIR : 0) === 0) return true;
  const e = errno();
  if (e === Errno.ENOENT) return false;
  throw new SysError("unlinkat", e, name);
}

/**
 * Renames `from` to `to`, both in `dirFd` (`renameat(2)`), replacing `to`.
 *
 * @param dirFd The directory's descriptor.
 * @param from The old name.
 * @param to The new name.
 *
 * @example
 * ```ts ignore
 * import { renameAt } from "./at.ts";
 * renameAt(dirFd, "settings.tmp", "settings");
 * ```
 */
export function renameAt(dirFd: number, from: string, to: string): void {
  check(libc().renameat(dirFd, cstring(from), dirFd, cstring(to)), "renameat", from);
}

/**
 * What the kernel reports about `name` in `dirFd`, without following a symbolic link, or
 * undefined when there is nothing of that name.
 *
 * @param dirFd The directory's descriptor.
 * @param name The name.
 * @returns The status.
 *
 * @example
 * ```ts ignore
 * import { statAt } from "./at.ts";
 * console.log(statAt(dirFd, "ctl")?.kind);
 * ```
 */
export function statAt(dirFd: number, name: string): FdStat | undefined {
  let fd: number;
  try {
    fd = openAt(dirFd, name, O.PATH | O.NOFOLLOW);
  } catch (err) {
    if (err instanceof SysError && (err.errno === Errno.ENOENT || err.errno === Errno.ENOTDIR)) {
      return undefined;
    }
    throw err;
  }
  try {
    return fstat(fd);
  } finally {
    libc().close(fd);
  }
}

/**
 * Sets an open file's permission bits (`fchmod(2)`).
 *
 * @param fd The descriptor.
 * @param mode The bits (including setgid and sticky).
 *
 * @example
 * ```ts ignore
 * import { fchmod } from "./at.ts";
 * fchmod(fd, 0o2770);
 * ```
 */
export function fchmod(fd: number, mode: number): void {
  check(libc().fchmod(fd, mode), "fchmod");
}

/**
 * Sets an open file's group (`fchown(2)` with the owner unchanged).
 *
 * @param fd The descriptor.
 * @param gid The group id.
 *
 * @example
 * ```ts ignore
 * import { fchgrp } from "./at.ts";
 * fchgrp(fd, 50);
 * ```
 */
export function fchgrp(fd: number, gid: number): void {
  check(libc().fchown(fd, 0xffffffff, gid), "fchown");
}
