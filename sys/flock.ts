/**
 * BSD `flock(2)` locks on a lock file: a non-blocking try on the calling thread, and a
 * blocking wait on a worker thread when the lock is held elsewhere, so the event loop never
 * stops. Interoperates with `flock(1)` and Python's `fcntl.flock`.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { O, openFd } from "./fs.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = Errno.EAGAIN;
/** prctl(2) options: the calling thread's timer slack, in nanoseconds. */
const PR_SET_TIMERSLACK = 29;
const PR_GET_TIMERSLACK = 30;
/** The timer slack while napping between lock tries. */
const NAP_SLACK_NS = 1000;
/** A word nobody wakes: `Atomics.wait` on it is a plain sleep. */
const napWord = new Int32Array(new SharedArrayBuffer(4));

/**
 * A lock file held open, locked and unlocked with `flock(2)` `LOCK_EX`.
 *
 * The file is created (mode 0666 less the umask) when missing and never deleted. When it
 * cannot be opened for writing, it is opened read-only: `flock(2)` works on either. It is
 * opened with `O_NOFOLLOW|O_NONBLOCK`: a symlink planted at the path fails with ELOOP and a
 * FIFO cannot block the open (callers check the kind on {@linkcode FileLock.fd}).
 *
 * @example Hold the lock around a critical section
 * ```ts
 * import assert from "node:assert/strict";
 * import { FileLock } from "./flock.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * {
 *   using lock = FileLock.open(`${dir}/bus.lock`);
 *   await lock.lock();
 *   try {
 *     assert.ok(lock.held);
 *     // ... critical section ...
 *   } finally {
 *     lock.unlock();
 *   }
 * } // leaving the block closes the lock file
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class FileLock implements Disposable {
  /** The lock file's path. */
  readonly path: string;
  /** The open descriptor. */
  readonly fd: number;
  #held = false;
  #closed = false;
  #waiting: Promise<void> | undefined;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
  }

  /**
   * Opens (creating when missing) a lock file.
   *
   * @param path The lock file's path.
   * @returns The lock, not yet held.
   * @throws {SysError} When the file can be neither created nor opened.
   */
  static open(path: string): FileLock {
    let fd: number;
    try {
      fd = openFd(path, O.RDWR | O.CREAT | O.NOCTTY | O.NOFOLLOW | O.NONBLOCK, 0o666);
    } catch (err) {
      const e = err instanceof SysError ? err.errno : 0;
      // Read permission is enough for flock(2) when the file exists.
      if (e !== Errno.EACCES && e !== 30 /* EROFS */ && e !== Errno.EPERM) throw err;
      try {
        fd = openFd(path, O.RDONLY | O.NOCTTY | O.NOFOLLOW | O.NONBLOCK);
      } catch (err2) {
        // Missing and not creatable: the first error says why.
        throw err2 instanceof SysError && err2.errno === Errno.ENOENT ? err : err2;
      }
    }
    return new FileLock(path, fd);
  }

  /**
   * Wraps a descriptor the caller opened (and checked) itself; the lock owns it from now on.
   *
   * @param path The lock file's path, for messages.
   * @param fd The open descriptor.
   * @returns The lock, not yet held.
   */
  static fromFd(path: string, fd: number): FileLock {
    return new FileLock(path, fd);
  }

  /** Whether this process holds the lock through this object. */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Takes the lock if it is free, without waiting.
   *
   * @returns True when the lock is now held.
   */
  tryLock(): boolean {
    if (this.#held) return true;
    const c = libc();
    for (;;) {
      if (c.flock(this.fd, LOCK_EX | LOCK_NB) === 0) return (this.#held = true);
      const e = errno();
      if (e === Errno.EINTR) continue;
      if (e === EWOULDBLOCK) return false;
      throw new SysError("flock", e, this.path);
    }
  }

  /**
   * Takes the lock if it is free or comes free soon, retrying on this thread: for a lock held
   * only briefly by another process, a retry costs far less than a wait on a worker thread.
   *
   * For `spinUs` microseconds the tries follow each other without yielding the CPU (on a busy
   * machine a yield can cost a whole round of the scheduler). With `napUs`, the thread then
   * sleeps about that long between tries until `withinUs` have passed: a holder that lost its
   * CPU to this thread (a producer that woke it by renaming, just before it unlocked) gets to
   * run and release. Both block the calling thread: keep them short.
   *
   * @param spinUs How long to keep trying without sleeping.
   * @param napUs How long to sleep between later tries (0: no later tries).
   * @param withinUs How long to keep trying in all (at least `spinUs`).
   * @returns True when the lock is now held.
   *
   * @example Retry a lock that another process holds for a moment
   * ```ts
   * import assert from "node:assert/strict";
   * import { FileLock } from "./flock.ts";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * using lock = FileLock.open(`${dir}/bus.lock`);
   * assert.ok(lock.trySoon(20, 25, 2000)); // free: taken at the first try
   * lock.unlock();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  trySoon(spinUs: number, napUs = 0, withinUs = spinUs): boolean {
    if (this.tryLock()) return true;
    const start = performance.now();
    const spinEnd = start + Math.max(0, spinUs) / 1000;
    while (performance.now() < spinEnd) {
      if (this.tryLock()) return true;
    }
    if (!(napUs > 0)) return false;
    const end = start + Math.max(spinUs, withinUs) / 1000;
    // The kernel rounds a sleep up by the thread's timer slack (50 µs by default), which would
    // make every nap some 70 µs: ask for precise sleeps while napping, then restore the slack.
    const c = libc();
    const slack = c.prctl(PR_GET_TIMERSLACK, 0n, 0n, 0n, 0n);
    if (slack > NAP_SLACK_NS) c.prctl(PR_SET_TIMERSLACK, BigInt(NAP_SLACK_NS), 0n, 0n, 0n);
    try {
      while (performance.now() < end) {
        Atomics.wait(napWord, 0, 0, napUs / 1000);
        if (this.tryLock()) return true;
      }
    } finally {
      if (slack > NAP_SLACK_NS) c.prctl(PR_SET_TIMERSLACK, BigInt(slack), 0n, 0n, 0n);
    }
    return false;
  }

  /**
   * Takes the lock, waiting on a worker thread while another process holds it.
   *
   * A wait cannot be interrupted: {@linkcode FileLock.close} during a wait closes the
   * descriptor once the lock has been granted.
   *
   * @returns A promise that resolves when the lock is held.
   */
  lock(): Promise<void> {
    if (this.tryLock()) return Promise.resolve();
    const waiting = (async () => {
      for (;;) {
        const ret = await libc().flock_async(this.fd, LOCK_EX);
        // errno is not readable after an async call: retry (EINTR in practice).
        if (ret === 0) break;
        if (this.#closed) throw new SysError("flock", Errno.EBADF, this.path);
      }
      this.#held = true;
    })();
    this.#waiting = waiting.finally(() => {
      this.#waiting = undefined;
    });
    return this.#waiting;
  }

  /** Releases the lock (no-op when not held). */
  unlock(): void {
    if (!this.#held) return;
    this.#held = false;
    check(libc().flock(this.fd, LOCK_UN), "flock", this.path);
  }

  /** Releases the lock if held and closes the descriptor (after any pending wait ends). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const finish = () => {
      this.#held = false;
      libc().close(this.fd); // closing releases the lock
    };
    if (this.#waiting) this.#waiting.then(finish, finish);
    else finish();
  }

  /** Closes the lock file, as {@linkcode FileLock.close} does: `using lock = FileLock.open(...)`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
