/**
 * Watching a bus directory (and its topic subdirectories) for new messages: inotify through
 * FFI when it can be had, else `Deno.watchFs` with rescans. Both report the same events, so
 * the subscription logic above them is one piece of code.
 *
 * @module
 */

import { ffiAvailable } from "../../sys/libc.ts";
import { IN, Inotify } from "../../sys/inotify.ts";
import { yieldTurn } from "../../sys/poll.ts";
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
 * - `file`: a file was closed after writing, or moved in: a message candidate.
 * - `dir`: a subdirectory appeared (a new topic).
 * - `gone`: an entry was deleted or moved away.
 * - `rescan`: events may have been lost (inotify queue overflow): look at everything again.
 * - `removed`: a watched directory itself went away.
 *
 * @example
 * ```ts
 * import type { WatchEvent } from "./watch.ts";
 * const e: WatchEvent = { kind: "file", dir: "", name: "msg" };
 * ```
 */
export type WatchEvent =
  | { kind: "file" | "dir" | "gone"; dir: string; name: string }
  | { kind: "rescan" }
  | { kind: "removed"; dir: string };

/**
 * A source of {@linkcode WatchEvent}s for one directory tree.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openWatcher } from "./watch.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const w = openWatcher(dir, { recursive: false });
 * w.watch("");
 * Deno.writeTextFileSync(`${dir}/msg`, "hello");
 * const batch = await w.next();
 * assert.deepEqual(batch, [{ kind: "file", dir: "", name: "msg" }]);
 * await w.close();
 * assert.equal(await w.next(), null);
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
   * When the watcher last found no event waiting (wall-clock milliseconds): every event from
   * before then is in a batch already returned by `next()`. `-Infinity` when the watcher
   * cannot tell (the fallback).
   */
  readonly drainedAt: number;
  /** The next batch of events (empty after `wake()`); `null` once the watcher is closed. */
  next(): Promise<WatchEvent[] | null>;
  /** The events queued now, without waiting (none from the fallback, which has no queue). */
  poll(): WatchEvent[];
  /** Makes a pending `next()` return at once (with `null` once closed). */
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
  readonly #dirs = new Map<number, string>();
  readonly #mask: number;
  readonly #blockMs: number;
  #closed = false;

  constructor(root: string, recursive: boolean, blockMs: number) {
    this.#root = root;
    this.#mask = recursive ? DIR_MASK | IN.CREATE : DIR_MASK;
    this.#blockMs = blockMs;
  }

  get drainedAt(): number {
    return this.#ino.drainedAt;
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

  async next(): Promise<WatchEvent[] | null> {
    for (;;) {
      if (this.#closed) return null;
      const raw = this.#ino.read();
      if (raw.length > 0) {
        const events = this.#translate(raw);
        if (events.length > 0) return events;
        continue;
      }
      if (this.#blockMs > 0) {
        // Block in poll(2) on this thread for a while, then let the event loop run.
        const r = this.#ino.waitSync(this.#blockMs);
        if (r === "woken") return [];
        if (r === "timeout") await yieldTurn();
        continue;
      }
      if ((await this.#ino.wait()) === "woken") return [];
    }
  }

  poll(): WatchEvent[] {
    return this.#closed ? [] : this.#translate(this.#ino.read());
  }

  #translate(raw: ReturnType<Inotify["read"]>): WatchEvent[] {
    const events: WatchEvent[] = [];
    for (const e of raw) {
      if (e.mask & IN.Q_OVERFLOW) {
        events.push({ kind: "rescan" });
        continue;
      }
      const dir = this.#dirs.get(e.wd);
      if (dir === undefined) continue;
      if (e.mask & IN.IGNORED) {
        this.#dirs.delete(e.wd);
        continue;
      }
      if (e.mask & (IN.DELETE_SELF | IN.MOVE_SELF)) {
        events.push({ kind: "removed", dir });
        if (e.mask & IN.MOVE_SELF) this.#ino.remove(e.wd);
        continue;
      }
      if (isHidden(e.name)) continue;
      if (e.mask & IN.ISDIR) {
        if (e.mask & (IN.CREATE | IN.MOVED_TO)) events.push({ kind: "dir", dir, name: e.name });
        else if (e.mask & (IN.DELETE | IN.MOVED_FROM)) {
          events.push({ kind: "gone", dir, name: e.name });
        }
      } else if (e.mask & (IN.CLOSE_WRITE | IN.MOVED_TO)) {
        events.push({ kind: "file", dir, name: e.name });
      } else if (e.mask & (IN.DELETE | IN.MOVED_FROM)) {
        events.push({ kind: "gone", dir, name: e.name });
      }
      // IN_CREATE of a file: wait for its close.
    }
    return events;
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

  constructor(root: string, recursive: boolean) {
    this.#root = root;
    try {
      this.#fs = Deno.watchFs(root, { recursive });
    } catch (err) {
      throw translateWatchError(err, root);
    }
    this.#iter = this.#fs[Symbol.asyncIterator]();
  }

  watch(_dir: string, _fd?: number): boolean {
    return true; // Deno.watchFs watches the whole tree when recursive
  }

  async next(): Promise<WatchEvent[] | null> {
    for (;;) {
      if (this.#closed) return null;
      if (this.#rescanDue) {
        this.#rescanDue = false;
        return [{ kind: "rescan" }];
      }
      this.#pending ??= this.#iter.next();
      const woken = new Promise<"woken">((r) => (this.#wakeUp = () => r("woken")));
      const got = await Promise.race([this.#pending, woken]);
      this.#wakeUp = undefined;
      if (got === "woken") {
        if (this.#rescanDue) continue;
        return [];
      }
      this.#pending = undefined;
      if (got.done) return null;
      const events = this.#translate(got.value);
      this.#armRescan();
      if (events.length > 0) return events;
    }
  }

  poll(): WatchEvent[] {
    return [];
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
    if (e.flag === "rescan") return [{ kind: "rescan" }];
    const out: WatchEvent[] = [];
    const paths = e.kind === "rename" && e.paths.length === 2 ? [e.paths[1]!] : e.paths;
    for (const path of paths) {
      if (!path.startsWith(this.#root + "/")) {
        if (path === this.#root && e.kind === "remove") out.push({ kind: "removed", dir: "" });
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
