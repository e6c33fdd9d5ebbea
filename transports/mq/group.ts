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
 * group/.mq/streams    one line "INODE\tNAME\n" per stream incarnation; the line is its id
 * group/.mq/settings   the canonical ctl text, so a shell's partial rewrite of ctl can be
 *                      applied on top of it
 * group/.mq/rejected   the last ctl text a shell wrote that mq would reject, with the reason
 * ```
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
 * The index is the commit point: readers deliver only records in the index, and a record
 * gets there only after its bytes are in the stream, so no reader ever sees part of a
 * message. A record is appended with one write at the end of the file, and a reader cannot
 * see the new size before the bytes are copied, so records are never seen half-written
 * either. Readers need no lock, and wake once per commit (they watch the index, not the
 * streams' modifications).
 *
 * ## Foreign appends and torn writes
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
 * @module
 */

import { fromFsError, FsbusError, toBytes } from "../../types.ts";
import { SysError } from "../../sys/errno.ts";
import { closeFd, fstat, O, openFd, statPath, writeAllFd } from "../../sys/fs.ts";
import {
  fdMtimeUs,
  fdPosition,
  fdSize,
  lockFd,
  preadFd,
  preadFull,
  punchHole,
  pwriteAll,
  truncateTo,
  unlockFd,
} from "../../sys/fd_io.ts";
import { applyCommands, DEFAULT_SETTINGS, parseDepth, renderCtl, type Settings } from "./_ctl.ts";
import {
  COMMITTED,
  decodeRecord,
  encodeRecord,
  FLAG_FOREIGN,
  H_CUTOFF,
  HEADER,
  INTENT,
  MAGIC,
  R,
  RECORD,
  type RecordFields,
  setU64,
  u64,
} from "./_layout.ts";

export type { DataMode, Depth, ReplayMode, Settings } from "./_ctl.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CHUNK_RECORDS = 1024;
const PUNCH_MIN = 64 * 1024;
const PAGE = 4096;
const READAHEAD = 256 * 1024;
const RECENT_US = 50_000;

/** What the engine knows about one stream incarnation (a name bound to one inode). */
export interface StreamState {
  /** The id: its line number in `.mq/streams`. */
  readonly id: number;
  /** The file name. */
  readonly name: string;
  /** The name plus NUL, as `order` records it. */
  readonly orderEntry: Uint8Array;
  /** The inode this incarnation is bound to. */
  readonly ino: bigint;
  /** An open descriptor (read/write, append), or -1. */
  fd: number;
  /** The end of the last indexed message in the file. */
  end: number;
  /** How many messages have been indexed. */
  count: number;
  /** The global sequence number of the last indexed message, or -1. */
  lastSeq: number;
  /** Whether the file was removed (or replaced): readers get EOF once caught up. */
  removed: boolean;
  /** The end of the last message below the cutoff (the writer punches up to it). */
  cutEnd: number;
  /** How far this process has punched holes. */
  punched: number;
  /** A read-ahead buffer of the file. */
  cache: Uint8Array | undefined;
  /** The file offset the read-ahead buffer starts at. */
  cacheAt: number;
}

/** What a write produced. */
export interface WriteResult {
  /** The message's place in the group's global order. */
  seq: number;
  /** The stream the message went to. */
  stream: string;
}

/** Options for {@linkcode MqGroup.create}. */
export interface CreateOptions {
  /** Where readers start unless they choose (default "off"). */
  replay?: Settings["replay"];
  /** How readers see messages (default "message"). */
  data?: Settings["data"];
  /** Depth: a count, a size such as "64K", or 0 for unlimited. */
  depth?: string | number;
  /** Succeed, changing nothing, when the group exists already. */
  existOk?: boolean;
}

/** Options for {@linkcode MqGroup.write}. */
export interface WriteOptions {
  /** Whether to append to `order` (default true; false only for measuring its cost). */
  order?: boolean;
}

/**
 * Checks a stream name: not empty, no "/", NUL, tab or newline, not starting with ".",
 * and not one of the group's own files.
 *
 * @param group The group's path, for the message.
 * @param name The name.
 * @param forWrite Whether the stream is to be written (then `order` is refused too).
 * @throws {FsbusError} With what is wrong.
 *
 * @example
 * ```ts
 * import { checkStreamName } from "./group.ts";
 * checkStreamName("/dev/shm/g", "0", true);
 * ```
 */
export function checkStreamName(group: string, name: string, forWrite: boolean): void {
  if (name === "" || name === "." || name === "..") {
    throw new FsbusError("invalid", `Invalid stream name "${name}" in "${group}"`);
  }
  if (name.includes("/")) {
    throw new FsbusError(
      "invalid",
      `Invalid stream name "${name}" in "${group}": a stream name cannot contain "/"`,
    );
  }
  if (/[\0\n\t]/.test(name)) {
    throw new FsbusError(
      "invalid",
      `Invalid stream name ${JSON.stringify(name)} in "${group}": no NUL, tab or newline`,
    );
  }
  if (name.startsWith(".")) {
    throw new FsbusError(
      "invalid",
      `Invalid stream name "${name}" in "${group}": names starting with "." are reserved`,
    );
  }
  if (name === "ctl") {
    throw new FsbusError(
      "invalid",
      `"ctl" of "${group}" is the control file, not a stream (use "fsbus mq ctl")`,
    );
  }
  if (name === "order" && forWrite) {
    throw new FsbusError(
      "invalid",
      `Cannot write to "order" of "${group}": order is written by the group itself`,
    );
  }
}

function isStreamName(name: string): boolean {
  return name !== "" && !name.startsWith(".") && name !== "ctl" && name !== "order" &&
    !/[\0\n\t/]/.test(name);
}

function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

function openOrThrow(path: string, flags: number, action: string): number {
  try {
    return openFd(path, flags);
  } catch (err) {
    throw sysToFsbus(err, action, path);
  }
}

function sysToFsbus(err: unknown, action: string, path: string): FsbusError {
  if (err instanceof SysError) {
    const code = err.errno === 2
      ? "not_found"
      : err.errno === 13
      ? "permission_denied"
      : err.errno === 21
      ? "is_a_directory"
      : err.errno === 20
      ? "not_a_directory"
      : "io";
    const why = err.errno === 40 ? "is a symbolic link" : err.message.replace(/^.*?: /, "");
    return new FsbusError(code, `${action} "${path}": ${why}`, { cause: err });
  }
  return fromFsError(err, action, path);
}

/**
 * An open mq group: write messages, change settings, and (through `reader.ts`) read them.
 *
 * All methods are synchronous and safe against other processes using the same group at the
 * same time; one instance is meant for one thread.
 *
 * @example Make a group, write to two streams, list them
 * ```ts ignore
 * import { MqGroup } from "./group.ts";
 * const g = MqGroup.create("/dev/shm/g", { replay: "all" });
 * g.write("0", "hello\n");
 * g.write("1", "world\n");
 * console.log(g.streamNames()); // ["0", "1"]
 * g.close();
 * ```
 */
export class MqGroup {
  /** The group's directory. */
  readonly path: string;
  readonly #lockFd: number;
  readonly #indexFd: number;
  readonly #orderFd: number;
  readonly #ctlFd: number;
  readonly #namesFd: number;
  readonly #dirFd: number;
  readonly #intentFd: number;
  #closed = false;
  #lockDepth = 0;

  /** The next global sequence number (= committed messages, including trimmed ones). */
  #next = 0;
  #cum = 0;
  #orderEnd = 0;
  #cutoff = 0;
  #indexPunched = HEADER;
  #orderPunched = 0;
  readonly #intentBuf = new Uint8Array(RECORD);
  readonly #intentView = new DataView(this.#intentBuf.buffer);

  readonly #streams: StreamState[] = [];
  readonly #live = new Map<string, StreamState>();
  #namesRead = 0;
  #dirMtime = -1;

  #settings: Settings = DEFAULT_SETTINGS;
  #ctlBytes: Uint8Array = encoder.encode(renderCtl(DEFAULT_SETTINGS));
  readonly #ctlBuf = new Uint8Array(4096);

  readonly #chunk = new Uint8Array(CHUNK_RECORDS * RECORD);
  readonly #chunkView = new DataView(this.#chunk.buffer);
  /** What #chunk holds after the last index read: records [#chunkSeq, +#chunkCount). */
  #chunkSeq = 0;
  #chunkCount = 0;
  readonly #rec = new Uint8Array(RECORD);
  readonly #recView = new DataView(this.#rec.buffer);
  readonly #word = new Uint8Array(8);
  readonly #wordView = new DataView(this.#word.buffer);

  private constructor(path: string) {
    this.path = path;
    const meta = `${path}/.mq`;
    const rw = O.RDWR | O.CREAT | O.NOFOLLOW;
    const fds: number[] = [];
    try {
      fds.push(openOrThrow(`${meta}/lock`, rw, "Cannot open group"));
      fds.push(openOrThrow(`${meta}/index`, rw, "Cannot open group"));
      fds.push(openOrThrow(`${path}/order`, rw, "Cannot open group"));
      fds.push(openOrThrow(`${path}/ctl`, O.RDWR | O.NOFOLLOW, "Cannot open group"));
      fds.push(openOrThrow(`${meta}/streams`, rw, "Cannot open group"));
      fds.push(openOrThrow(path, O.RDONLY | O.DIRECTORY, "Cannot open group"));
      fds.push(openOrThrow(`${meta}/intent`, rw, "Cannot open group"));
    } catch (err) {
      fds.forEach(closeFd);
      throw err;
    }
    [
      this.#lockFd,
      this.#indexFd,
      this.#orderFd,
      this.#ctlFd,
      this.#namesFd,
      this.#dirFd,
      this.#intentFd,
    ] = fds as [number, number, number, number, number, number, number];
  }

  /**
   * Opens an existing group (a directory holding `ctl`).
   *
   * @param path The group's directory.
   * @returns The open group, up to date (foreign appends indexed, torn writes undone).
   * @throws {FsbusError} `not_found` when there is no such group.
   *
   * @example
   * ```ts ignore
   * import { MqGroup } from "./group.ts";
   * const g = MqGroup.open("/dev/shm/g");
   * ```
   */
  static open(path: string): MqGroup {
    const dir = path.replace(/(.)\/+$/, "$1");
    const st = statPath(dir);
    if (st === undefined) {
      throw new FsbusError("not_found", `Cannot open group "${dir}": no such directory`);
    }
    if (st.kind !== "directory") {
      throw new FsbusError("not_a_directory", `Cannot open group "${dir}": not a directory`);
    }
    const ctl = statPath(`${dir}/ctl`);
    if (ctl === undefined || ctl.kind !== "file") {
      throw new FsbusError(
        "not_found",
        `Cannot open group "${dir}": not an mq group (no "ctl"; see "fsbus mq mkgroup")`,
      );
    }
    try {
      Deno.mkdirSync(`${dir}/.mq`, { recursive: true });
    } catch (err) {
      throw fromFsError(err, "Cannot open group", dir);
    }
    const g = new MqGroup(dir);
    try {
      g.#withLock(() => g.#init());
    } catch (err) {
      g.close();
      throw err;
    }
    return g;
  }

  /**
   * Makes a group (and its parent directories), with `ctl`, `order` and its hidden index.
   *
   * @param path The directory to make a group of.
   * @param options The initial settings.
   * @returns The open group.
   * @throws {FsbusError} `already_exists` when it is a group already (unless `existOk`),
   *   `invalid` for a bad depth.
   *
   * @example
   * ```ts ignore
   * import { MqGroup } from "./group.ts";
   * const g = MqGroup.create("/dev/shm/g", { replay: "all", depth: "64K" });
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
      if (options.existOk) return MqGroup.open(dir);
      throw new FsbusError("already_exists", `Cannot make group "${dir}": already a group`);
    }
    try {
      Deno.mkdirSync(`${dir}/.mq`, { recursive: true });
      const text = renderCtl(settings);
      Deno.writeTextFileSync(`${dir}/.mq/settings`, text);
      Deno.writeFileSync(`${dir}/order`, new Uint8Array(), { append: true });
      // ctl last: its presence is what makes the directory a group.
      Deno.writeTextFileSync(`${dir}/ctl.tmp~`, text);
      Deno.renameSync(`${dir}/ctl.tmp~`, `${dir}/ctl`);
    } catch (err) {
      throw fromFsError(err, "Cannot make group", dir);
    }
    return MqGroup.open(dir);
  }

  #init(): void {
    if (fdSize(this.#indexFd) < HEADER) {
      const header = new Uint8Array(HEADER);
      header.set(MAGIC);
      pwriteAll(this.#indexFd, header, 0);
    } else {
      preadFull(this.#indexFd, this.#word, 0);
      for (let i = 0; i < MAGIC.length; i++) {
        if (this.#word[i] !== MAGIC[i]) {
          throw new FsbusError(
            "invalid",
            `Cannot open group "${this.path}": ".mq/index" is not an fsbus mq index`,
          );
        }
      }
    }
    this.#loadSettingsLocked();
    this.#syncLocked(true);
    // Bytes in `order` past the last committed record come from a writer that died
    // before committing; they are not part of the order.
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    // Start trimming from the cutoff the header holds.
    this.#cutoff = this.readCutoff();
  }

  // ---------------------------------------------------------------- locking and sync

  #withLock<T>(fn: () => T): T {
    this.#assertOpen();
    if (this.#lockDepth > 0) return fn();
    lockFd(this.#lockFd);
    this.#lockDepth++;
    try {
      return fn();
    } finally {
      this.#lockDepth--;
      unlockFd(this.#lockFd);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new FsbusError("closed", `Group "${this.path}" is closed`);
  }

  /**
   * Brings the group up to date under its lock: indexes foreign appends and new streams,
   * undoes torn writes of dead writers, applies a `ctl` rewritten by a shell.
   *
   * @example
   * ```ts ignore
   * g.sync(); // after `echo hi >> group/0`, the message is now in the order
   * ```
   */
  sync(): void {
    this.#withLock(() => this.#syncLocked(false));
  }

  #syncLocked(forceScan: boolean): void {
    this.#readIndex(true);
    this.#checkCtlLocked();
    this.#scanDir(forceScan);
    for (const s of this.#live.values()) {
      if (!this.#ensureFd(s)) continue;
      const size = fdSize(s.fd);
      if (size > s.end) this.#appendForeign(s, size - s.end);
      else if (size < s.end) s.end = size; // truncated behind our back: carry on from there
    }
  }

  /**
   * Reads index records committed since the last look. The index only ever grows by whole
   * committed records appended at its end (a reader cannot see an append before its bytes
   * are copied, since the file size moves after the copy). With the lock held, a write that
   * a dead writer left half done is then recovered from `.mq/intent`.
   */
  #readIndex(locked: boolean): void {
    const c = this.#chunk;
    const v = this.#chunkView;
    for (;;) {
      const at = HEADER + this.#next * RECORD;
      const n = preadFd(this.#indexFd, c, at);
      const whole = Math.floor(n / RECORD);
      let i = 0;
      this.#chunkSeq = this.#next;
      for (; i < whole; i++) {
        const o = i * RECORD;
        if (c[o + R.STATE] !== COMMITTED || u64(v, o + R.SEQ) !== this.#next) break;
        this.#apply(v, o);
      }
      this.#chunkCount = i;
      if (i < whole || whole < CHUNK_RECORDS) {
        // Anything after the last good record is garbage: only the lock holder cleans up.
        if (locked && (i < whole || n % RECORD !== 0)) {
          truncateTo(this.#indexFd, at + i * RECORD);
        }
        break;
      }
    }
    if (locked) this.#recoverIntent();
  }

  #apply(v: DataView, o: number): void {
    const id = v.getUint32(o + R.STREAM, true);
    const length = u64(v, o + R.LENGTH);
    let s = this.#streams[id];
    if (s === undefined) {
      this.#readNames(this.#lockDepth > 0);
      s = this.#streams[id];
    }
    const seq = this.#next;
    this.#next = seq + 1;
    this.#cum = u64(v, o + R.CUM) + length;
    if (s === undefined) {
      // A record for a stream this process cannot name yet: keep counting.
      this.#orderEnd = u64(v, o + R.ORDER);
      return;
    }
    this.#orderEnd = u64(v, o + R.ORDER) + s.orderEntry.length;
    const end = u64(v, o + R.OFFSET) + length;
    if (end > s.end) s.end = end;
    s.count = u64(v, o + R.LOCAL) + 1;
    s.lastSeq = seq;
  }

  /** Reads `.mq/intent`: the write in progress (or left by a dead writer), if any. */
  #readIntent(): RecordFields | undefined {
    if (preadFd(this.#intentFd, this.#intentBuf, 0) < RECORD) return undefined;
    const r = decodeRecord(this.#intentView, 0);
    return r.state === INTENT && r.seq === this.#next ? r : undefined;
  }

  /**
   * Whether a write is in progress now (its intent names the next sequence number). A dead
   * writer's intent also counts, until the next lock holder recovers it.
   *
   * @returns True when a writer is between its intent and its commit.
   */
  writeInProgress(): boolean {
    return this.#readIntent() !== undefined;
  }

  /** Under the lock: finish or undo the write a dead writer left (see the module doc). */
  #recoverIntent(): void {
    const r = this.#readIntent();
    if (r === undefined) return;
    const s = this.#streams[r.stream] ?? (this.#readNames(true), this.#streams[r.stream]);
    if (s !== undefined && this.#ensureFd(s) && r.offset === s.end) {
      if (fdSize(s.fd) >= r.offset + r.length) {
        // The whole message reached the stream: the writer died after its data. Commit it.
        pwriteAll(this.#orderFd, s.orderEntry, r.order);
        this.#commitRecord(s, { ...r, state: COMMITTED });
      } else {
        // Torn: cut the stream back to where the message started.
        truncateTo(s.fd, r.offset);
      }
    }
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    const settled = new Uint8Array([COMMITTED]); // never look at this intent again
    pwriteAll(this.#intentFd, settled, R.STATE);
  }

  /** Appends a committed record at the end of the index and applies it. */
  #commitRecord(s: StreamState, r: RecordFields): void {
    pwriteAll(this.#indexFd, this.#record(r), HEADER + r.seq * RECORD);
    this.#next = r.seq + 1;
    this.#cum = r.cum + r.length;
    this.#orderEnd = r.order + s.orderEntry.length;
    s.end = r.offset + r.length;
    s.count = r.local + 1;
    s.lastSeq = r.seq;
  }

  // ---------------------------------------------------------------- streams

  /** Reads incarnations added to `.mq/streams` since the last look. */
  #readNames(locked: boolean): void {
    const size = fdSize(this.#namesFd);
    if (size <= this.#namesRead) return;
    const buf = new Uint8Array(size - this.#namesRead);
    const n = preadFull(this.#namesFd, buf, this.#namesRead);
    const text = decoder.decode(buf.subarray(0, n));
    const lastNl = text.lastIndexOf("\n");
    if (lastNl < 0) {
      if (locked) truncateTo(this.#namesFd, this.#namesRead);
      return;
    }
    const complete = text.slice(0, lastNl + 1);
    for (const line of complete.split("\n")) {
      if (line === "") continue;
      const tab = line.indexOf("\t");
      const ino = BigInt(line.slice(0, tab));
      const name = line.slice(tab + 1);
      this.#addIncarnation(name, ino, -1);
    }
    this.#namesRead += encoder.encode(complete).length;
    if (locked && this.#namesRead < size && lastNl + 1 < text.length) {
      truncateTo(this.#namesFd, this.#namesRead);
    }
  }

  #addIncarnation(name: string, ino: bigint, fd: number): StreamState {
    const old = this.#live.get(name);
    if (old) old.removed = true;
    const s: StreamState = {
      id: this.#streams.length,
      name,
      orderEntry: encoder.encode(name + "\0"),
      ino,
      fd,
      end: 0,
      count: 0,
      lastSeq: -1,
      removed: false,
      cutEnd: 0,
      punched: 0,
      cache: undefined,
      cacheAt: 0,
    };
    this.#streams.push(s);
    this.#live.set(name, s);
    return s;
  }

  /** Appends an incarnation to `.mq/streams` (under the lock). */
  #register(name: string, fd: number, ino: bigint): StreamState {
    this.#readNames(true);
    const known = this.#live.get(name);
    if (known && known.ino === ino && !known.removed) {
      if (known.fd < 0) known.fd = fd;
      else if (known.fd !== fd) closeFd(fd);
      return known;
    }
    const line = encoder.encode(`${ino}\t${name}\n`);
    pwriteAll(this.#namesFd, line, this.#namesRead);
    this.#namesRead += line.length;
    return this.#addIncarnation(name, ino, fd);
  }

  /** Opens a stream's file if needed; marks it removed when its inode is gone. */
  #ensureFd(s: StreamState): boolean {
    if (s.fd >= 0) return !s.removed;
    if (s.removed) return false;
    let fd: number;
    try {
      fd = openFd(`${this.path}/${s.name}`, O.RDWR | O.APPEND | O.NOFOLLOW);
    } catch {
      s.removed = true;
      if (this.#live.get(s.name) === s) this.#live.delete(s.name);
      return false;
    }
    if (fstat(fd).ino !== s.ino) {
      closeFd(fd);
      s.removed = true;
      if (this.#live.get(s.name) === s) this.#live.delete(s.name);
      return false;
    }
    s.fd = fd;
    return true;
  }

  /** Notices streams created, removed or replaced by anyone (under the lock). */
  #scanDir(force: boolean): void {
    // The cheap check first: has the directory changed (or changed so recently that the
    // kernel's coarse timestamps could hide a second change)?
    const mtime = fdMtimeUs(this.#dirFd);
    if (!force && mtime === this.#dirMtime && Date.now() * 1000 - mtime > RECENT_US) return;
    const st = statPath(this.path);
    if (st === undefined || st.kind !== "directory") {
      for (const s of this.#live.values()) s.removed = true;
      this.#live.clear();
      return;
    }
    this.#readNames(true);
    const seen = new Set<string>();
    for (const e of Deno.readDirSync(this.path)) {
      if (!e.isFile || !isStreamName(e.name)) continue;
      seen.add(e.name);
      const s = this.#live.get(e.name);
      const path = `${this.path}/${e.name}`;
      if (s && !s.removed) {
        const cur = statPath(path);
        if (cur !== undefined && cur.ino === s.ino) {
          this.#ensureFd(s);
          continue;
        }
        s.removed = true;
      }
      let fd: number;
      try {
        fd = openFd(path, O.RDWR | O.APPEND | O.NOFOLLOW);
      } catch {
        continue; // gone again, or not ours to write
      }
      this.#register(e.name, fd, fstat(fd).ino);
    }
    for (const [name, s] of this.#live) {
      if (!seen.has(name)) {
        s.removed = true;
        this.#live.delete(name);
      }
    }
    this.#dirMtime = mtime;
  }

  #streamForWrite(name: string): StreamState {
    const s = this.#live.get(name);
    if (s && this.#ensureFd(s)) return s;
    const path = `${this.path}/${name}`;
    const fd = openOrThrow(
      path,
      O.RDWR | O.APPEND | O.CREAT | O.NOFOLLOW,
      "Cannot write to stream",
    );
    const st = fstat(fd);
    if (st.kind !== "file") {
      closeFd(fd);
      throw new FsbusError("invalid", `Cannot write to stream "${path}": not a regular file`);
    }
    const fresh = this.#register(name, fd, st.ino);
    const size = fdSize(fresh.fd);
    if (size > fresh.end) this.#appendForeign(fresh, size - fresh.end);
    return fresh;
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
   * ```ts ignore
   * g.write("0", "ls\n");
   * g.write("0", new Uint8Array()); // EOF for readers of "0"
   * ```
   */
  write(stream: string, data: Uint8Array | string, options: WriteOptions = {}): WriteResult {
    checkStreamName(this.path, stream, true);
    const bytes = toBytes(data);
    return this.#withLock(() => {
      this.#syncLocked(false);
      const s = this.#streamForWrite(stream);
      const seq = this.#appendMessage(s, bytes, options.order !== false);
      this.#trimLocked();
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
   * ```ts ignore
   * g.createStream("note");
   * ```
   */
  createStream(stream: string): void {
    checkStreamName(this.path, stream, true);
    this.#withLock(() => {
      this.#syncLocked(false);
      this.#streamForWrite(stream);
    });
  }

  #record(r: RecordFields): Uint8Array {
    encodeRecord(this.#recView, 0, r);
    return this.#rec;
  }

  #appendMessage(s: StreamState, data: Uint8Array, withOrder: boolean): number {
    const length = data.length;
    const r: RecordFields = {
      state: INTENT,
      flags: 0,
      stream: s.id,
      seq: this.#next,
      offset: s.end,
      length,
      local: s.count,
      timeUs: nowUs(),
      cum: this.#cum,
      order: this.#orderEnd,
    };
    // 1. intent
    pwriteAll(this.#intentFd, this.#record(r), 0);
    // 2. the bytes, in one O_APPEND write
    if (length > 0) {
      writeAllFd(s.fd, data);
      const offset = fdPosition(s.fd) - length;
      if (offset > s.end) {
        // A foreign append landed between our check and our write: it comes first.
        const gap = offset - s.end;
        r.seq++;
        r.offset = offset;
        r.local++;
        r.cum += gap;
        r.order += s.orderEntry.length;
        pwriteAll(this.#intentFd, this.#record(r), 0);
        this.#commitForeign(s, s.end, gap);
      }
    }
    // 3. order, 4. commit
    if (withOrder) pwriteAll(this.#orderFd, s.orderEntry, this.#orderEnd);
    r.state = COMMITTED;
    this.#commitRecord(s, r);
    return r.seq;
  }

  /** Indexes bytes appended by a program that knows nothing of fsbus (under the lock). */
  #appendForeign(s: StreamState, length: number): void {
    this.#commitForeign(s, s.end, length);
  }

  #commitForeign(s: StreamState, offset: number, length: number): void {
    pwriteAll(this.#orderFd, s.orderEntry, this.#orderEnd);
    this.#commitRecord(s, {
      state: COMMITTED,
      flags: FLAG_FOREIGN,
      stream: s.id,
      seq: this.#next,
      offset,
      length,
      local: s.count,
      timeUs: nowUs(),
      cum: this.#cum,
      order: this.#orderEnd,
    });
  }

  // ---------------------------------------------------------------- depth

  /** Moves the cutoff so the newest COUNT messages or SIZE bytes remain; frees pages. */
  #trimLocked(): void {
    const depth = this.#settings.depth;
    if (depth.kind === "none" || this.#next === 0) return;
    // Never move the cutoff back (another process may have moved it, or depth grew).
    this.#cutoff = Math.max(this.#cutoff, this.readCutoff());
    const from = this.#cutoff;
    let cut = from;
    this.#chunkCount = 0; // #chunk is reused below
    const c = this.#chunk;
    const v = this.#chunkView;
    let orderCut = -1;
    scan: while (cut < this.#next - 1) {
      const n = preadFd(this.#indexFd, c, HEADER + cut * RECORD);
      const whole = Math.floor(n / RECORD);
      if (whole === 0) break;
      for (let i = 0; i < whole; i++) {
        const o = i * RECORD;
        const seq = cut;
        if (seq >= this.#next - 1) break scan;
        const keep = depth.kind === "count"
          ? this.#next - seq <= depth.count
          : this.#cum - u64(v, o + R.CUM) <= depth.bytes;
        if (keep) {
          orderCut = u64(v, o + R.ORDER);
          break scan;
        }
        const s = this.#streams[v.getUint32(o + R.STREAM, true)];
        if (s) s.cutEnd = u64(v, o + R.OFFSET) + u64(v, o + R.LENGTH);
        cut++;
      }
    }
    if (cut <= from) return;
    setU64(this.#wordView, 0, cut);
    pwriteAll(this.#indexFd, this.#word, H_CUTOFF);
    this.#cutoff = cut;
    // Free whole pages below the cutoff, 64 KiB at a time at least.
    for (const s of this.#streams) {
      if (s.fd < 0) continue;
      const to = Math.floor(s.cutEnd / PAGE) * PAGE;
      if (to - s.punched >= PUNCH_MIN) {
        punchHole(s.fd, s.punched, to - s.punched);
        s.punched = to;
      }
    }
    const indexTo = Math.floor((HEADER + cut * RECORD) / PAGE) * PAGE;
    if (indexTo - this.#indexPunched >= PUNCH_MIN) {
      punchHole(this.#indexFd, this.#indexPunched, indexTo - this.#indexPunched);
      this.#indexPunched = indexTo;
    }
    const orderTo = Math.floor((orderCut < 0 ? this.#orderEnd : orderCut) / PAGE) * PAGE;
    if (orderTo - this.#orderPunched >= PUNCH_MIN) {
      punchHole(this.#orderFd, this.#orderPunched, orderTo - this.#orderPunched);
      this.#orderPunched = orderTo;
    }
  }

  // ---------------------------------------------------------------- settings (ctl)

  /** The group's settings, after applying anything a shell wrote to `ctl`. */
  get settings(): Settings {
    this.checkCtl();
    return this.#settings;
  }

  /**
   * Reads `ctl` and, if something other than its canonical text is there (a shell wrote
   * to it), applies it under the lock, or rejects it (restoring `ctl`) when mq would.
   *
   * @example
   * ```ts ignore
   * g.checkCtl(); // picks up `echo replay all > group/ctl`
   * ```
   */
  checkCtl(): void {
    if (this.#ctlChanged()) this.#withLock(() => this.#checkCtlLocked());
  }

  #ctlChanged(): boolean {
    const n = preadFd(this.#ctlFd, this.#ctlBuf, 0);
    if (n === 0) return false; // truncated by a shell that has not written yet
    if (n !== this.#ctlBytes.length) return true;
    for (let i = 0; i < n; i++) if (this.#ctlBuf[i] !== this.#ctlBytes[i]) return true;
    return false;
  }

  #loadSettingsLocked(): void {
    let text: string;
    try {
      text = Deno.readTextFileSync(`${this.path}/.mq/settings`);
    } catch {
      text = "";
    }
    let s: Settings;
    try {
      s = applyCommands(text, DEFAULT_SETTINGS);
    } catch {
      s = DEFAULT_SETTINGS;
    }
    this.#setSettings(s);
    this.#checkCtlLocked();
  }

  #setSettings(s: Settings): void {
    this.#settings = s;
    this.#ctlBytes = encoder.encode(renderCtl(s));
  }

  #checkCtlLocked(): void {
    if (!this.#ctlChanged()) return;
    // Another process may have changed the settings properly: look there first.
    let stored = this.#settings;
    try {
      stored = applyCommands(
        Deno.readTextFileSync(`${this.path}/.mq/settings`),
        DEFAULT_SETTINGS,
      );
    } catch {
      // keep ours
    }
    this.#setSettings(stored);
    if (!this.#ctlChanged()) return;
    const n = preadFd(this.#ctlFd, this.#ctlBuf, 0);
    if (n === 0) return;
    const text = decoder.decode(this.#ctlBuf.subarray(0, n));
    try {
      this.#storeSettings(applyCommands(text, stored));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      Deno.writeTextFileSync(
        `${this.path}/.mq/rejected`,
        `${JSON.stringify(text.trimEnd())}: ${why}\n`,
      );
      this.#storeSettings(stored);
    }
  }

  #storeSettings(s: Settings): void {
    this.#setSettings(s);
    const tmp = `${this.path}/.mq/settings.tmp`;
    Deno.writeTextFileSync(tmp, renderCtl(s));
    Deno.renameSync(tmp, `${this.path}/.mq/settings`);
    pwriteAll(this.#ctlFd, this.#ctlBytes, 0);
    truncateTo(this.#ctlFd, this.#ctlBytes.length);
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
   * ```ts ignore
   * g.ctl("replay all");
   * g.ctl("depth 64K");
   * ```
   */
  ctl(commands: string): Settings {
    return this.#withLock(() => {
      this.#checkCtlLocked();
      const s = applyCommands(commands, this.#settings);
      this.#storeSettings(s);
      this.#trimLocked();
      return s;
    });
  }

  /**
   * Takes (and clears) the last rejected `ctl` text a shell wrote, with mq's reason.
   *
   * @returns The message, or undefined when nothing was rejected.
   *
   * @example
   * ```ts ignore
   * const why = g.takeRejected(); // '"replay sometimes": usage: replay off|last|all'
   * ```
   */
  takeRejected(): string | undefined {
    const path = `${this.path}/.mq/rejected`;
    try {
      const text = Deno.readTextFileSync(path).trim();
      Deno.removeSync(path);
      return text || undefined;
    } catch {
      return undefined;
    }
  }

  // ---------------------------------------------------------------- for readers

  /** The names of the group's streams now. */
  streamNames(): string[] {
    this.sync();
    return [...this.#live.keys()].sort();
  }

  /**
   * The live incarnation of a stream, after a sync (undefined when there is none).
   *
   * @param name The stream's name.
   * @returns Its state.
   */
  stream(name: string): StreamState | undefined {
    const s = this.#live.get(name);
    return s && this.#ensureFd(s) ? s : undefined;
  }

  /**
   * A stream incarnation by id (readers keep ids).
   *
   * @param id The id.
   * @returns Its state.
   */
  streamById(id: number): StreamState | undefined {
    return this.#streams[id];
  }

  /** Every incarnation known, by id. */
  get allStreams(): readonly StreamState[] {
    return this.#streams;
  }

  /** The next global sequence number (messages committed so far). */
  get next(): number {
    return this.#next;
  }

  /**
   * Reads records committed since the last look, without the lock (for readers).
   *
   * @example
   * ```ts ignore
   * g.refresh();
   * console.log(g.next);
   * ```
   */
  refresh(): void {
    this.#assertOpen();
    this.#readIndex(this.#lockDepth > 0);
  }

  /**
   * Runs `fn` holding the group lock, after a sync.
   *
   * @param fn What to do.
   * @returns What `fn` returns.
   */
  locked<T>(fn: () => T): T {
    return this.#withLock(() => {
      this.#syncLocked(false);
      return fn();
    });
  }

  /**
   * The cutoff: the global sequence number below which history is trimmed.
   *
   * @returns The cutoff, from the index header.
   */
  readCutoff(): number {
    preadFull(this.#indexFd, this.#word, H_CUTOFF);
    return u64(this.#wordView, 0);
  }

  /**
   * The records the last index read brought in, when they include `seq` (live readers use
   * them instead of reading the index again).
   *
   * @param seq The first record wanted.
   * @returns A view, the byte offset of record `seq` in it, and how many records follow.
   */
  cachedRecords(seq: number): { view: DataView; at: number; count: number } | undefined {
    const rel = seq - this.#chunkSeq;
    if (rel < 0 || rel >= this.#chunkCount) return undefined;
    return { view: this.#chunkView, at: rel * RECORD, count: this.#chunkCount - rel };
  }

  /**
   * Reads records `[seq, seq + buf.length / RECORD)` into `buf`; only committed ones
   * below {@linkcode MqGroup.next} are meaningful.
   *
   * @param seq The first record.
   * @param buf Where to put them.
   * @returns How many whole records were read.
   */
  readRecords(seq: number, buf: Uint8Array): number {
    return Math.floor(preadFd(this.#indexFd, buf, HEADER + seq * RECORD) / RECORD);
  }

  /**
   * Reads a message's bytes from its stream, through a read-ahead buffer.
   *
   * @param s The stream.
   * @param offset Where the message starts.
   * @param length Its length.
   * @returns The bytes (a view the caller may keep).
   */
  readData(s: StreamState, offset: number, length: number): Uint8Array {
    if (length === 0) return new Uint8Array(0);
    const cache = s.cache;
    if (cache && offset >= s.cacheAt && offset + length <= s.cacheAt + cache.length) {
      return cache.subarray(offset - s.cacheAt, offset - s.cacheAt + length);
    }
    if (s.fd < 0) return new Uint8Array(length);
    const want = Math.max(length, Math.min(READAHEAD, s.end - offset));
    const buf = new Uint8Array(want);
    const got = preadFull(s.fd, buf, offset);
    s.cache = buf.subarray(0, got);
    s.cacheAt = offset;
    return got >= length ? buf.subarray(0, length) : buf.subarray(0, length);
  }

  /**
   * The local number of the first message of `id` at or after `seq`, or the stream's
   * count when there is none.
   *
   * @param id The stream's id.
   * @param seq Where to start looking.
   * @returns The local number.
   */
  firstLocalFrom(id: number, seq: number): number {
    const s = this.#streams[id];
    if (s === undefined) return 0;
    if (s.lastSeq < seq) return s.count;
    const buf = new Uint8Array(CHUNK_RECORDS * RECORD);
    const v = new DataView(buf.buffer);
    let at = seq;
    while (at < this.#next) {
      const n = this.readRecords(at, buf);
      if (n === 0) break;
      for (let i = 0; i < n && at < this.#next; i++, at++) {
        if (v.getUint32(i * RECORD + R.STREAM, true) === id) return u64(v, i * RECORD + R.LOCAL);
      }
    }
    return s.count;
  }

  /**
   * Removes a stream's file: its readers get EOF once they have read what was written.
   *
   * @param name The stream.
   * @throws {FsbusError} When there is no such stream.
   */
  remove(name: string): void {
    checkStreamName(this.path, name, true);
    try {
      Deno.removeSync(`${this.path}/${name}`);
    } catch (err) {
      throw fromFsError(err, "Cannot remove stream", `${this.path}/${name}`);
    }
    this.sync();
  }

  /** Closes every descriptor. Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (
      const fd of [
        this.#lockFd,
        this.#indexFd,
        this.#orderFd,
        this.#ctlFd,
        this.#namesFd,
        this.#dirFd,
        this.#intentFd,
      ]
    ) {
      closeFd(fd);
    }
    for (const s of this.#streams) {
      if (s.fd >= 0) closeFd(s.fd);
      s.fd = -1;
      s.cache = undefined;
    }
  }

  /** Closes the group. */
  [Symbol.dispose](): void {
    this.close();
  }
}
