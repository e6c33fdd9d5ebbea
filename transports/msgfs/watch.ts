/**
 * Watching a bus directory (and its topic subdirectories) for new messages: inotify through
 * FFI when it can be had, else `Deno.watchFs` with rescans. Both report the same events, so
 * the subscription logic above them is one piece of code.
 *
 * @module
 */

import { ffiAvailable } from "../../sys/libc.ts";
import { IN, Inotify, InotifyQueue } from "../../sys/inotify.ts";
import { yieldImmediate } from "../../sys/poll.ts";
import { SysError } from "../../sys/errno.ts";
import { fromFsError, FsbusError } from "../../types.ts";
import { isHidden } from "./names.ts";
import { fdPath } from "../../sys/dirfd.ts";
import { statPath } from "../../sys/fs.ts";

let procOk: boolean | undefined;
/** Whether /proc/self/fd can name an open directory for inotify. */
function procFds(): boolean {
  try {
    return (procOk ??= statPath("/proc/self/fd")?.kind === "directory");
  } catch {
    return (procOk = false);
  }
}

/**
 * What a watcher reports. `dir` is relative to the watched root ("" for the root itself).
 *
 * - `file`: a file was closed after writing, or moved in (`name`): a message candidate.
 * - `dir`: a subdirectory appeared (a new topic, `name`).
 * - `gone`: an entry (`name`) was deleted or moved away.
 * - `rescan`: events may have been lost (inotify queue overflow): look at everything again.
 * - `removed`: a watched directory (`dir`) itself went away.
 *
 * `name` is "" for `rescan` and `removed`, `dir` "" for `rescan`.
 *
 * @example
 * ```ts
 * import type { WatchEvent } from "./watch.ts";
 * const e: WatchEvent = { kind: "file", dir: "", name: "msg" };
 * ```
 */
export interface WatchEvent {
  /** What happened. */
  kind: "file" | "dir" | "gone" | "rescan" | "removed";
  /** The directory it happened in, relative to the root. */
  dir: string;
  /** The entry's name in it. */
  name: string;
}

/**
 * A source of {@linkcode WatchEvent}s for one directory tree, taken one at a time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWatcher } from "./watch.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const w = openWatcher(dir, { recursive: false });
 * w.watch("");
 * Deno.writeTextFileSync(`${dir}/msg`, "hello");
 * let e = w.take();
 * while (e === undefined) {
 *   await w.wait();
 *   e = w.take();
 * }
 * assert.deepEqual({ ...e }, { kind: "file", dir: "", name: "msg" });
 * await w.close();
 * assert.equal(await w.wait(), false);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface Watcher {
  /** "inotify" (through FFI) or "watchfs" (the fallback). */
  readonly backend: "inotify" | "watchfs";
  /**
   * Starts watching a directory below the root.
   *
   * @param dir The directory, relative to the root.
   * @param fd The directory's open descriptor, when there is one: inotify then watches
   *   exactly that directory (through `/proc/self/fd`), whatever its path leads to now.
   * @returns False when the directory could not be watched (gone, or a symlink).
   */
  watch(dir: string, fd?: number): boolean;
  /**
   * When the watcher last found no event waiting (wall-clock milliseconds): once
   * {@linkcode Watcher.take} has returned undefined, every event from before then has been
   * taken. `-Infinity` when the watcher cannot tell (the fallback).
   */
  readonly drainedAt: number;
  /** Whether the watcher's own queue holds events not taken yet. */
  readonly holding: boolean;
  /**
   * The next event, without waiting: from the watcher's own queue, or read from the kernel's
   * when that is empty. The object may be reused by the next call: use it at once.
   *
   * @returns The event, or undefined when none is waiting (or the watcher is closed).
   */
  take(): WatchEvent | undefined;
  /**
   * Waits until an event may be waiting, or `wake()`.
   *
   * @returns False once the watcher is closed.
   */
  wait(): Promise<boolean>;
  /**
   * Moves the events the kernel holds now into the watcher's own queue (up to a bound), while
   * a long batch is handled, so that the kernel's queue does not overflow (none with the
   * fallback, which has no such queue).
   */
  pull(): void;
  /** Makes a pending `wait()` return at once (false once closed). */
  wake(): void;
  /** Stops watching and frees everything. */
  close(): Promise<void>;
}

/** What a bus directory is watched for. `IN_CREATE` only when new subdirectories matter: it
 * would otherwise double the events per message and halve what the kernel queue holds. */
const DIR_MASK = IN.CLOSE_WRITE | IN.MOVED_TO | IN.DELETE | IN.MOVED_FROM | IN.DELETE_SELF |
  IN.MOVE_SELF | IN.ONLYDIR | IN.DONT_FOLLOW | IN.EXCL_UNLINK;

