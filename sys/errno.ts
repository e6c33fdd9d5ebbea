/**
 * Linux errno values and the error thrown by failed libc calls.
 *
 * @module
 */

/**
 * The Linux errno numbers fsbus looks at (identical on x86_64 and aarch64).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno } from "./errno.ts";
 * assert.equal(Errno.EAGAIN, 11);
 * ```
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EPIPE: 32,
  ERANGE: 34,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  EPROTO: 71,
  EMSGSIZE: 90,
  ENOTSUP: 95,
  ECONNABORTED: 103,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
} as const;

const NAMES: Record<number, [string, string]> = {
  1: ["EPERM", "operation not permitted"],
  2: ["ENOENT", "no such file or directory"],
  4: ["EINTR", "interrupted system call"],
  5: ["EIO", "input/output error"],
  6: ["ENXIO", "no such device or address"],
  9: ["EBADF", "bad file descriptor"],
  11: ["EAGAIN", "resource temporarily unavailable"],
  12: ["ENOMEM", "cannot allocate memory"],
  13: ["EACCES", "permission denied"],
  14: ["EFAULT", "bad address"],
  16: ["EBUSY", "device or resource busy"],
  17: ["EEXIST", "file exists"],
  19: ["ENODEV", "no such device"],
  20: ["ENOTDIR", "not a directory"],
  21: ["EISDIR", "is a directory"],
  22: ["EINVAL", "invalid argument"],
  23: ["ENFILE", "too many open files in system"],
  24: ["EMFILE", "too many open files"],
  25: ["ENOTTY", "inappropriate ioctl for device"],
  27: ["EFBIG", "file too large"],
  28: ["ENOSPC", "no space left on device"],
  29: ["ESPIPE", "illegal seek"],
  30: ["EROFS", "read-only file system"],
  32: ["EPIPE", "broken pipe"],
  34: ["ERANGE", "numerical result out of range"],
  38: ["ENOSYS", "function not implemented"],
  39: ["ENOTEMPTY", "directory not empty"],
  40: ["ELOOP", "too many levels of symbolic links"],
  71: ["EPROTO", "protocol error"],
  90: ["EMSGSIZE", "message too long"],
  95: ["ENOTSUP", "operation not supported"],
  103: ["ECONNABORTED", "software caused connection abort"],
  107: ["ENOTCONN", "transport endpoint is not connected"],
  110: ["ETIMEDOUT", "connection timed out"],
};

/**
 * A libc call that failed: the call's name, errno, its symbolic code and its text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SysError } from "./errno.ts";
 * const err = new SysError("open", 2, "/nope");
 * assert.equal(err.code, "ENOENT");
 * assert.equal(err.message, 'open "/nope": no such file or directory');
 * assert.equal(err.reason, "no such file or directory");
 * ```
 */
export class SysError extends Error {
  /** The errno number. */
  readonly errno: number;
  /** The symbolic name, such as "ENOENT" ("E" plus the number when unknown). */
  readonly code: string;
  /** The libc function that failed. */
  readonly syscall: string;
  /** The path involved, if any. */
  readonly path: string | undefined;

  /**
   * Makes the error for a failed call.
   *
   * @param syscall The libc function that failed.
   * @param errno The errno it left.
   * @param path The path involved, if any.
   */
  constructor(syscall: string, errno: number, path?: string) {
    const [code, text] = NAMES[errno] ?? [`E${errno}`, `error ${errno}`];
    super(`${syscall}${path === undefined ? "" : ` "${path}"`}: ${text}`);
    this.name = "SysError";
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
    this.path = path;
  }

  /** The errno's description alone, such as "no such file or directory". */
  get reason(): string {
    return NAMES[this.errno]?.[1] ?? `error ${this.errno}`;
  }
}
