/**
 * The mq group engine: a directory of message streams with a `ctl` file, an `order` file
 * and a hidden index, written and read by any number of processes with no daemon.
 *
 * How it is reached (this module's API, the CLI, later a FUSE file tree) is kept apart:
 * everything here is synchronous file work on one directory.
 *
 * ## On disk
 *
 * ```
 * group/ctl            "data message\nreplay off\n" (+ "depth N\n"): settings, as mq(4)
 * group/order          the stream's name and a NUL for every write, in write order
 * group/NAME           a stream: the raw bytes of its messages, concatenated
 * group/.mq/lock       flock(2) target serialising every change to the group
 * group/.mq/index      a page of header, then one 64-byte record per committed message
 *                      (see _layout.ts); only ever appended to, whole records at a time
 * group/.mq/intent     the record of the write in progress
 * group/.mq/streams    one line "INODE\tNAME\tCRC\n" per stream incarnation; the line
 *                      is its id
 * group/.mq/checkpoint the index's state at the cutoff, so trimmed records can be freed
 * group/.mq/settings   the canonical ctl text, so a shell's partial rewrite of ctl can be
 *                      applied on top of it
 * group/.mq/rejected   the last ctl text a shell wrote that mq would reject, with the reason
 * ```
 *
 * Every file is opened from the group directory's descriptor, never through a symbolic
 * link, and must be a regular file; a group any user may write (mode o+w without the
 * sticky bit) is refused. A user who may read a group but not write it opens it read only:
 * readers take no lock and write nothing, so reading needs read permission only.
 *
 * ## Damage is found, never delivered
 *
 * Records carry a checksum of themselves (with their position) and a CRC-32 of their message;
 * each must follow the one before (byte count, `order` offset, the stream's offset and
 * message number); `.mq/streams` lines and the cutoff carry a CRC too. Whatever does not
 * hold is an error of code `damaged` naming the file and what is wrong, never guessed data;
 * a stream file shorter than its index is an error too (it is never padded). Only a torn
 * tail (part of a record, or a last record a dead writer's intent explains) is dropped by
 * itself. `fsbus mq check GROUP [--repair]` (check.ts) explains and repairs the rest.
 *
 * Groups made before checksums (index header `fsbusmq1`) are read and written in their own
 * format, with every check but the checksums; new groups are `fsbusmq2`.
 *
 * ## Writing, and why a message is never seen torn
 *
 * A write takes the group lock, brings the engine up to date (see {@linkcode MqGroup.sync}),
 * then:
 * 1. writes its record, marked *intent*, to `.mq/intent`,
 * 2. appends the bytes to the stream with one `O_APPEND` write,
 * 3. writes the stream's name + NUL into `order` at the position the record names,
 * 4. appends the record, marked *committed*, to the index, and releases the lock.
 *
 * A process with a burst of writes (the FUSE server) may keep the lock across them
 * ({@linkcode MqGroup.holdLock}): the sync is then done once, when the lock is taken (no other
 * writer can commit meanwhile), and each write only checks its own stream for foreign appends.
 *
 * The index is the commit point: readers deliver only records in the index, and a record
 * gets there only after its bytes are in the stream, so no reader ever sees part of a
 * message. A record is appended with one write at the end of the file, and a reader cannot
 * see the new size before the bytes are copied, so records are never seen half-written
 * either. Readers need no lock, and wake once per commit (they watch the index, not the
 * streams' modifications).
 *
 * ## Foreign appends and torn writes
 *
 * A stream truncated or rewritten in place (`echo three > group/s`: shorter than its index,
 * or its last message's bytes changed) becomes a new incarnation, as a stream removed and
 * made again: its readers get EOF, and what the file holds now is the new one's first
 * message. A file copied or restored under a new inode that holds the stream's last
 * message is still the same stream.
 *
 * Bytes in a stream file beyond the end of its last indexed message come from one of two
 * places. A program that knows nothing of fsbus (`echo hi >> group/0`) appended them: they
 * are one message, indexed (flag "foreign") by the next fsbus writer or reader that syncs
 * (readers wake on the file's close), and so take their place in the order then. Or an fsbus
 * writer died between steps 1 and 4: then `.mq/intent` still names the next sequence number,
 * and since the writer held the lock, whoever takes the lock next knows that writer is gone.
 * The intent names the exact range it was writing: if all of it is in the file, the write
 * finished and is committed now; otherwise the stream is truncated back to where the
 * message would have started. Either way the intent is then marked settled. So the two are
 * never confused: unclaimed bytes with no live intent are foreign; bytes claimed by a dead
 * intent are either a whole message or removed.
 *
 * ## Depth
 *
 * With a depth set, each write moves the group's cutoff (a global sequence number in the
 * index header) so that the newest COUNT messages, or SIZE bytes, remain. Bytes below the
 * cutoff are freed with `fallocate(PUNCH_HOLE)` in whole pages once 64 KiB are reclaimable,
 * so disk use stays bounded while every offset stays valid (no file is rewritten, so
 * `tail -f` and programs holding a stream open keep working; trimmed bytes read as NULs).
 * A reader whose next message is below the cutoff gets an {@linkcode OverrunError}.
 *
 * ## Where the parts live
 *
 * This file holds the locked write path (open, create, the lock, sync, write, remove,
 * close). Stream names are checked in `_names.ts`, `ctl` and `.mq/settings` are kept by
 * `_settings.ts`, the stream incarnations by `_streams.ts`, and the index (records, intent,
 * recovery, cutoff, trimming) by `_index.ts`; readers reach the last two through
 * `_internal.ts`.
 *
 * @module
 */

