/**
 * Subscribing to a directory bus.
 *
 * Live messages come from the watcher (`IN_CLOSE_WRITE` and `IN_MOVED_TO`), every event of
 * every read. When events may have been lost (`IN_Q_OVERFLOW`, or the fallback watcher's
 * rescan), the directory is listed again and every message not yet delivered is delivered
 * once, in time order. While a long batch or listing is delivered, the events the kernel holds
 * are moved to the subscription's own queue every few hundred messages, so that a burst does
 * not overflow the kernel's queue again and again. Replay (`since`) uses the same listing
 * before going live; the watch is
 * set up first, so there is no gap, and delivered files are remembered (by name, inode, size
 * and modification time), so there is no duplicate at the seam.
 *
 * Memory stays bounded however long a subscription runs. A file is forgotten once no event
 * and no listing can bring it back: when the watcher has found its queue empty at a time T
 * (every inotify read empties it) and every event read before T has been handled, files last
 * changed (ctime) before T, less a slack of {@linkcode SEEN_SLACK_MS}, have had their last
 * event; and a listing skips files changed before that time or before the start of the last
 * complete listing (less the slack). So a subscription remembers a few seconds of messages
 * (after an overflow, also what the listing delivered, until the next read). Nothing is
 * forgotten at a listing: events for the files it found may still wait in the queue behind an
 * overflow, and a file forgotten then would be delivered again.
 * (Limits, for writers other than fsbus, which creates each file once and closes it at once: a
 * writer that keeps a file open longer than the slack after its last write may have it
 * delivered twice, when a listing took it before its close, or missed, when its close event is
 * lost in a queue overflow. The `Deno.watchFs` fallback cannot tell when it has caught up: it
 * forgets at listings, so an event it reports more than the slack late may repeat a message.)
 *
 * Files are opened with `O_NOFOLLOW|O_NONBLOCK`: a symlink, FIFO or device planted in the
 * bus is never read, and nothing larger than `maxSize` is read.
 *
 * @module
 */

import { fromFsError, FsbusError, type Message, type Subscription } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, statAt } from "../../sys/fs.ts";
import { openDir, readDirFd } from "../../sys/dirfd.ts";
import { type FileState, MessageFiles, READ_BATCH, type ReadOutcome, sameFile } from "./read.ts";
import { SeenFiles } from "./_seen.ts";
import { checkTopic, idTime, isHidden, sortKey } from "./names.ts";
import { openWatcher, type Watcher, type WatchEvent } from "./watch.ts";
import { yieldImmediate } from "../../sys/poll.ts";
import { busMode, makeTopicByPath, openTopic } from "./_tree.ts";

/** How many topic directories a subscription keeps open at once (besides its own). */
const DIR_FDS = 64;
// A batch read together (#readBatch) takes its topics' descriptors first and uses them
// after: with no more files in a batch than topics kept open, none of them is closed between.
if (READ_BATCH > DIR_FDS) throw new Error("READ_BATCH must not exceed DIR_FDS");

/**
 * How long before the last loss-free event read a file must have last changed for a listing
 * to take it as handled (and for the subscription to forget it): covers clock granularity and
 * writers that close a little after their last write.
 */
export const SEEN_SLACK_MS = 2000;
/** fsbus messages (UUIDv7 names) are taken as complete this long after the time in their
 * name: older ones are skipped by a listing without looking at their ctime. */
const NAME_SLACK_MS = 60_000;
/** Deliveries between two reads of the watcher while a long batch or listing is delivered. */
const READ_EVERY = 512;
/** With blocking waits, the longest the event loop goes without a turn, in milliseconds. */
const TURN_MS = 5;
/** Deliveries between two prunings of what a subscription remembers. */
const PRUNE_EVERY = 512;

interface Entry {
  name: string;
  isDirectory: boolean;
  isSymlink: boolean;
}

