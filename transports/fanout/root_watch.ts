/**
 * Watching a topic root for topics made later, with inotify: a follower (such as `submsg`
 * with no topic list) learns of a new topic as soon as it is linked into place, without
 * listing the root over and over. A root that does not exist yet is waited for through its
 * nearest existing parent.
 *
 * @module
 */

import { IN, Inotify } from "../../sys/inotify.ts";
import { SysError } from "../../sys/errno.ts";
import { statPath } from "../../sys/fs.ts";
import type { WaitResult } from "../../sys/poll.ts";

/** What happens in a root that may mean a topic appeared (or became readable). */
const ROOT_EVENTS = IN.CREATE | IN.MOVED_TO | IN.ATTRIB | IN.CLOSE_WRITE | IN.DELETE_SELF |
  IN.MOVE_SELF | IN.ONLYDIR;
/** What happens in a parent that may mean the root (or a directory on its way) appeared. */
const PARENT_EVENTS = IN.CREATE | IN.MOVED_TO | IN.DELETE_SELF | IN.MOVE_SELF | IN.ONLYDIR;

/**
 * Watches a topic root: {@linkcode RootWatch.changed} says whether entries may have appeared
 * since the last call, and {@linkcode RootWatch.wait} sleeps (in another thread, so the
 * event loop runs) until they may have. Nothing polls: when the root is missing, its nearest
 * existing parent is watched until the root is made.
 *
 * @example Learn of a topic made after the watch started
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, RootWatch, topicNames } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const watch = new RootWatch(`${root}/topics`); // not made yet
 * assert.equal(watch.changed(), false);
 * createTopic("news", { root: `${root}/topics` }); // makes the root, then the topic
 * assert.equal(await watch.wait(5000), "ready");
 * assert.equal(watch.changed(), true); // time to list the root again
 * assert.ok(watch.watchingRoot); // the root itself now
 * assert.deepEqual(topicNames(`${root}/topics`), ["news"]);
 * await watch.close();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class RootWatch implements AsyncDisposable {
  /** The root watched. */
  readonly root: string;
  readonly #ino: Inotify;
  /** The watch on the root itself, when it exists. */
  #rootWd: number | undefined;
  /** The watch on the nearest existing parent, while the root is missing. */
  #parentWd: number | undefined;

  /**
   * Starts watching `root` (or, while it is missing, its nearest existing parent).
   *
   * @param root The topic root.
   * @throws {SysError} When inotify cannot be used (no FFI, the watch limit reached).
   */
  constructor(root: string) {
    this.root = root.replace(/\/+$/, "") || "/";
    this.#ino = new Inotify();
    try {
      this.#arm();
    } catch (err) {
      void this.#ino.close();
      throw err;
    }
  }

  /** Whether the root itself is watched (false while it is missing). */
  get watchingRoot(): boolean {
    return this.#rootWd !== undefined;
  }

  /** Watches the root, or else its nearest existing parent. */
  #arm(): void {
    for (;;) {
      if (this.#parentWd !== undefined) {
        this.#ino.remove(this.#parentWd);
        this.#parentWd = undefined;
      }
      try {
        this.#rootWd = this.#ino.add(this.root, ROOT_EVENTS);
        return;
      } catch (err) {
        if (!missing(err)) throw err;
      }
      this.#rootWd = undefined;
      let watched: string;
      for (let dir = parentOf(this.root);; dir = parentOf(dir)) {
        try {
          this.#parentWd = this.#ino.add(dir, PARENT_EVENTS);
          watched = dir;
          break;
        } catch (err) {
          if (!missing(err) || dir === "/" || dir === ".") throw err;
        }
      }
      // A directory on the way to the root made after the root was found missing but before
      // this watch existed queued its event for nobody: look for it, and arm again if it is
      // there (without this, a root made at that moment was waited for forever).
      if (statPath(nextOnTheWay(watched, this.root)) === undefined) return;
    }
  }

  /**
   * Takes the queued events, without waiting.
   *
   * @returns True when entries may have appeared in the root since the last call (list it
   *   again); false when nothing happened.
   */
  changed(): boolean {
    const events = this.#ino.read();
    if (events.length === 0) return false;
    const lost = events.some((e) =>
      e.wd === -1 || (e.wd === this.#rootWd && (e.mask & (IN.DELETE_SELF | IN.MOVE_SELF |
            IN.IGNORED)) !== 0)
    );
    if (this.#rootWd === undefined || lost) {
      if (this.#rootWd !== undefined) this.#ino.remove(this.#rootWd);
      this.#rootWd = undefined;
      this.#arm();
    }
    return true;
  }

  /**
   * Waits until events are queued, {@linkcode RootWatch.wake} is called, or the timeout
   * passes; the event loop runs meanwhile.
   *
   * @param timeoutMs The longest wait in milliseconds; negative means no limit.
   * @returns How the wait ended.
   */
  wait(timeoutMs = -1): Promise<WaitResult> {
    return this.#ino.wait(timeoutMs);
  }

  /** Ends a pending (or the next) {@linkcode RootWatch.wait} with "woken". */
  wake(): void {
    this.#ino.wake();
  }

  /** Stops watching; safe to call more than once. */
  close(): Promise<void> {
    return this.#ino.close();
  }

  /** Same as {@linkcode RootWatch.close}: `await using watch = new RootWatch(root)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function missing(err: unknown): boolean {
  return err instanceof SysError && (err.code === "ENOENT" || err.code === "ENOTDIR");
}

/** The entry of `dir` on the way from `dir` down to `root` (`root` is below `dir`). */
function nextOnTheWay(dir: string, root: string): string {
  const rest = dir === "." ? root : root.slice(dir === "/" ? 1 : dir.length + 1);
  const name = rest.split("/")[0]!;
  return dir === "." ? name : dir === "/" ? `/${name}` : `${dir}/${name}`;
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  if (i > 0) return path.slice(0, i);
  return i === 0 ? "/" : ".";
}