import { fromFsError, FsbusError, toBytes } from "../../types.ts";
import { closeFd, fstat, O, openFd, statPath, writeAllFd } from "../../sys/fs.ts";
import { fchgrp, fchmod } from "../../sys/dirfd.ts";
import { GroupDir, type Place } from "./_files.ts";
import { fdEnd, fdPosition, lockFd, unlockFd } from "../../sys/fd_io.ts";
import { applyCommands, DEFAULT_SETTINGS, parseDepth, renderCtl, type Settings } from "./_ctl.ts";
import { COMMITTED } from "./_layout.ts";
import { checkStreamName } from "./_names.ts";
import { GroupSettings } from "./_settings.ts";
import { type StreamInfo, type StreamState, StreamTable } from "./_streams.ts";
import { GroupIndex } from "./_index.ts";
import { attachInternals } from "./_internal.ts";

export type { DataMode, Depth, ReplayMode, Settings } from "./_ctl.ts";
export type { StreamInfo } from "./_streams.ts";
export { checkStreamName } from "./_names.ts";

/** What a write produced. */
export interface WriteResult {
  /** The message's place in the group's global order. */
  seq: number;
  /** The stream the message went to. */
  stream: string;
}

/** Options for {@linkcode MqGroup.create}. */
export interface CreateOptions {
  /**
   * Where readers start unless they choose.
   *
   * @default {"off"}
   */
  replay?: Settings["replay"];
  /**
   * How readers see messages.
   *
   * @default {"message"}
   */
  data?: Settings["data"];
  /**
   * Depth: a count, a size such as "64K", or 0 for unlimited.
   *
   * @default {0}
   */
  depth?: string | number;
  /**
   * Succeed, changing nothing, when the group exists already, whatever its settings (by
   * default a group that exists is opened when it has the settings given here, and refused
   * when one of them differs).
   *
   * @default {false}
   */
  existOk?: boolean;
  /**
   * Permission bits of the group's directory, such as `0o2770` for a group shared with the
   * directory's group (setgid keeps new files in it). Its files get the same bits without
   * execute (`0o660`).
   *
   * @default {as the umask makes them}
   */
  mode?: number;
  /**
   * The group id to give the group's directory (and so, with setgid, its files).
   *
   * @default {the user's, or the parent directory's when it is setgid}
   */
  gid?: number;
}

/** Options for {@linkcode MqGroup.write}. */
export interface WriteOptions {
  /**
   * Whether to append to `order` (false only for measuring its cost).
   *
   * @default {true}
   */
  order?: boolean;
}

/** Options for {@linkcode MqGroup.open}. */
export interface OpenOptions {
  /**
   * Open for reading only: no lock, nothing written (readers of a group they cannot
   * write). By default a group is opened for writing, and for reading only when this user
   * may not write it.
   *
   * @default {false}
   */
  readOnly?: boolean;
}