/**
 * A message from a directory bus.
 *
 * `data` is a view: messages up to 4 KiB share one 64 KiB buffer with other messages of the
 * same subscription (one allocation for many), so mind its `byteOffset`, and copy it
 * (`data.slice()`) before transferring or posting its `buffer`, or keeping a few of many.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish, subscribe } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * publish(dir, "hello", { topic: "greetings" });
 * for await (const m of subscribe(dir, { since: "all", recursive: true })) {
 *   assert.equal(m.topic, "greetings");
 *   assert.equal(new TextDecoder().decode(m.data), "hello");
 *   assert.equal(m.path, `${dir}/greetings/${m.id}`);
 *   assert.ok(Date.now() - m.time.getTime() < 60_000);
 *   break;
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface BusMessage extends Message {
  /** The payload, exactly as published: a view, possibly of a buffer shared with other
   * messages of the subscription. */
  readonly data: Uint8Array;
  /** The message's file name. */
  readonly id: string;
  /** The topic (subdirectory) it was published to, "" for the bus's root. */
  readonly topic: string;
  /** When it was published: from its name, or its modification time for other writers. */
  readonly time: Date;
  /** The message file's path. */
  readonly path: string;
}

/**
 * A file in the bus that was not delivered, and why.
 *
 * @example
 * ```ts
 * import type { SkippedFile } from "./subscribe.ts";
 * const s: SkippedFile = { path: "/dev/shm/bus/link", reason: "a symbolic link" };
 * ```
 */
export interface SkippedFile {
  /** The file's path. */
  path: string;
  /** Why it was skipped: "a symbolic link", "not a regular file", "larger than ...". */
  reason: string;
}

/**
 * Options of {@linkcode subscribe}.
 *
 * @example
 * ```ts
 * import type { SubscribeOptions } from "./subscribe.ts";
 * const options: SubscribeOptions = { since: "all", recursive: true, maxSize: 1 << 20 };
 * ```
 */
export interface SubscribeOptions {
  /** Subscribe to this topic (a subdirectory, created when missing) instead of the root. */
  topic?: string;
  /**
   * Include every topic below, including topics created later.
   *
   * @default {false}
   */
  recursive?: boolean;
  /**
   * Replay messages already in the bus before the live ones: "all", those from the last
   * N milliseconds (a number), or those since a Date.
   */
  since?: "all" | number | Date;
  /**
   * Skip messages larger than this many bytes ({@linkcode DEFAULT_MAX_SIZE}, 256 MiB).
   *
   * @default {268435456}
   */
  maxSize?: number;
  /** Stops the subscription when aborted. */
  signal?: AbortSignal;
  /** Called for each file that is skipped rather than delivered. */
  onSkip?: (skipped: SkippedFile) => void;
  /**
   * Force a watcher backend ("auto": inotify through FFI when permitted).
   *
   * @default {"auto"}
   */
  backend?: "auto" | "inotify" | "watchfs";
  /**
   * Wait for events by blocking this thread in `poll(2)` for up to this many milliseconds at a
   * time, with an event-loop turn in between (0: wait on a worker thread). Saves one
   * thread hand-off per wake-up, for processes that only subscribe; the process's timers run
   * only between waits (and at least every 5 ms while messages keep coming), its sockets and
   * other I/O once every few dozen of those turns (Deno polls its I/O driver no more often).
   *
   * @default {0}
   */
  blockMs?: number;
  /**
   * How long a file found by a rescan must have been left unmodified before it is taken as
   * complete (its writer may still hold it open), in milliseconds.
   *
   * @default {30}
   */
  settleMs?: number;
}

/**
 * Counters kept by a subscription.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish, subscribe } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * publish(dir, "one");
 * publish(dir, "two");
 * await using subscription = subscribe(dir, { since: "all" });
 * let n = 0;
 * for await (const _ of subscription) if (++n === 2) break;
 * assert.equal(subscription.stats.delivered, 2);
 * assert.equal(subscription.stats.skipped, 0);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface SubscriptionStats {
  /** Messages delivered. */
  delivered: number;
  /** Files skipped (symlinks, special files, oversized, unreadable). */
  skipped: number;
  /** Files that were gone before they could be opened. */
  vanished: number;
  /** Times the directory was listed again because events were lost. */
  rescans: number;
  /** Files remembered now (to avoid duplicates): bounded by the rate times a few seconds. */
  remembered: number;
}

/** The default message size limit: 256 MiB. */
export const DEFAULT_MAX_SIZE: number = 256 * 1024 * 1024;

/** The options {@linkcode BusSubscription} gives a default. */
type Defaulted = "recursive" | "maxSize" | "backend" | "blockMs" | "settleMs";

