/**
 * `statx(2)` by path without following a final symlink, with nanosecond times, returning
 * `undefined` for a missing file instead of throwing (cheap existence checks on hot paths).
 *
 * @module
 */

import { cstring, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import type { FdStat, FileKind } from "./fs.ts";

export type { FdStat, FileKind };

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC_STATS = 0x7ff;
const buf = new Uint8Array(256);
const view = new DataView(buf.buffer);

function kindOf(mode: number): FileKind {
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
  return view.getBigInt64(offset, true) * 1_000_000_000n + BigInt(view.getUint32(offset + 8, true));
}

/**
 * What the kernel reports about a path (not following a final symlink), or `undefined` when
 * nothing is there.
 *
 * @param path The path.
 * @returns The status, or undefined for ENOENT (and ENOTDIR on a parent).
 * @throws {SysError} For other failures, such as EACCES on a parent directory.
 *
 * @example
 * ```ts ignore
 * import { statPath } from "./path_stat.ts";
 * const st = statPath("/dev/shm/bus");
 * if (st === undefined) console.log("absent");
 * else console.log(st.kind, st.size, st.ino, st.ctimeNs);
 * ```
 */
export function statPath(path: string): FdStat | undefined {
  const c = libc();
  for (;;) {
    if (c.statx(AT_FDCWD, cstring(path), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf) === 0) break;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.ENOENT || e === Errno.ENOTDIR) return undefined;
    throw new SysError("statx", e, path);
  }
  const mode = view.getUint16(28, true);
  return {
    kind: kindOf(mode),
    mode: mode & 0o7777,
    size: Number(view.getBigUint64(40, true)),
    ino: view.getBigUint64(32, true),
    mtimeNs: timestamp(112),
    ctimeNs: timestamp(96),
    uid: view.getUint32(20, true),
    rdev: [view.getUint32(128, true), view.getUint32(132, true)],
  };
}