class InotifyWatcher implements Watcher {
  readonly backend = "inotify";
  readonly #root: string;
  readonly #ino = new Inotify();
  readonly #queue = new InotifyQueue(this.#ino);
  readonly #event: WatchEvent = { kind: "file", dir: "", name: "" };
  readonly #dirs = new Map<number, string>();
  readonly #mask: number;
  readonly #blockMs: number;
  #closed = false;
  /** False once a read has emptied the kernel's queue, until the next wait: saves the read
   * that would only say so again (the wait's poll(2) does). */
  #unread = true;

  constructor(root: string, recursive: boolean, blockMs: number) {
    this.#root = root;
    this.#mask = recursive ? DIR_MASK | IN.CREATE : DIR_MASK;
    this.#blockMs = blockMs;
  }

  get drainedAt(): number {
    return this.#ino.drainedAt;
  }

  get holding(): boolean {
    return this.#queue.bytes > 0;
  }

  watch(dir: string, fd?: number): boolean {
    const byFd = fd !== undefined && procFds();
    const path = byFd ? fdPath(fd) : dir ? `${this.#root}/${dir}` : this.#root;
    let wd: number;
    try {
      // /proc/self/fd/N is a link to the open directory itself: it must be followed.
      wd = this.#ino.add(path, byFd ? this.#mask & ~IN.DONT_FOLLOW : this.#mask);
    } catch (err) {
      if (dir === "") throw translateWatchError(err, this.#root);
      return false;
    }
    this.#dirs.set(wd, dir);
    return true;
  }

  take(): WatchEvent | undefined {
    if (this.#closed) return undefined;
    const queue = this.#queue;
    for (;;) {
      if (!queue.next()) {
        if (!this.#unread) return undefined;
        this.#unread = !queue.fill();
        if (!queue.next()) return undefined;
      }
      if (this.#translate(queue)) return this.#event;
    }
  }

  async wait(): Promise<boolean> {
    this.#unread = true;
    for (;;) {
      if (this.#closed) return false;
      if (this.#queue.bytes > 0) return true;
      if (this.#blockMs > 0) {
        // Block in poll(2) on this thread for a while, then let the event loop run.
        if (this.#ino.waitSync(this.#blockMs) !== "timeout") return !this.#closed;
        await yieldImmediate();
        continue;
      }
      await this.#ino.wait();
      return !this.#closed;
    }
  }

  pull(): void {
    if (!this.#closed) this.#unread = !this.#queue.fill();
  }

  /** Makes the taken event a {@linkcode WatchEvent}; false for one that is not reported. */
  #translate(q: InotifyQueue): boolean {
    const e = this.#event;
    const mask = q.mask;
    if (mask & IN.Q_OVERFLOW) {
      e.kind = "rescan";
      e.dir = e.name = "";
      return true;
    }
    const dir = this.#dirs.get(q.wd);
    if (dir === undefined) return false;
    if (mask & IN.IGNORED) {
      this.#dirs.delete(q.wd);
      return false;
    }
    if (mask & (IN.DELETE_SELF | IN.MOVE_SELF)) {
      if (mask & IN.MOVE_SELF) this.#ino.remove(q.wd);
      e.kind = "removed";
      e.dir = dir;
      e.name = "";
      return true;
    }
    if (isHidden(q.name)) return false;
    if (mask & IN.ISDIR) {
      if (mask & (IN.CREATE | IN.MOVED_TO)) e.kind = "dir";
      else if (mask & (IN.DELETE | IN.MOVED_FROM)) e.kind = "gone";
      else return false;
    } else if (mask & (IN.CLOSE_WRITE | IN.MOVED_TO)) {
      e.kind = "file";
    } else if (mask & (IN.DELETE | IN.MOVED_FROM)) {
      e.kind = "gone";
    } else {
      return false; // IN_CREATE of a file: wait for its close
    }
    e.dir = dir;
    e.name = q.name;
    return true;
  }

  wake(): void {
    if (!this.#closed) this.#ino.wake();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#ino.close();
  }
}

/** How long the fallback waits, after activity, before rescanning for events it lost. */
const FALLBACK_RESCAN_MS = 1000;

class WatchFsWatcher implements Watcher {
  readonly backend = "watchfs";
  readonly drainedAt = -Infinity;
  readonly #root: string;
  readonly #fs: Deno.FsWatcher;
  readonly #iter: AsyncIterator<Deno.FsEvent>;
  #closed = false;
  #pending: Promise<IteratorResult<Deno.FsEvent>> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #rescanDue = false;
  #wakeUp: (() => void) | undefined;
  /** Events received and not taken yet: `#events` from `#taken` on. */
  #events: WatchEvent[] = [];
  #taken = 0;

  constructor(root: string, recursive: boolean) {
    this.#root = root;
    try {
      this.#fs = Deno.watchFs(root, { recursive });
    } catch (err) {
      throw translateWatchError(err, root);
    }
    this.#iter = this.#fs[Symbol.asyncIterator]();
  }

  get holding(): boolean {
    return this.#taken < this.#events.length;
  }

  watch(_dir: string, _fd?: number): boolean {
    return true; // Deno.watchFs watches the whole tree when recursive
  }

  take(): WatchEvent | undefined {
    if (this.#closed) return undefined;
    if (this.#taken < this.#events.length) return this.#events[this.#taken++];
    this.#events = [];
    this.#taken = 0;
    if (this.#rescanDue) {
      this.#rescanDue = false;
      return { kind: "rescan", dir: "", name: "" };
    }
    return undefined;
  }

  async wait(): Promise<boolean> {
    for (;;) {
      if (this.#closed) return false;
      if (this.#taken < this.#events.length || this.#rescanDue) return true;
      this.#pending ??= this.#iter.next();
      const woken = new Promise<"woken">((r) => (this.#wakeUp = () => r("woken")));
      const got = await Promise.race([this.#pending, woken]);
      this.#wakeUp = undefined;
      if (got === "woken") return !this.#closed;
      this.#pending = undefined;
      if (got.done) {
        this.#closed = true;
        return false;
      }
      const events = this.#translate(got.value);
      this.#armRescan();
      if (events.length > 0) {
        for (const e of events) this.#events.push(e);
        return true;
      }
    }
  }

  pull(): void {
    // Deno.watchFs queues for itself.
  }

  /** After activity, rescan once a second later: Deno.watchFs loses events under bursts. */
  #armRescan(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#rescanDue = true;
      this.#wakeUp?.();
    }, FALLBACK_RESCAN_MS);
  }

  #translate(e: Deno.FsEvent): WatchEvent[] {
    if (e.flag === "rescan") return [{ kind: "rescan", dir: "", name: "" }];
    const out: WatchEvent[] = [];
    const paths = e.kind === "rename" && e.paths.length === 2 ? [e.paths[1]!] : e.paths;
    for (const path of paths) {
      if (!path.startsWith(this.#root + "/")) {
        if (path === this.#root && e.kind === "remove") {
          out.push({ kind: "removed", dir: "", name: "" });
        }
        continue;
      }
      const rel = path.slice(this.#root.length + 1);
      const slash = rel.lastIndexOf("/");
      const dir = slash < 0 ? "" : rel.slice(0, slash);
      const name = slash < 0 ? rel : rel.slice(slash + 1);
      if (isHidden(name) || dir.split("/").some(isHidden)) continue;
      if (e.kind === "remove") {
        out.push({ kind: "gone", dir, name });
      } else if (e.kind === "access" || e.kind === "rename" || e.kind === "create") {
        let info: Deno.FileInfo;
        try {
          info = Deno.lstatSync(path);
        } catch {
          out.push({ kind: "gone", dir, name });
          continue;
        }
        if (info.isDirectory) {
          if (e.kind !== "access") out.push({ kind: "dir", dir, name });
        } else if (e.kind !== "create") {
          out.push({ kind: "file", dir, name });
        }
      }
    }
    return out;
  }

  wake(): void {
    this.#wakeUp?.();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#wakeUp?.();
    try {
      this.#fs.close();
    } catch {
      // already closed
    }
    return Promise.resolve();
  }
}

function translateWatchError(err: unknown, path: string): FsbusError {
  if (err instanceof SysError && err.code === "ENOSPC") {
    return new FsbusError(
      "io",
      `Cannot subscribe to "${path}": the inotify watch limit is reached (raise fs.inotify.max_user_watches)`,
      { cause: err },
    );
  }
  return fromFsError(err, "Cannot subscribe to", path);
}

/**
 * Opens the best watcher available: inotify through FFI, or `Deno.watchFs` when FFI is not
 * permitted or not on Linux (or when `backend` asks for it).
 *
 * @param root The directory tree's root.
 * @param options Whether subdirectories are watched, which backend to use, and `blockMs`:
 *   when more than 0, inotify waits block the thread for up to that long at a time (lower
 *   latency; for processes with nothing else to do), with an event-loop turn between waits.
 * @returns The watcher; call `watch("")` to start on the root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWatcher } from "./watch.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const w = openWatcher(dir, { recursive: true });
 * assert.equal(w.backend, "inotify"); // with --allow-ffi on Linux
 * await w.close();
 * const fallback = openWatcher(dir, { recursive: true, backend: "watchfs" });
 * assert.equal(fallback.backend, "watchfs");
 * await fallback.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function openWatcher(
  root: string,
  options: { recursive: boolean; backend?: "auto" | "inotify" | "watchfs"; blockMs?: number },
): Watcher {
  const { recursive, backend = "auto", blockMs = 0 } = options;
  if (backend === "inotify" || (backend === "auto" && ffiAvailable())) {
    return new InotifyWatcher(root, recursive, blockMs);
  }
  return new WatchFsWatcher(root, recursive);
}