/** The largest message kept in memory for readers in the same process. */
const KEEP_WRITTEN = 64 * 1024;

/** Permission bits: others may write. */
const OTHERS_WRITE = 0o002;
const STICKY = 0o1000;

/** Whether an error says this user may not write (so a read-only open may still work). */
function denied(err: unknown): boolean {
  return err instanceof FsbusError && err.code === "permission_denied";
}

/**
 * An open mq group: write messages, change settings, and (through `reader.ts`) read them.
 *
 * All methods are synchronous and safe against other processes using the same group at the
 * same time; one instance is meant for one thread.
 *
 * @example Make a group, write to two streams, list them
 * ```ts
 * import assert from "node:assert/strict";
 * import { MqGroup } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = MqGroup.create(`${dir}/g`, { replay: "all" });
 * g.write("0", "hello\n");
 * g.write("1", "world\n");
 * assert.deepEqual(g.streamNames(), ["0", "1"]);
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class MqGroup {
  /** The group's directory. */
  readonly path: string;
  /** Whether this process may change the group (false: opened for reading only). */
  readonly writable: boolean;
  readonly #fds: DisposableStack;
  readonly #dir: GroupDir;
  readonly #lockFd: number;
  readonly #settings: GroupSettings;
  readonly #streams: StreamTable;
  readonly #index: GroupIndex;
  #lockDepth = 0;
  /** The lock is held by {@linkcode MqGroup.holdLock}. */
  #held = false;
  /** Brought up to date since the lock was taken (only this process changed it since). */
  #synced = false;
  /** Up to date when the lock was last released (it may be resumed: holdLock's `unchanged`). */
  #resumable = false;
  /** Taken by holdLock with nothing changed since the last release: no full sync needed. */
  #resume = false;
  /** Streams caught up by the last sync (a write need not look at its stream again). */
  readonly #caught = new Set<StreamState>();
  /** The last stream name {@linkcode MqGroup.write} found good (see checkStreamName). */
  #goodName: string | undefined;

  private constructor(dir: GroupDir, writable: boolean) {
    this.path = dir.path;
    this.writable = writable;
    this.#dir = dir;
    using fds = new DisposableStack();
    const open = (place: Place, name: string, flags: number): number => {
      const fd = dir.openFile(place, name, flags, "Cannot open group");
      fds.defer(() => closeFd(fd));
      return fd;
    };
    // Every file is reached from the group's directory descriptor, never through a
    // symbolic link, and must be a regular file (see _files.ts).
    const rw = writable ? O.RDWR | O.CREAT : O.RDONLY;
    this.#lockFd = writable ? open("meta", "lock", rw) : -1;
    const index = open("meta", "index", rw);
    const order = open("group", "order", rw);
    const ctl = open("group", "ctl", writable ? O.RDWR : O.RDONLY);
    const names = open("meta", "streams", rw);
    const intent = open("meta", "intent", rw);
    this.#settings = new GroupSettings(dir, ctl);
    this.#streams = new StreamTable(dir, names, writable);
    this.#index = new GroupIndex(dir, { index, intent, order }, this.#streams);
    this.#streams.holdsLastMessage = (s, fd) => this.#index.holdsLastMessage(s, fd);
    attachInternals(this, { index: this.#index, streams: this.#streams });
    fds.use(dir);
    this.#fds = fds.move();
  }

  /**
   * Opens an existing group (a directory holding `ctl`).
   *
   * @param path The group's directory.
   * @param options `readOnly` to open it for reading only (chosen by itself when this user
   *   may not write the group).
   * @returns The open group, up to date (foreign appends indexed, torn writes undone).
   * @throws {FsbusError} `not_found` when there is no such group, `damaged` when its
   *   files are not sound, `invalid` when others may write its directory.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * MqGroup.create(`${dir}/g`).close();
   * const g = MqGroup.open(`${dir}/g`);
   * assert.equal(g.writable, true);
   * g.close();
   * const reader = MqGroup.open(`${dir}/g`, { readOnly: true }); // no lock, writes nothing
   * assert.equal(reader.writable, false);
   * reader.close();
   * assert.throws(() => MqGroup.open(dir), /not an mq group/);
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  static open(path: string, options: OpenOptions = {}): MqGroup {
    const dir = path.replace(/(.)\/+$/, "$1");
    if (!options.readOnly) {
      try {
        return MqGroup.#openAs(dir, true);
      } catch (err) {
        if (!denied(err)) throw err;
      }
    }
    return MqGroup.#openAs(dir, false);
  }

  static #openAs(path: string, writable: boolean): MqGroup {
    const dir = GroupDir.open(path, writable);
    let g: MqGroup;
    try {
      MqGroup.#checkDir(dir);
      g = new MqGroup(dir, writable);
    } catch (err) {
      dir[Symbol.dispose]();
      throw err;
    }
    try {
      if (writable) g.#withLock(() => g.#init());
      else g.#initReadOnly();
    } catch (err) {
      g.close();
      throw err;
    }
    return g;
  }

  /** Refuses what is not a group, or a group any user could tamper with. */
  static #checkDir(dir: GroupDir): void {
    if (dir.stat("group", "ctl")?.kind !== "file") {
      throw new FsbusError(
        "not_found",
        `Cannot open group "${dir.path}": not an mq group (no "ctl"; see "fsbus mq mkgroup")`,
      );
    }
    for (const [what, fd] of [["", dir.fd], ["/.mq", dir.metaFd]] as const) {
      if (fd < 0) continue;
      const mode = fstat(fd).mode;
      if ((mode & OTHERS_WRITE) && !(mode & STICKY)) {
        throw new FsbusError(
          "invalid",
          `Cannot open group "${dir.path}": "${dir.path}${what}" is writable by every user ` +
            `(mode ${mode.toString(8).padStart(4, "0")}); give it to a group instead`,
        );
      }
    }
  }

  /**
   * Makes a group (and its parent directories), with `ctl`, `order` and its hidden index.
   *
   * @param path The directory to make a group of.
   * @param options The initial settings.
   * @returns The open group.
   * @throws {FsbusError} `already_exists` when it is a group already with other settings
   *   than those given (unless `existOk`), `invalid` for a bad depth.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * MqGroup.create(`${dir}/g`, { replay: "all", depth: "64K" }).close();
   * assert.equal(Deno.readTextFileSync(`${dir}/g/ctl`), "data message\nreplay all\ndepth 64K\n");
   * // The same settings again open it; other settings are refused.
   * MqGroup.create(`${dir}/g`, { replay: "all" }).close();
   * assert.throws(() => MqGroup.create(`${dir}/g`, { replay: "off" }), /other settings/);
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  static create(path: string, options: CreateOptions = {}): MqGroup {
    const dir = path.replace(/(.)\/+$/, "$1");
    let settings: Settings = {
      data: options.data ?? DEFAULT_SETTINGS.data,
      replay: options.replay ?? DEFAULT_SETTINGS.replay,
      depth: options.depth === undefined ? { kind: "none" } : parseDepth(String(options.depth)),
    };
    settings = applyCommands(`data ${settings.data}\nreplay ${settings.replay}`, settings);
    if (statPath(`${dir}/ctl`) !== undefined) {
      const g = MqGroup.open(dir);
      if (options.existOk) return g;
      const differs = MqGroup.#differences(g, settings, options);
      if (differs.length === 0) return g;
      g.close();
      throw new FsbusError(
        "already_exists",
        `Cannot make group "${dir}": already a group with other settings (${differs.join(", ")})`,
      );
    }
    try {
      Deno.mkdirSync(dir, { recursive: true });
      if (options.mode !== undefined || options.gid !== undefined) {
        const fd = openFd(dir, O.RDONLY | O.DIRECTORY);
        try {
          if (options.gid !== undefined) fchgrp(fd, options.gid);
          if (options.mode !== undefined) fchmod(fd, options.mode);
        } finally {
          closeFd(fd);
        }
      }
    } catch (err) {
      throw fromFsError(err, "Cannot make group", dir);
    }
    {
      using g = GroupDir.open(dir, true);
      const text = renderCtl(settings);
      g.writeText("meta", "settings", text);
      closeFd(g.openFile("group", "order", O.RDWR | O.CREAT, "Cannot make group"));
      // ctl last: its presence is what makes the directory a group.
      g.writeText("group", "ctl", text);
    }
    return MqGroup.open(dir);
  }

  /** What differs between an open group and the settings and access asked of it. */
  static #differences(g: MqGroup, want: Settings, options: CreateOptions): string[] {
    const have = g.settings;
    const out: string[] = [];
    const render = (d: Settings["depth"]) => renderCtl({ ...have, depth: d }).split("\n")[2] ?? "";
    if (options.data !== undefined && have.data !== want.data) out.push(`data ${have.data}`);
    if (options.replay !== undefined && have.replay !== want.replay) {
      out.push(`replay ${have.replay}`);
    }
    if (options.depth !== undefined && render(have.depth) !== render(want.depth)) {
      out.push(render(have.depth) || "depth 0");
    }
    const st = fstat(g.#dir.fd);
    if (options.mode !== undefined && st.mode !== options.mode) {
      out.push(`mode ${st.mode.toString(8).padStart(4, "0")}`);
    }
    if (options.gid !== undefined && st.gid !== options.gid) out.push(`group ${st.gid}`);
    return out;
  }

  #init(): void {
    this.#index.init(true);
    this.#settings.loadLocked();
    this.#syncLocked(true);
    // Bytes in `order` past the last committed record come from a writer that died
    // before committing; they are not part of the order. Trimming starts at the cutoff.
    this.#index.settleOrderLocked();
  }

  #initReadOnly(): void {
    this.#index.init(false);
    this.#settings.loadReadOnly();
    this.#index.read(false);
    this.#streams.readNames();
  }

  // ---------------------------------------------------------------- locking and sync

  #withLock<T>(fn: () => T): T {
    const outer = this.#lockDepth === 0;
    if (outer) this.#lock();
    try {
      return fn();
    } catch (err) {
      // Perhaps half done (a write's intent left): the next lock does a full sync.
      this.#synced = false;
      this.#resume = false;
      throw err;
    } finally {
      if (outer) this.#unlock();
    }
  }

  #lock(): void {
    this.#assertOpen();
    if (!this.writable) {
      throw new FsbusError(
        "permission_denied",
        `Cannot change group "${this.path}": opened for reading only (no write access)`,
      );
    }
    if (this.#lockDepth > 0) {
      this.#lockDepth++;
      return;
    }
    lockFd(this.#lockFd);
    this.#lockDepth = 1;
    this.#index.lockHeld = true;
  }

  #unlock(): void {
    if (--this.#lockDepth > 0) return;
    this.#index.lockHeld = false;
    this.#resumable = this.#synced;
    this.#synced = false;
    this.#resume = false;
    unlockFd(this.#lockFd);
  }

  /**
   * Takes the group lock and keeps it across calls until {@linkcode MqGroup.releaseLock}:
   * for a burst of writes from one process (a file server answering many write requests).
   * While it is held nobody else can commit, so after the first write's sync each write
   * only looks at its own stream (foreign appends to it, in one `statx`): changes made
   * without the lock (a shell's `ctl`, streams made or appended to by plain programs) are
   * taken by the next write after the lock was taken again, or by {@linkcode MqGroup.sync}.
   * Every other fsbus writer waits meanwhile: hold it for a short burst only. Closing the
   * group releases it.
   *
   * `unchanged`, when given, is asked once the lock is taken: a caller that watches the group
   * (inotify on its directory, `ctl`, `.mq/index` and `.mq/intent`) and saw nothing since it
   * last released the lock says so by returning true. If this group was up to date then,
   * the full sync is skipped: the first write only looks at the live streams' sizes (plain
   * appends, which no watch reports).
   *
   * @param unchanged Whether nothing but this process changed the group since the lock was
   *   last released by it.
   * @throws {FsbusError} `permission_denied` for a group opened for reading only.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.holdLock();
   * try {
   *   for (let i = 0; i < 100; i++) g.write("0", `message ${i}\n`);
   * } finally {
   *   g.releaseLock(); // other writers may go on
   * }
   * assert.equal(g.next, 100);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  holdLock(unchanged?: () => boolean): void {
    if (this.#held) return;
    const resumable = this.#resumable;
    this.#lock();
    this.#held = true;
    this.#resumable = false;
    if (resumable && unchanged !== undefined && unchanged()) {
      this.#resume = true;
      this.#index.resumed();
    }
  }

  /** Releases the lock taken by {@linkcode MqGroup.holdLock} (nothing when not held). */
  releaseLock(): void {
    if (!this.#held || this.#fds.disposed) return;
    this.#held = false;
    this.#unlock();
  }

  /** Whether {@linkcode MqGroup.holdLock} holds the lock now. */
  get holdsLock(): boolean {
    return this.#held;
  }

  #assertOpen(): void {
    if (this.#fds.disposed) {
      throw new FsbusError("closed", `Cannot use group "${this.path}": it is closed`);
    }
  }

  /**
   * Brings the group up to date under its lock: indexes foreign appends and new streams,
   * undoes torn writes of dead writers, applies a `ctl` rewritten by a shell.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("0", "one\n");
   * Deno.writeTextFileSync(`${dir}/g/0`, "two\n", { append: true }); // as `echo two >> g/0`
   * g.sync(); // the plain append is a message now, in the order
   * assert.equal(g.next, 2);
   * assert.equal(g.stream("0")?.count, 2);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  sync(): void {
    if (this.writable) {
      this.#withLock(() => this.#syncLocked(false));
      return;
    }
    // Read only: what writers have indexed, and which streams are gone.
    this.#assertOpen();
    this.#index.read(false);
    this.#streams.readNames();
    this.#streams.dropRemoved();
  }

  #syncLocked(forceScan: boolean): void {
    this.#index.read(true);
    this.#settings.checkLocked();
    this.#streams.scanDir(forceScan);
    this.#catchUpLive();
  }

  /** The end of a sync, and all of a resumed one (holdLock): plain appends to live streams. */
  #catchUpLive(): void {
    this.#caught.clear();
    for (const s of [...this.#streams.live.values()]) {
      if (this.#streams.ensureFd(s)) this.#caught.add(this.#catchUp(s));
    }
    this.#synced = true;
    this.#resume = false;
  }

  /**
   * Under the lock: indexes what a plain program did to a stream. Bytes appended are one
   * message. A stream truncated or rewritten in place (`echo three > group/s`: shorter than
   * its index says, or its last message's bytes changed) becomes a new incarnation, as if
   * removed and made again: readers of the old one get EOF, and what it holds now is the
   * new one's first message. Its bytes are never split along the old messages' bounds.
   */
  #catchUp(s: StreamState): StreamState {
    // The size, as statx gives it: the stream's descriptor is written with O_APPEND and read
    // with pread, so its position is free to move (and an lseek costs less than a statx).
    const size = fdEnd(s.fd);
    if (size === s.end) return s;
    if (size > s.end && !this.#index.lastMessageChanged(s)) {
      this.#index.commitForeign(s, s.end, size - s.end);
      return s;
    }
    const fresh = this.#streams.renew(s);
    if (size > 0) this.#index.commitForeign(fresh, 0, size);
    return fresh;
  }

  /**
   * Runs `fn` holding the group lock, after a sync (a read-only group: after a sync, no lock).
   *
   * @param fn What to do.
   * @returns What `fn` returns.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("0", "one\n");
   * const n = g.locked(() => g.next); // no write can happen in between
   * assert.equal(n, 1);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  locked<T>(fn: () => T): T {
    if (!this.writable) {
      this.sync();
      return fn();
    }
    return this.#withLock(() => {
      this.#syncLocked(false);
      return fn();
    });
  }

  /**
   * Reads records committed since the last look, without the lock (for readers).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const writer = MqGroup.create(`${dir}/g`);
   * const reader = MqGroup.open(`${dir}/g`, { readOnly: true });
   * writer.write("0", "one\n");
   * assert.equal(reader.next, 0); // not looked yet
   * reader.refresh();
   * assert.equal(reader.next, 1);
   * reader.close();
   * writer.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  refresh(): void {
    this.#assertOpen();
    // Holding the lock since the last sync: only this process has committed since.
    if (this.#held && (this.#synced || this.#resume)) return;
    this.#index.read(this.#lockDepth > 0);
  }

  /** The next global sequence number (messages committed so far). */
  get next(): number {
    return this.#index.next;
  }

  // ---------------------------------------------------------------- writing

  /**
   * Writes one message to a stream (creating the stream if needed). A zero-length message
   * is EOF for the stream's readers.
   *
   * @param stream The stream's name.
   * @param data The message.
   * @param options Whether to keep `order` (always, except to measure its cost).
   * @returns The message's place in the group's order.
   * @throws {FsbusError} For a bad stream name (`order`, names with "/", ...).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * assert.deepEqual(g.write("0", "ls\n"), { seq: 0, stream: "0" });
   * assert.deepEqual(g.write("0", new Uint8Array()), { seq: 1, stream: "0" }); // EOF for readers of "0"
   * assert.equal(Deno.readTextFileSync(`${dir}/g/0`), "ls\n");
   * assert.equal(Deno.readTextFileSync(`${dir}/g/order`), "0\u00000\u0000");
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  write(stream: string, data: Uint8Array | string, options: WriteOptions = {}): WriteResult {
    // A name checks the same every time: the last one found good is not checked again.
    if (stream !== this.#goodName) {
      checkStreamName(this.path, stream, true);
      this.#goodName = stream;
    }
    const bytes = toBytes(data);
    return this.#withLock(() => {
      // Holding the lock across writes (holdLock), one sync when it was taken is enough.
      const synced = this.#held && this.#synced;
      if (synced) {
        // up to date since the lock was taken
      } else if (this.#resume) this.#catchUpLive();
      else this.#syncLocked(false);
      const s = this.#streams.forWrite(stream);
      // Foreign appends to the stream come first (the sync just looked at live streams).
      const t = !synced && this.#caught.has(s) ? s : this.#catchUp(s);
      if (this.#caught.size > 0) this.#caught.clear();
      const seq = this.#appendMessage(t, bytes, options.order !== false);
      this.#index.trimLocked(this.#settings.current.depth);
      return { seq, stream };
    });
  }

  /**
   * Makes a stream (an empty file in the group) if it does not exist, as `create` on mq.
   *
   * @param stream The stream's name.
   * @throws {FsbusError} For a bad stream name.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.createStream("note");
   * assert.deepEqual(g.streamNames(), ["note"]);
   * assert.equal(g.stream("note")?.count, 0);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  createStream(stream: string): void {
    checkStreamName(this.path, stream, true);
    this.#withLock(() => {
      this.#syncLocked(false);
      this.#streamForWrite(stream);
    });
  }

  #streamForWrite(name: string): StreamState {
    return this.#catchUp(this.#streams.forWrite(name));
  }

  /** Steps 1 to 4 of a write (see the module doc), under the lock. */
  #appendMessage(s: StreamState, data: Uint8Array, withOrder: boolean): number {
    const index = this.#index;
    const length = data.length;
    let r = index.nextRecord(s, length, index.dataCrc(data));
    // 1. intent
    index.writeIntent(r);
    // 2. the bytes, in one O_APPEND write
    if (length > 0) {
      writeAllFd(s.fd, data);
      const offset = fdPosition(s.fd) - length;
      if (offset < s.end) {
        // The stream was truncated (by a plain program: `: > s`, `truncate`) between our
        // check and our write: our bytes landed at its new end of file. As the check would
        // have found: a new incarnation, whose first message is what the program wrote before
        // ours (if anything), then ours, where it is.
        s = this.#streams.renew(s);
        if (offset > 0) index.commitForeign(s, 0, offset);
        r = index.nextRecord(s, length, r.dataCrc);
        index.writeIntent(r);
      } else if (offset > s.end) {
        // A foreign append landed between our check and our write: it comes first.
        const gap = offset - s.end;
        r.seq++;
        r.offset = offset;
        r.local++;
        r.cum += gap;
        r.order += s.orderEntry.length;
        index.writeIntent(r);
        index.commitForeign(s, s.end, gap);
      }
    }
    // Readers in this process take the bytes from memory (a small message only).
    if (this.#streams.localReaders > 0 && length > 0 && length <= KEEP_WRITTEN) {
      s.written = data.slice();
      s.writtenAt = r.offset;
    }
    // 3. order, 4. commit
    if (withOrder) index.writeOrder(s, r.order);
    r.state = COMMITTED;
    index.commit(s, r);
    return r.seq;
  }

  // ---------------------------------------------------------------- settings (ctl)

  /** The group's settings, after applying anything a shell wrote to `ctl`. */
  get settings(): Settings {
    this.checkCtl();
    return this.#settings.current;
  }

  /**
   * Reads `ctl` and, if something other than its canonical text is there (a shell wrote
   * to it), applies it under the lock, or rejects it (restoring `ctl`) when mq would.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * Deno.writeTextFileSync(`${dir}/g/ctl`, "replay all\n"); // as `echo replay all > g/ctl`
   * g.checkCtl();
   * assert.equal(g.settings.replay, "all");
   * assert.equal(Deno.readTextFileSync(`${dir}/g/ctl`), "data message\nreplay all\n");
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  checkCtl(): void {
    if (!this.#settings.changed()) return;
    if (this.writable) this.#withLock(() => this.#settings.checkLocked());
    else this.#settings.loadReadOnly();
  }

  /**
   * Applies control messages, as a write to mq's `ctl`: `data message|coalesce`,
   * `replay off|last|all` (`on` = all), `depth COUNT|SIZE[K|M|G]` (0 = unlimited).
   *
   * @param commands One or more messages, one per line.
   * @returns The new settings.
   * @throws {FsbusError} With mq's usage message (`usage: replay off|last|all`); nothing
   *   is changed then.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * assert.equal(g.ctl("replay all").replay, "all");
   * assert.deepEqual(g.ctl("depth 100").depth, { kind: "count", count: 100 });
   * assert.throws(() => g.ctl("replay sometimes"), /usage: replay off\|last\|all/);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  ctl(commands: string): Settings {
    return this.#withLock(() => {
      this.#settings.checkLocked();
      const s = applyCommands(commands, this.#settings.current);
      this.#settings.store(s);
      this.#index.trimLocked(s.depth);
      return s;
    });
  }

  /**
   * Takes (and clears) the last rejected `ctl` text a shell wrote, with mq's reason.
   *
   * @returns The message, or undefined when nothing was rejected.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * Deno.writeTextFileSync(`${dir}/g/ctl`, "replay sometimes\n"); // a shell's bad write
   * g.checkCtl(); // rejected: ctl is restored
   * assert.equal(g.takeRejected(), '"replay sometimes": usage: replay off|last|all');
   * assert.equal(g.takeRejected(), undefined);
   * assert.equal(g.settings.replay, "off");
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  takeRejected(): string | undefined {
    return this.#settings.takeRejected();
  }

  // ---------------------------------------------------------------- streams

  /**
   * The names of the group's streams now.
   *
   * @returns The names, sorted.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("1", "b");
   * g.write("0", "a");
   * assert.deepEqual(g.streamNames(), ["0", "1"]);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  streamNames(): string[] {
    this.sync();
    return [...this.#streams.live.keys()].sort();
  }

  /**
   * What the group knows of a stream now (undefined when there is none).
   *
   * @param name The stream's name.
   * @returns Its size, message count, last sequence number.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("0", "a");
   * g.write("0", "bc");
   * assert.equal(g.stream("0")?.count, 2);
   * assert.equal(g.stream("0")?.end, 3);
   * assert.equal(g.stream("1"), undefined);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  stream(name: string): StreamInfo | undefined {
    const s = this.#streams.live.get(name);
    return s && this.#streams.ensureFd(s) ? s : undefined;
  }

  /**
   * Removes a stream's file: its readers get EOF once they have read what was written.
   *
   * @param name The stream.
   * @throws {FsbusError} When there is no such stream.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("0", "x");
   * g.remove("0"); // its readers get EOF
   * assert.deepEqual(g.streamNames(), []);
   * assert.throws(() => g.remove("0"), /no such file or directory/);
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  remove(name: string): void {
    checkStreamName(this.path, name, true);
    if (!this.#dir.remove("group", name)) {
      throw new FsbusError(
        "not_found",
        `Cannot remove stream "${this.path}/${name}": no such file or directory`,
      );
    }
    this.sync();
  }

  /** Closes every descriptor. Safe to call more than once. */
  close(): void {
    if (this.#fds.disposed) return;
    this.#held = false;
    this.#lockDepth = 0;
    this.#caught.clear();
    this.#index.close();
    this.#fds.dispose();
    this.#streams.close();
  }

  /** Closes the group. */
  [Symbol.dispose](): void {
    this.close();
  }
}