interface Candidate {
  dir: string;
  name: string;
  sort: string;
  mtimeMs: number;
}

/**
 * A running subscription to a directory bus: an async iterable of {@linkcode BusMessage}s.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BusSubscription, publish } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const { id } = publish(dir, "hello");
 * {
 *   await using sub = new BusSubscription(dir, { since: "all" });
 *   for await (const m of sub) {
 *     assert.equal(m.id, id);
 *     break;
 *   }
 * } // leaving the block closes the subscription
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class BusSubscription implements Subscription<BusMessage> {
  /** The bus directory. */
  readonly dir: string;
  /** The subscribed topic ("" for the root). */
  readonly topic: string;
  /** Counters. */
  readonly stats: SubscriptionStats = {
    delivered: 0,
    skipped: 0,
    vanished: 0,
    rescans: 0,
    remembered: 0,
  };
  readonly #base: string;
  readonly #options: SubscribeOptions & Required<Pick<SubscribeOptions, Defaulted>>;
  readonly #maxSize: number;
  readonly #cutoffMs: number;
  /** Files delivered or skipped, by path below the base, oldest first (roughly). */
  readonly #seen = new SeenFiles();
  /** Every file whose ctime is before this (wall-clock ms) has been handled: a listing may
   * skip it. */
  #handledBefore = -Infinity;
  /** Every file whose ctime is before this has had its last event handled: it may be
   * forgotten. */
  #forgetBefore = -Infinity;
  #sincePrune = 0;
  readonly #files: MessageFiles;
  readonly #ffi: boolean;
  readonly #gen: AsyncGenerator<BusMessage, void, undefined>;
  /** The subscribed directory's descriptor (with FFI), open while iterating. */
  #baseFd = -1;
  /** Descriptors of topic directories below it, least recently used first. */
  readonly #dirFds = new Map<string, number>();
  #watcher: Watcher | undefined;
  /** Messages delivered since the watcher was last read. */
  #sinceRead = 0;
  /** An event taken while gathering a batch of files (#readBatch), handled next. */
  #pending: WatchEvent | undefined;
  /** #readBatch's scratch, and what it read. */
  readonly #batchDirs: string[] = [];
  readonly #batchNames: string[] = [];
  readonly #batchFds: (number | undefined)[] = [];
  readonly #batchRead: (ReadOutcome | undefined)[] = [];
  /** The batch's size, and the next of it to hand on (#batchNext). */
  #batchCount = 0;
  #batchAt = 0;
  #closed = false;
  #abort: (() => void) | undefined;

  /**
   * Starts a subscription. Watching begins at the first iteration.
   *
   * @param dir The bus directory.
   * @param options Topic, replay, limits, signal.
   */
  constructor(dir: string, options: SubscribeOptions = {}) {
    this.dir = dir.replace(/(.)\/+$/, "$1");
    this.topic = options.topic ? checkTopic(options.topic) : "";
    this.#base = this.topic ? `${this.dir}/${this.topic}` : this.dir;
    const {
      recursive = false,
      maxSize = DEFAULT_MAX_SIZE,
      backend = "auto",
      blockMs = 0,
      settleMs = 30,
    } = options;
    this.#options = { ...options, recursive, maxSize, backend, blockMs, settleMs };
    this.#maxSize = maxSize;
    const since = options.since;
    const now = Date.now();
    this.#cutoffMs = since === undefined
      ? now
      : since === "all"
      ? -Infinity
      : since instanceof Date
      ? since.getTime()
      : now - since;
    this.#ffi = this.backend === "inotify";
    this.#checkBus();
    this.#files = new MessageFiles(this.#ffi);
    this.#gen = this.#run();
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.#closed = true;
      this.#abort = () => void this.close();
      signal.addEventListener("abort", this.#abort, { once: true });
    }
  }

  /** Which watcher is in use ("inotify" or "watchfs"); known once iteration has begun. */
  get backend(): "inotify" | "watchfs" {
    return this.#watcher?.backend ??
      (this.#options.backend === "watchfs" ||
          (this.#options.backend !== "inotify" && !ffiAvailable())
        ? "watchfs"
        : "inotify");
  }

  #checkBus(): void {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(this.dir);
    } catch (err) {
      throw fromFsError(err, "Cannot subscribe to", this.dir);
    }
    if (!info.isDirectory) {
      throw new FsbusError("not_a_directory", `Cannot subscribe to "${this.dir}": not a directory`);
    }
    if (this.#ffi) {
      closeFd(this.#openBase());
      return;
    }
    if (this.topic) {
      try {
        makeTopicByPath(this.dir, this.topic);
      } catch (err) {
        if (err instanceof Deno.errors.PermissionDenied) {
          throw new FsbusError(
            "permission_denied",
            `Cannot subscribe to "${this.#base}": permission denied`,
          );
        }
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      }
    }
    try {
      for (const _ of Deno.readDirSync(this.#base)) break;
    } catch (err) {
      if (err instanceof Deno.errors.PermissionDenied) {
        throw new FsbusError(
          "permission_denied",
          `Cannot subscribe to "${this.#base}": permission denied`,
        );
      }
      if (err instanceof Deno.errors.NotADirectory) {
        throw new FsbusError(
          "not_a_directory",
          `Cannot subscribe to "${this.#base}": not a directory`,
        );
      }
      throw err;
    }
  }

  /**
   * Opens the subscribed directory through descriptors: the bus, then its topic one segment at
   * a time with `O_NOFOLLOW` (made with the bus's mode when missing).
   */
  #openBase(): number {
    let bus: number;
    try {
      bus = openDir(this.dir);
    } catch (err) {
      throw fromFsError(err, "Cannot subscribe to", this.dir);
    }
    if (!this.topic) return bus;
    try {
      return openTopic(bus, this.topic, busMode(bus));
    } catch (err) {
      throw fromFsError(err, "Cannot subscribe to", this.#base);
    } finally {
      closeFd(bus);
    }
  }

  /** The descriptor of a directory below the subscribed one ("" for itself), or undefined
   * when it is gone or not a directory (a symlink is never followed). */
  #dirFd(dir: string): number | undefined {
    if (dir === "") return this.#baseFd;
    const fd = this.#dirFds.get(dir);
    if (fd !== undefined) {
      this.#dirFds.delete(dir);
      this.#dirFds.set(dir, fd);
      return fd;
    }
    let opened: number;
    try {
      opened = openTopic(this.#baseFd, dir);
    } catch {
      return undefined;
    }
    if (this.#dirFds.size >= DIR_FDS) {
      const [oldest, oldFd] = this.#dirFds.entries().next().value!;
      this.#dirFds.delete(oldest);
      closeFd(oldFd);
    }
    this.#dirFds.set(dir, opened);
    return opened;
  }

  /** Forgets the descriptors of a directory and everything below it. */
  #dropDirs(dir: string): void {
    for (const [rel, fd] of this.#dirFds) {
      if (rel === dir || rel.startsWith(dir + "/")) {
        this.#dirFds.delete(rel);
        closeFd(fd);
      }
    }
  }

  #release(): void {
    for (const fd of this.#dirFds.values()) closeFd(fd);
    this.#dirFds.clear();
    if (this.#baseFd >= 0) closeFd(this.#baseFd);
    this.#baseFd = -1;
  }

  async *#run(): AsyncGenerator<BusMessage, void, undefined> {
    if (this.#closed) return;
    if (this.#ffi) this.#baseFd = this.#openBase();
    const recursive = this.#options.recursive;
    const watcher = openWatcher(this.#base, {
      recursive,
      backend: this.#options.backend,
      blockMs: this.#options.blockMs,
    });
    this.#watcher = watcher;
    try {
      watcher.watch("", this.#ffi ? this.#baseFd : undefined);
      if (recursive) this.#watchTree("");
      if (this.#options.since !== undefined) yield* this.#rescan(recursive);
      const inotify = watcher.backend === "inotify";
      for (;;) {
        if (this.#closed) return;
        if (this.#turnDue()) await this.#turn();
        // inotify loses nothing without saying so (IN_Q_OVERFLOW, handled as a rescan in its
        // place): every event taken is handled before the next, so once the watcher holds none,
        // every event queued before it last found the kernel's queue empty has been handled.
        // The fallback watcher loses events silently and cannot tell.
        const pending = this.#pending;
        if (inotify && !watcher.holding && pending === undefined) {
          this.#caughtUp(watcher.drainedAt - SEEN_SLACK_MS);
        }
        this.#pending = undefined;
        const e = pending ?? watcher.take();
        if (e === undefined) {
          this.#files.flush(); // the batch's files, before waiting
          if (!(await watcher.wait()) || this.#closed) return;
          continue;
        }
        // The event is used at once: the watcher may reuse it for the next.
        switch (e.kind) {
          case "file": {
            // Several files queued: read together (io_uring), then handed on one by one.
            if (watcher.holding && this.#files.batches()) {
              // Handed on from here, not through a `yield*` of another generator (a delegated
              // yield costs about 1,100 instructions more per message), and each step is one
              // call: V8 never optimises this generator (it runs for the whole subscription and
              // cannot be replaced mid-loop), so the work is done where it can (#batchNext).
              this.#readBatch(e, watcher);
              for (;;) {
                const m = this.#batchNext();
                if (m === undefined) break;
                if (m === null) await this.#turn();
                else yield m;
              }
              break;
            }
            const m = this.#deliver(e.dir, e.name);
            if (++this.#sinceRead >= READ_EVERY) this.#readMore();
            // The last file of what the watcher holds is closed as soon as its message has been
            // handed on (the consumer may keep it a while; the close is not on its way to the
            // consumer, #closeAfterHandOff); the others' together, later.
            if (!watcher.holding) {
              if (m) this.#closeAfterHandOff();
              else this.#files.flush();
            }
            if (m) yield m;
            break;
          }
          case "dir":
            if (recursive) {
              const dir = e.dir ? `${e.dir}/${e.name}` : e.name;
              this.#dropDirs(dir); // a directory moved in under a name seen before
              if (this.#watchDir(dir)) yield* this.#rescan(true, dir);
            }
            break;
          case "gone": {
            const rel = e.dir ? `${e.dir}/${e.name}` : e.name;
            if (this.#seen.delete(rel)) this.stats.remembered--;
            if (this.#dirFds.size > 0) this.#dropDirs(rel);
            break;
          }
          case "rescan":
            this.stats.rescans++;
            yield* this.#rescan(recursive);
            break;
          case "removed":
            if (e.dir === "") {
              throw new FsbusError(
                "not_found",
                `Cannot watch bus "${this.#base}": it was removed or moved`,
              );
            }
            this.#dropDirs(e.dir);
            break;
        }
      }
    } finally {
      this.#closed = true;
      this.#files.close(); // its open files and its ring
      await watcher.close();
      this.#release();
      if (this.#abort) this.#options.signal?.removeEventListener("abort", this.#abort);
    }
  }

  /** Closes the files read so far (see #closeAfterHandOff). */
  readonly #flushNow = (): void => this.#files.flush();
  /** Queues #flushNow behind the microtask that hands the message on. */
  readonly #flushNext = (): void => queueMicrotask(this.#flushNow);

  /**
   * Closes the files read so far once the message about to be yielded has reached the
   * consumer: two microtasks on, which is after the consumer's own (`await` or `for await`)
   * has run its synchronous part, so the message arrives one system call sooner; the files
   * are closed before anything else can run (a timer, I/O, the consumer's next `await`). If
   * the consumer asks for the next message first, the loop closes them itself before it
   * waits. Either way no message file stays open while the consumer works or the
   * subscription waits.
   */
  #closeAfterHandOff(): void {
    queueMicrotask(this.#flushNext);
  }

  /** When the event loop last had a turn (`Date.now()`), with blocking waits. */
  #turnedAt = 0;

  /**
   * Whether a subscription that blocks its thread in its waits (`blockMs`) should give the
   * event loop a turn now: at least every {@linkcode TURN_MS} however busy the bus, so that
   * the process's timers and sockets are served (a consumer's pings, its writes' completions)
   * even while events keep coming without a wait. Asked once per message: `Date.now()` costs
   * half what `performance.now()` does (about 430 instructions against 900, callgrind); a
   * wall clock set back counts as due, so a turn is never held off by a clock change.
   */
  #turnDue(): boolean {
    if (this.#options.blockMs <= 0) return false;
    const now = Date.now();
    return now - this.#turnedAt >= TURN_MS || now < this.#turnedAt;
  }

  async #turn(): Promise<void> {
    await yieldImmediate();
    this.#turnedAt = Date.now();
  }

  /** Watches a directory below the subscribed one, through its descriptor with FFI. */
  #watchDir(dir: string): boolean {
    if (!this.#ffi) return this.#watcher!.watch(dir);
    const fd = this.#dirFd(dir);
    return fd !== undefined && this.#watcher!.watch(dir, fd);
  }

  /** Watches every (non-hidden, non-symlink) directory below `dir`. */
  #watchTree(dir: string): void {
    for (const entry of this.#entries(dir)) {
      if (!entry.isDirectory || entry.isSymlink || isHidden(entry.name)) continue;
      const sub = dir ? `${dir}/${entry.name}` : entry.name;
      if (this.#watchDir(sub)) this.#watchTree(sub);
    }
  }

  /**
   * Lists the tree (or one directory of it) and delivers, in time order, every message inside
   * the replay window that has not been delivered yet.
   */
  async *#rescan(recursive: boolean, only?: string): AsyncGenerator<BusMessage, void, undefined> {
    const candidates: Candidate[] = [];
    const listedAt = Date.now();
    // A new directory (`only`) is listed whole: nothing in it was handled yet.
    const handled = only === undefined ? this.#handledBefore : -Infinity;
    this.#list(only ?? "", recursive, candidates, handled);
    if (candidates.length > 0) {
      candidates.sort((a, b) => (a.sort < b.sort ? -1 : a.sort > b.sort ? 1 : 0));
      await this.#settle(candidates);
      const last = candidates[candidates.length - 1];
      for (const c of candidates) {
        if (this.#closed) return;
        if (this.#turnDue()) await this.#turn();
        const m = this.#deliver(c.dir, c.name);
        if (++this.#sinceRead >= READ_EVERY) this.#readMore();
        if (c === last) this.#files.flush();
        if (m) yield m;
      }
    }
    if (only === undefined) {
      this.#handledBefore = Math.max(this.#handledBefore, listedAt - SEEN_SLACK_MS);
      // inotify may still hold events for the files just listed (queued behind the overflow):
      // they are forgotten only once it has caught up (#caughtUp).
      if (this.#watcher?.backend !== "inotify") {
        this.#forgetBefore = this.#handledBefore;
        this.#prune();
      }
    }
  }

  /**
   * Moves the events the kernel holds now into the watcher's own queue, while a long batch or
   * listing is being delivered: the kernel's queue then does not overflow (no listing, no lost
   * event) as long as the watcher's (4 MiB, some 70,000 events) has room.
   */
  #readMore(): void {
    this.#sinceRead = 0;
    this.#watcher?.pull();
  }

  /** Every event for files changed before `before` has been handled: forget those files. */
  #caughtUp(before: number): void {
    if (!(before > this.#forgetBefore)) return;
    this.#forgetBefore = before;
    if (before > this.#handledBefore) this.#handledBefore = before;
    if (this.#seen.oldestBefore(before)) this.#prune();
  }

  /** Forgets files whose last event has been handled: a listing skips them anyway. */
  #prune(): void {
    this.#sincePrune = 0;
    this.#seen.forget(this.#forgetBefore);
    this.stats.remembered = this.#seen.size;
  }

  /** `found`: the file's entry (or -1) when #seen was just asked, as #deliver does. */
  #remember(rel: string, state: FileState | undefined, skip?: string, found?: number): void {
    this.#seen.add(rel, state, state ? state.ctimeMs : Date.now(), skip, found);
    this.stats.remembered = this.#seen.size;
    if (++this.#sincePrune >= PRUNE_EVERY) this.#prune();
  }

  /** The entries of a directory below the base ("" for the base), or none when unreadable. */
  #entries(dir: string): Entry[] {
    try {
      if (!this.#ffi) return [...Deno.readDirSync(dir ? `${this.#base}/${dir}` : this.#base)];
      const fd = this.#dirFd(dir);
      if (fd === undefined) return [];
      const out: Entry[] = [];
      for (const batch of readDirFd(fd)) {
        for (const e of batch) {
          const kind = e.kind ?? statAt(fd, e.name)?.kind;
          if (kind === undefined) continue;
          out.push({
            name: e.name,
            isDirectory: kind === "directory",
            isSymlink: kind === "symlink",
          });
        }
      }
      return out;
    } catch {
      return [];
    }
  }

  /** The state of a file below the base, without following a symlink. */
  #state(dir: string, name: string) {
    const fd = this.#ffi ? this.#dirFd(dir) : -1;
    if (fd === undefined) return undefined;
    return this.#files.state(fd, name, `${this.#base}/${dir ? dir + "/" : ""}${name}`);
  }

  #list(dir: string, recursive: boolean, out: Candidate[], handled: number): void {
    for (const entry of this.#entries(dir)) {
      if (isHidden(entry.name)) continue;
      const rel = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isDirectory) {
        // A topic made while events were lost has no watch yet (watching twice is harmless).
        if (recursive && !entry.isSymlink && this.#watchDir(rel)) {
          this.#list(rel, true, out, handled);
        }
        continue;
      }
      const seen = this.#seen.find(rel);
      const idMs = idTime(entry.name);
      if (idMs !== undefined) {
        // fsbus names are created once (O_EXCL) and never rewritten: no need to look again,
        // and the name says when: only a recent one needs its modification time (#settle),
        // and only one that may have been forgotten needs its ctime.
        if (seen >= 0 || idMs < this.#cutoffMs) continue;
        if (idMs < handled - NAME_SLACK_MS) continue;
        if (idMs >= handled && idMs < Date.now() - 1000) {
          out.push({ dir, name: entry.name, sort: sortKey(entry.name, idMs), mtimeMs: idMs });
          continue;
        }
      }
      const st = this.#state(dir, entry.name);
      if (st === undefined) continue;
      if ((idMs ?? st.mtimeMs) < this.#cutoffMs) continue;
      if (st.ctimeMs < handled) continue; // handled, and perhaps forgotten
      if (seen >= 0 && this.#seen.same(seen, st)) continue; // delivered, or skipped
      out.push({
        dir,
        name: entry.name,
        sort: sortKey(entry.name, st.mtimeMs),
        mtimeMs: st.mtimeMs,
      });
    }
  }

  /**
   * Waits until every candidate has been left alone for `settleMs`: a file found by listing
   * may still be open for writing, and its close event (if not lost) comes later.
   */
  async #settle(candidates: Candidate[]): Promise<void> {
    const settleMs = this.#options.settleMs;
    for (let round = 0; round < 20; round++) {
      let newest = -Infinity;
      for (const c of candidates) if (c.mtimeMs > newest) newest = c.mtimeMs;
      const wait = newest + settleMs - Date.now();
      if (wait <= 0 || this.#closed) return;
      this.#files.flush();
      await new Promise((r) => setTimeout(r, Math.ceil(wait)));
      for (const c of candidates) {
        const st = this.#state(c.dir, c.name);
        if (st) c.mtimeMs = st.mtimeMs;
      }
    }
  }

  /**
   * Takes the file events queued behind `first` (up to {@linkcode READ_BATCH}, stopping at
   * any other kind of event, kept for the loop in `#pending`) and reads their files together
   * ({@linkcode MessageFiles.readMany}) into `#batchRead`; the loop then hands their messages
   * on in order (#deliver, one at a time, so that a consumer that stops early has been given,
   * and the subscription remembers, only what it took).
   *
   * How many: `#batchCount` (in `#batchDirs`, `#batchNames`, `#batchRead`).
   */
  #readBatch(first: WatchEvent, watcher: Watcher): void {
    const dirs = this.#batchDirs, names = this.#batchNames;
    dirs[0] = first.dir;
    names[0] = first.name; // `first` may be reused by the next take()
    let n = 1;
    while (n < READ_BATCH && watcher.holding) {
      const e = watcher.take();
      if (e === undefined) break;
      if (e.kind !== "file") {
        this.#pending = { kind: e.kind, dir: e.dir, name: e.name };
        break;
      }
      dirs[n] = e.dir;
      names[n++] = e.name;
    }
    const fds = this.#batchFds;
    for (let i = 0; i < n; i++) fds[i] = this.#dirFd(dirs[i]!);
    this.#files.readMany(fds, names, n, this.#maxSize, this.#batchRead);
    this.#batchAt = 0;
    this.#batchCount = n;
  }

  /**
   * The next message of the batch #readBatch read (#deliver, one at a time, so that a
   * consumer that stops early has been given, and the subscription remembers, only what it
   * took): null when the event loop is due a turn first (then call again), undefined once the
   * batch is done or the subscription closed.
   */
  #batchNext(): BusMessage | null | undefined {
    const read = this.#batchRead;
    while (this.#batchAt < this.#batchCount) {
      if (this.#closed) return undefined;
      const i = this.#batchAt;
      if (i > 0 && this.#turnDue()) return null;
      this.#batchAt = i + 1;
      const m = this.#deliver(this.#batchDirs[i]!, this.#batchNames[i]!, read[i] ?? null);
      read[i] = undefined;
      if (++this.#sinceRead >= READ_EVERY) this.#readMore();
      if (m) return m;
    }
    return undefined;
  }

  /**
   * Reads one file and returns it as a message, or undefined when skipped or a duplicate.
   * `got`: its outcome when already read ({@linkcode MessageFiles.readMany}; null for "still
   * being written"), compared here with what was delivered before.
   */
  #deliver(dir: string, name: string, got?: ReadOutcome | null): BusMessage | undefined {
    const rel = dir ? `${dir}/${name}` : name;
    const path = `${this.#base}/${rel}`;
    const fd = this.#ffi ? this.#dirFd(dir) : -1;
    if (fd === undefined) return undefined; // the topic is gone, or was swapped for a symlink
    const prev = this.#seen.find(rel);
    const prevSkip = prev >= 0 ? this.#seen.skipOf(prev) : undefined;
    const delivered = prev < 0 || prevSkip !== undefined ? undefined : this.#seen.version(prev);
    let r: ReadOutcome | undefined;
    if (got === undefined) r = this.#files.read(fd, name, path, this.#maxSize, delivered);
    else if (got === null) r = undefined;
    else {
      r = got;
      // Unchanged since delivered: not again (read() makes this check before reading).
      if (delivered !== undefined && r.ok && sameFile(delivered, r.state)) r = undefined;
    }
    if (r === undefined) return undefined;
    if (!r.ok) {
      if (r.why === "gone") {
        this.stats.vanished++;
        if (this.#seen.delete(rel)) this.stats.remembered--;
        return undefined;
      }
      if (
        prevSkip !== undefined &&
        (r.state
          ? this.#seen.same(prev, r.state)
          : this.#seen.version(prev).ino === -1 && prevSkip === r.reason)
      ) {
        return undefined;
      }
      this.#remember(rel, r.state, r.reason, prev);
      this.stats.skipped++;
      this.#options.onSkip?.({ path, reason: r.reason });
      return undefined;
    }
    this.#remember(rel, r.state, undefined, prev);
    this.stats.delivered++;
    const topic = this.topic ? (dir ? `${this.topic}/${dir}` : this.topic) : dir;
    const t = idTime(name) ?? r.state.mtimeMs;
    return { id: name, topic, time: new Date(Math.floor(t)), path, data: r.data };
  }

  /** Iterates the messages: replayed ones first (with `since`), then live ones. */
  [Symbol.asyncIterator](): AsyncGenerator<BusMessage, void, undefined> {
    return this.#gen;
  }

  /** Stops the subscription and releases its watch, descriptors and timers. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.wake();
    await this.#gen.return(undefined);
    this.#release();
    if (this.#abort) this.#options.signal?.removeEventListener("abort", this.#abort);
  }

  /** Same as {@linkcode BusSubscription.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Subscribes to a directory bus: an async iterable of messages that is also disposable.
 *
 * @param dir The bus directory.
 * @param options Topic, recursion, replay, size limit, signal.
 * @returns The subscription.
 * @throws {FsbusError} When `dir` is missing, not a directory, or not readable.
 *
 * @example Print messages until one says "stop"
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish, subscribe } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * publish(dir, "hello");
 * publish(dir, "stop");
 * const seen: string[] = [];
 * for await (const m of subscribe(dir, { since: "all" })) {
 *   const text = new TextDecoder().decode(m.data);
 *   seen.push(text);
 *   if (text === "stop") break;
 * }
 * assert.deepEqual(seen, ["hello", "stop"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function subscribe(dir: string, options: SubscribeOptions = {}): BusSubscription {
  return new BusSubscription(dir, options);
}
