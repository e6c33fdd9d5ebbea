/**
 * baf's one-publisher rule: an exclusive `flock(2)` on `ROOT/NAME.lock`, with a lock file
 * that carries the topic's permission bits and group.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { closeFd, type FdStat, fstat, O, openFd } from "../../sys/fs.ts";
import { libc } from "../../sys/libc.ts";
import { SysError } from "../../sys/errno.ts";
import { FileLock } from "../../sys/flock.ts";
import { sysToFsbus } from "./ring.ts";
import { type RootOptions, topicName, trustedOwner } from "./root.ts";
import { resolveTopic } from "./topics.ts";

/** baf's one-publisher lock on a topic, held until closed. */
export interface PublisherLock {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock. */
  close(): void;
}

/**
 * Takes baf's one-publisher lock on a topic: a non-blocking exclusive `flock(2)` on
 * `ROOT/NAME.lock`, held until the returned lock is closed.
 *
 * The lock file gets the topic's permission bits and group (anyone who may open a file may
 * flock it, so a world-readable lock would let users who cannot even read the topic block
 * its publishers). It is opened without following symlinks and must be a regular file; an
 * existing one of the caller's is brought in line with the topic, and one owned by a user
 * who owns neither the topic nor the root is refused.
 *
 * @param name The topic's name.
 * @param options The root.
 * @returns The held lock.
 * @throws {FsbusError} "busy" when another publisher holds it; "not_found" when the topic
 *   does not exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, lockPublisher } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * const lock = lockPublisher("news", { root });
 * try {
 *   assert.throws(() => lockPublisher("news", { root })); // one publisher at a time
 * } finally {
 *   lock.close();
 * }
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function lockPublisher(name: string, options: RootOptions = {}): PublisherLock {
  const topic = resolveTopic(name, options);
  const path = `${topic.path}.lock`;
  let lock: FileLock;
  try {
    lock = FileLock.fromFd(path, openLockFile(path, topic.stat));
  } catch (err) {
    throw sysToFsbus(err, "Cannot open lock file", path);
  }
  let held: boolean;
  try {
    held = lock.tryLock();
  } catch (err) {
    lock.close();
    throw sysToFsbus(err, "Cannot lock", path);
  }
  if (!held) {
    lock.close();
    throw new FsbusError("busy", `Cannot use topic "${topicName(name)}": already being used`);
  }
  return lock;
}

const LOCK_OPEN = O.NOFOLLOW | O.NOCTTY | O.NONBLOCK;

function openLockFile(path: string, topic: FdStat): number {
  const mode = topic.mode & 0o666;
  let fd: number | undefined;
  let created = false;
  try {
    fd = openFd(path, O.RDWR | O.CREAT | O.EXCL | LOCK_OPEN, mode);
    created = true;
  } catch (err) {
    if (!(err instanceof SysError) || err.code !== "EEXIST") throw err;
  }
  if (fd === undefined) {
    try {
      fd = openFd(path, O.RDWR | LOCK_OPEN);
    } catch (err) {
      // Read permission is enough for flock(2).
      if (!(err instanceof SysError) || (err.code !== "EACCES" && err.code !== "EROFS")) throw err;
      fd = openFd(path, O.RDONLY | LOCK_OPEN);
    }
  }
  try {
    const st = fstat(fd);
    if (st.kind !== "file") {
      throw new FsbusError("invalid", `Cannot open lock file "${path}": not a regular file`);
    }
    const mine = st.uid === Deno.uid();
    if (!mine && !trustedOwner(st.uid) && st.uid !== topic.uid) {
      throw new FsbusError(
        "permission_denied",
        `Cannot open lock file "${path}": it is owned by uid ${st.uid}, who owns neither the ` +
          `topic nor the root (remove it)`,
      );
    }
    if (created || mine || Deno.uid() === 0) {
      // umask trimmed the bits of a new file; an old one may be 0644 from an older fsbus.
      if (st.gid !== topic.gid) libc().fchown(fd, -1 >>> 0, topic.gid);
      if (st.mode !== mode) libc().fchmod(fd, mode);
    }
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}
