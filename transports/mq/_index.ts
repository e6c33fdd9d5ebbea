/**
 * A group's index: `.mq/index` (a header page, then one record per committed message),
 * `.mq/intent` (the record of the write in progress) and `order` (a stream name and a NUL per
 * message). Reading records, recovering a dead writer's write, committing records, and the
 * depth cutoff with the hole punching that trims history (see group.ts for the protocol).
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { fdSize, preadFd, preadFull, punchHole, pwriteAll, truncateTo } from "../../sys/fd_io.ts";
import type { Depth } from "./_ctl.ts";
import { crc32 } from "./_crc32.ts";
import {
  COMMITTED,
  decodeRecord,
  encodeRecord,
  FLAG_FOREIGN,
  H_CUTOFF,
  HEADER,
  INTENT,
  MAGIC,
  MAGIC_V1,
  R,
  RECORD,
  type RecordFields,
  recordProblem,
  u64,
} from "./_layout.ts";
import { setU64 } from "../../sys/le64.ts";
import type { StreamState, StreamTable } from "./_streams.ts";
import type { GroupDir } from "./_files.ts";
import { type Mapping, mapShared } from "../../sys/mman.ts";
import { realtime } from "../../sys/clock.ts";
import { faultCounter, faultedIn, guardRange, unguardRange } from "../../sys/sigbus.ts";
import { type Checkpoint, readCheckpoint, writeCheckpoint } from "./_checkpoint.ts";

const CHUNK_RECORDS = 1024;
const PUNCH_MIN = 64 * 1024;
const PAGE = 4096;
const CRC_CHUNK = 256 * 1024;

/** The CRC-32 of the cutoff's eight bytes (format 2 keeps it after them). */
function cutoffCrc(word: Uint8Array): number {
  return crc32(0, word, 0, 8);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The wall clock's two parts (see `realtime`), reused. */
const WALL = new Float64Array(2);

/**
 * The time now, in microseconds since the epoch.
 *
 * @returns The time.
 */
export function nowUs(): number {
  // One libc call (the vDSO): about half what performance.timeOrigin + performance.now() costs.
  realtime(WALL);
  return WALL[0]! * 1000 + Math.floor(WALL[1]! / 1000);
}

/**
 * The error for a damaged group file: names the group, the file and what is wrong.
 *
 * @param group The group's directory.
 * @param what The file, and where in it ('".mq/index" record 7').
 * @param why What is wrong.
 * @returns The error (code `damaged`).
 */
export function damaged(group: string, what: string, why: string): FsbusError {
  return new FsbusError(
    "damaged",
    `Cannot read group "${group}": ${what} is damaged (${why}); ` +
      `see "fsbus mq check ${group}"`,
  );
}

/**
 * The CRC-32 of `length` bytes of a file from `offset`.
 *
 * @param fd The file.
 * @param offset Where to start.
 * @param length How many bytes.
 * @returns The CRC, or undefined when the file is shorter.
 */
export function fileCrc(fd: number, offset: number, length: number): number | undefined {
  const buf = new Uint8Array(Math.min(CRC_CHUNK, Math.max(length, 1)));
  let crc = 0;
  for (let done = 0; done < length;) {
    const want = Math.min(buf.length, length - done);
    const n = preadFull(fd, buf.subarray(0, want), offset + done);
    if (n < want) return undefined;
    crc = crc32(crc, buf, 0, n);
    done += n;
  }
  return crc;
}

/** The index of one group, as one process sees it. */
export class GroupIndex {
  readonly #path: string;
  readonly #dir: GroupDir;
  readonly #indexFd: number;
  readonly #intentFd: number;
  readonly #orderFd: number;
  readonly #streams: StreamTable;
  /** The index format: 2, or 1 for a group made by an earlier version. */
  #version = 2;
  #started = false;

  /** The next global sequence number (= committed messages, including trimmed ones). */
  #next = 0;
  #cum = 0;
  #orderEnd = 0;
  #cutoff = 0;
  /** Records below this have been passed by trimming: each stream's cut* fields are exact. */
  #cutScan = 0;
  #cutCum = 0;
  #cutOrder = 0;
  #indexPunched = HEADER;
  #orderPunched = 0;
  readonly #intentBuf = new Uint8Array(RECORD);
  /**
   * `.mq/intent` mapped shared (see writeIntent): undefined until the first intent is
   * written, null where it is not mapped (plain pwrite).
   */
  #intentMap:
    | { map: Mapping; bytes: Uint8Array; slot: number; faults: Int32Array }
    | null
    | undefined;
  /** The next intent is the first since the lock was taken: written with pwrite. */
  #intentPlain = true;
  readonly #intentView = new DataView(this.#intentBuf.buffer);
  readonly #chunk = new Uint8Array(CHUNK_RECORDS * RECORD);
  readonly #chunkView = new DataView(this.#chunk.buffer);
  /** What #chunk holds after the last index read: records [#chunkSeq, +#chunkCount). */
  #chunkSeq = 0;
  #chunkCount = 0;
  readonly #rec = new Uint8Array(RECORD);
  readonly #recView = new DataView(this.#rec.buffer);
  readonly #word = new Uint8Array(16);
  readonly #wordView = new DataView(this.#word.buffer);
  #lockHeld = false;
  /** The cutoff as read or written while this process holds the lock, or -1. */
  #lockedCutoff = -1;
  /** The cutoff known when the lock was last released, or -1. */
  #releasedCutoff = -1;

  /**
   * @param dir The group's directory.
   * @param fds `.mq/index`, `.mq/intent` and `order`, open.
   * @param streams The group's stream table.
   */
  constructor(
    dir: GroupDir,
    fds: { index: number; intent: number; order: number },
    streams: StreamTable,
  ) {
    this.#dir = dir;
    this.#path = dir.path;
    this.#indexFd = fds.index;
    this.#intentFd = fds.intent;
    this.#orderFd = fds.order;
    this.#streams = streams;
  }

  /** The next global sequence number (messages committed so far). */
  get next(): number {
    return this.#next;
  }

  /**
   * Whether this process holds the group lock (set by the group): then only it moves the
   * cutoff, which is read from the file once.
   */
  set lockHeld(held: boolean) {
    this.#lockHeld = held;
    this.#intentPlain = true;
    if (!held) this.#releasedCutoff = this.#lockedCutoff;
    this.#lockedCutoff = -1;
  }

  /**
   * The lock was taken again with nothing changed since this process released it (the
   * group's holdLock was told so): the cutoff known then still holds.
   */
  resumed(): void {
    if (this.#lockHeld) this.#lockedCutoff = this.#releasedCutoff;
  }

  /** The index format: 2, or 1 for a group made by an earlier version. */
  get version(): number {
    return this.#version;
  }

  /**
   * Writes the header of a new index (with the lock held), or checks an existing one's.
   *
   * @param locked Whether the caller holds the lock (only then is a header written).
   */
  init(locked: boolean): void {
    if (fdSize(this.#indexFd) < HEADER) {
      if (!locked) return; // made but never opened by a writer yet: empty
      const header = new Uint8Array(HEADER);
      header.set(MAGIC);
      pwriteAll(this.#indexFd, header, 0);
      return;
    }
    preadFull(this.#indexFd, this.#word, 0);
    const magic = this.#word.subarray(0, 8);
    if (same(magic, MAGIC)) this.#version = 2;
    else if (same(magic, MAGIC_V1)) this.#version = 1;
    else throw damaged(this.#path, '".mq/index"', "not an fsbus mq index: bad header");
    this.#streams.version = this.#version;
  }

  /** Under the lock, after the first read: drops `order` bytes no record accounts for. */
  settleOrderLocked(): void {
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    this.#cutoff = Math.max(this.#cutoff, this.readCutoff());
  }

  /**
   * Reads index records committed since the last look. The index only ever grows by whole
   * committed records appended at its end (a reader cannot see an append before its bytes
   * are copied, since the file size moves after the copy). Every record is checked before
   * it is believed. With the lock held, a write that a dead writer left half done is then
   * recovered from `.mq/intent`.
   *
   * @param locked Whether the caller holds the lock.
   * @throws {FsbusError} `damaged` for a record that is not sound.
   */
  read(locked: boolean): void {
    if (!this.#started) {
      this.#started = true;
      this.#loadCheckpoint(0);
    }
    const c = this.#chunk;
    const v = this.#chunkView;
    outer: for (;;) {
      const at = HEADER + this.#next * RECORD;
      const n = preadFd(this.#indexFd, c, at);
      // Nothing new: what #chunk holds (the last records read or committed) stays.
      if (n === 0) break;
      const whole = Math.floor(n / RECORD);
      let i = 0;
      this.#chunkSeq = this.#next;
      this.#chunkCount = 0;
      for (; i < whole; i++) {
        const o = i * RECORD;
        const why = recordProblem(v, o, this.#next, this.#version) ?? this.#fitProblem(v, o);
        if (why !== undefined) {
          this.#chunkCount = i;
          if (this.#badRecord(this.#next, why, at + (i + 1) * RECORD, locked)) continue outer;
          break outer;
        }
        this.#apply(v, o);
      }
      this.#chunkCount = i;
      if (whole < CHUNK_RECORDS) {
        // A torn append (part of a record at the end) was never seen: the lock holder drops it.
        if (locked && n % RECORD !== 0) truncateTo(this.#indexFd, at + whole * RECORD);
        break;
      }
    }
    if (locked) this.#recoverIntent();
  }

  /**
   * What to do about an unsound record: below the cutoff, continue from the checkpoint
   * (returns true); at the end with a write in progress that names it, stop there (the lock
   * holder drops it and recovers the write from its intent); otherwise it is damage.
   */
  #badRecord(seq: number, why: string, end: number, locked: boolean): boolean {
    if (seq < this.readCutoff()) {
      if (this.#loadCheckpoint(seq)) return true;
      throw damaged(
        this.#path,
        `".mq/index" record ${seq}`,
        `${why}; it is below the cutoff and ".mq/checkpoint" does not say where to go on`,
      );
    }
    if (end >= fdSize(this.#indexFd) && this.#readIntent() !== undefined) {
      if (locked) truncateTo(this.#indexFd, end - RECORD);
      return false;
    }
    throw damaged(this.#path, `".mq/index" record ${seq}`, why);
  }

  /** Whether a sound record fits what came before it; why not, when it does not. */
  #fitProblem(v: DataView, o: number): string | undefined {
    const id = v.getUint32(o + R.STREAM, true);
    let s = this.#streams.all[id];
    if (s === undefined) {
      this.#streams.readNames();
      s = this.#streams.all[id];
      if (s === undefined) {
        return `it names stream ${id}, but ".mq/streams" lists ${this.#streams.all.length}`;
      }
    }
    if (u64(v, o + R.CUM) !== this.#cum) return "its byte count does not follow the last";
    if (u64(v, o + R.ORDER) !== this.#orderEnd) return "its order offset does not follow the last";
    if (this.#version === 1) return undefined; // format 1 kept no contiguous offsets
    if (u64(v, o + R.OFFSET) !== s.end) return `its offset does not follow stream "${s.name}"`;
    if (u64(v, o + R.LOCAL) !== s.count) return `its number does not follow stream "${s.name}"`;
    return undefined;
  }

  #apply(v: DataView, o: number): void {
    const s = this.#streams.all[v.getUint32(o + R.STREAM, true)]!;
    const length = u64(v, o + R.LENGTH);
    const seq = this.#next;
    this.#next = seq + 1;
    this.#cum = u64(v, o + R.CUM) + length;
    this.#orderEnd = u64(v, o + R.ORDER) + s.orderEntry.length;
    const end = u64(v, o + R.OFFSET) + length;
    if (end > s.end) s.end = end;
    s.count = u64(v, o + R.LOCAL) + 1;
    s.lastSeq = seq;
  }

  /**
   * Continues from `.mq/checkpoint` when it is past `seq`: the state at its sequence number,
   * so records below it (trimmed, and their pages freed) need not be read.
   */
  #loadCheckpoint(seq: number): boolean {
    const cp = readCheckpoint(this.#dir);
    if (typeof cp === "string") throw damaged(this.#path, '".mq/checkpoint"', cp);
    if (cp === undefined || cp.seq <= seq) return false;
    if (cp.seq > this.#recordsInFile()) {
      throw damaged(this.#path, '".mq/checkpoint"', `it is past the last record (${cp.seq})`);
    }
    this.#streams.readNames();
    if (!this.#takeCut(cp)) {
      throw damaged(this.#path, '".mq/checkpoint"', 'it names a stream not in ".mq/streams"');
    }
    for (const e of cp.streams) {
      const s = this.#streams.all[e.id]!;
      s.end = e.end;
      s.count = e.count;
      s.lastSeq = e.lastSeq;
    }
    this.#next = cp.seq;
    this.#cum = cp.cum;
    this.#orderEnd = cp.order;
    this.#cutoff = Math.max(this.#cutoff, cp.seq);
    return true;
  }

  #recordsInFile(): number {
    return Math.max(0, Math.floor((fdSize(this.#indexFd) - HEADER) / RECORD));
  }

  /** Reads `.mq/intent`: the write in progress (or left by a dead writer), if any. */
  #readIntent(): RecordFields | undefined {
    if (preadFd(this.#intentFd, this.#intentBuf, 0) < RECORD) return undefined;
    if (recordProblem(this.#intentView, 0, this.#next, this.#version, INTENT)) return undefined;
    return decodeRecord(this.#intentView, 0, this.#next, this.#version);
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

  /** Under the lock: finish or undo the write a dead writer left (see group.ts). */
  #recoverIntent(): void {
    const r = this.#readIntent();
    if (r === undefined) return;
    const streams = this.#streams;
    const s = streams.all[r.stream] ?? (streams.readNames(), streams.all[r.stream]);
    if (
      s !== undefined && streams.ensureFd(s) && r.offset === s.end && r.local === s.count &&
      r.cum === this.#cum && r.order === this.#orderEnd
    ) {
      const size = fdSize(s.fd);
      const complete = this.#version === 1
        ? size >= r.offset + r.length
        : fileCrc(s.fd, r.offset, r.length) === r.dataCrc;
      const landed = size - r.length;
      if (complete) {
        // The whole message reached the stream: the writer died after its data. Commit it.
        pwriteAll(this.#orderFd, s.orderEntry, r.order);
        this.commit(s, { ...r, state: COMMITTED });
      } else if (
        this.#version !== 1 && r.length > 0 && landed > r.offset &&
        fileCrc(s.fd, landed, r.length) === r.dataCrc
      ) {
        // The whole message landed after bytes a plain program appended first (the writer
        // died before it found them): they are one message, then this one.
        const gap = landed - r.offset;
        this.commitForeign(s, r.offset, gap);
        const entry = s.orderEntry.length;
        pwriteAll(this.#orderFd, s.orderEntry, r.order + entry);
        this.commit(s, {
          ...r,
          state: COMMITTED,
          seq: r.seq + 1,
          offset: landed,
          local: r.local + 1,
          cum: r.cum + gap,
          order: r.order + entry,
        });
      } else {
        // Torn: cut the stream back to where the message started (never longer: a stream
        // a plain program truncated meanwhile is a new incarnation, found by the sync).
        if (size > r.offset) truncateTo(s.fd, r.offset);
      }
    }
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    const settled = new Uint8Array([COMMITTED]); // never look at this intent again
    pwriteAll(this.#intentFd, settled, R.STATE);
  }

  #record(r: RecordFields): Uint8Array {
    encodeRecord(this.#recView, 0, r, this.#version);
    return this.#rec;
  }

  /**
   * Under the lock: the record a write to `s` of `length` bytes would get next.
   *
   * @param s The stream.
   * @param length The message's length.
   * @param dataCrc The CRC-32 of its bytes.
   * @param flags FLAG_* bits.
   * @returns The record, marked intent.
   */
  nextRecord(s: StreamState, length: number, dataCrc: number, flags = 0): RecordFields {
    return {
      state: INTENT,
      flags,
      stream: s.id,
      seq: this.#next,
      offset: s.end,
      length,
      local: s.count,
      timeUs: nowUs(),
      cum: this.#cum,
      order: this.#orderEnd,
      dataCrc,
    };
  }

  /**
   * Whether the bytes of a stream's last message differ from those its record keeps a CRC
   * of (format 2; false when that cannot be known, as below the cutoff).
   *
   * @param s The stream.
   * @returns True when the file was rewritten in place.
   */
  lastMessageChanged(s: StreamState): boolean {
    const r = this.#lastRecord(s);
    return r !== undefined && fileCrc(s.fd, r.offset, r.length) !== r.dataCrc;
  }

  /**
   * Whether a file holds a stream's last message, byte for byte (format 2): a stream file
   * copied or restored under a new inode is still the same stream.
   *
   * @param s The stream.
   * @param fd The file, open.
   * @returns True when its last message (not empty, not trimmed) is there.
   */
  holdsLastMessage(s: StreamState, fd: number): boolean {
    const r = this.#lastRecord(s);
    return r !== undefined && r.length > 0 && fileCrc(fd, r.offset, r.length) === r.dataCrc;
  }

  #lastRecord(s: StreamState): RecordFields | undefined {
    if (this.#version === 1 || s.lastSeq < 0 || s.lastSeq < this.readCutoff()) return undefined;
    if (this.readRecords(s.lastSeq, this.#rec) !== 1) return undefined;
    if (recordProblem(this.#recView, 0, s.lastSeq, this.#version)) return undefined;
    const r = decodeRecord(this.#recView, 0, s.lastSeq, this.#version);
    return r.stream === s.id ? r : undefined;
  }

  /**
   * The checksum a record of this index keeps for a message's bytes.
   *
   * @param data The bytes.
   * @returns Their CRC-32 (0 for a format 1 index).
   */
  dataCrc(data: Uint8Array): number {
    return this.#version === 1 ? 0 : crc32(0, data);
  }

  /**
   * Under the lock: writes the intent of the write in progress.
   *
   * The first intent after the lock was taken is written with `pwrite`, so that a process
   * watching `.mq/intent` with inotify (the mount's server, to know whether it must sync when
   * it takes the lock again) sees every lock holder that wrote one: a store into a mapping
   * makes no inotify event. The next ones under the same lock (a burst, see the group's
   * holdLock) go through a shared mapping of `.mq/intent`: stores into the page cache, the
   * same bytes a `pwrite` leaves there and every process reads with `pread`, without a system
   * call. A page lost to a truncation (a process with write access) is caught by the SIGBUS
   * guard: the store then went to a private page, so the intent is written with `pwrite`,
   * and from then on always. A writer killed during a store leaves a torn record, read as no
   * intent: the checksum of a format 2 record fails, and its data was not written yet. A
   * format 1 record has no checksum, so a format 1 group always writes it with `pwrite`.
   *
   * @param r Its record.
   */
  writeIntent(r: RecordFields): void {
    const rec = this.#record(r);
    const plain = this.#intentPlain;
    this.#intentPlain = false;
    const m = plain ? null : this.#intentMap === undefined ? this.#mapIntent() : this.#intentMap;
    if (m !== null) {
      const since = m.faults[0]!;
      m.bytes.set(rec);
      if (m.faults[0] === since || !faultedIn(m.map.pointer, m.map.length, since)) return;
      this.#unmapIntent();
      this.#intentMap = null;
    }
    pwriteAll(this.#intentFd, rec, 0);
  }

  /** Maps `.mq/intent` when it holds a record and a SIGBUS guard can watch it, or says no. */
  #mapIntent(): { map: Mapping; bytes: Uint8Array; slot: number; faults: Int32Array } | null {
    this.#intentMap = null;
    if (this.#version === 1) return null; // no checksum to tell a torn store (see writeIntent)
    if (fdSize(this.#intentFd) < RECORD) {
      this.#intentMap = undefined; // the first intent is written plainly: ask again then
      return null;
    }
    let map: Mapping;
    try {
      map = mapShared(this.#intentFd, RECORD);
    } catch {
      return null;
    }
    const slot = guardRange(map.pointer, map.length);
    if (slot < 0) {
      map.unmap();
      return null;
    }
    this.#intentMap = {
      map,
      bytes: new Uint8Array(map.buffer, 0, RECORD),
      slot,
      faults: faultCounter(),
    };
    return this.#intentMap;
  }

  #unmapIntent(): void {
    const m = this.#intentMap;
    if (m == null) return;
    unguardRange(m.slot);
    m.map.unmap();
  }

  /** Unmaps what the index mapped; its descriptors are the group's to close. */
  close(): void {
    this.#unmapIntent();
    this.#intentMap = null;
  }

  /**
   * Under the lock: writes a stream's entry into `order` at a record's place.
   *
   * @param s The stream.
   * @param at The record's `order` offset.
   */
  writeOrder(s: StreamState, at: number): void {
    pwriteAll(this.#orderFd, s.orderEntry, at);
  }

  /**
   * Under the lock: appends a committed record at the end of the index and applies it.
   *
   * @param s The stream.
   * @param r The record.
   */
  commit(s: StreamState, r: RecordFields): void {
    const rec = this.#record(r);
    pwriteAll(this.#indexFd, rec, HEADER + r.seq * RECORD);
    // Readers in this process take it from #chunk instead of reading the index again.
    if (r.seq !== this.#chunkSeq + this.#chunkCount || this.#chunkCount === CHUNK_RECORDS) {
      this.#chunkSeq = r.seq;
      this.#chunkCount = 0;
    }
    this.#chunk.set(rec, this.#chunkCount * RECORD);
    this.#chunkCount++;
    this.#next = r.seq + 1;
    this.#cum = r.cum + r.length;
    this.#orderEnd = r.order + s.orderEntry.length;
    s.end = r.offset + r.length;
    s.count = r.local + 1;
    s.lastSeq = r.seq;
  }

  /**
   * Under the lock: indexes bytes appended by a program that knows nothing of fsbus.
   *
   * @param s The stream.
   * @param offset Where they start.
   * @param length How many.
   */
  commitForeign(s: StreamState, offset: number, length: number): void {
    const dataCrc = this.#version === 1 ? 0 : fileCrc(s.fd, offset, length) ?? 0;
    const r = this.nextRecord(s, length, dataCrc, FLAG_FOREIGN);
    r.state = COMMITTED;
    r.offset = offset;
    this.writeOrder(s, r.order);
    this.commit(s, r);
  }

  /**
   * Under the lock: moves the cutoff so the newest COUNT messages or SIZE bytes remain, and
   * frees pages below it.
   *
   * @param depth The group's depth.
   */
  trimLocked(depth: Depth): void {
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
        if (seq >= this.#next - 1 || recordProblem(v, o, seq, this.#version)) break scan;
        const keep = depth.kind === "count"
          ? this.#next - seq <= depth.count
          : this.#cum - u64(v, o + R.CUM) <= depth.bytes;
        if (keep) {
          orderCut = u64(v, o + R.ORDER);
          break scan;
        }
        cut++;
      }
    }
    if (cut > from) {
      setU64(this.#wordView, 0, cut);
      this.#wordView.setUint32(8, cutoffCrc(this.#word), true);
      pwriteAll(this.#indexFd, this.#word.subarray(0, this.#version === 1 ? 8 : 12), H_CUTOFF);
      this.#cutoff = cut;
      if (this.#lockHeld) this.#lockedCutoff = cut;
    }
    if (!this.#advanceCutState()) return;
    // Free whole pages below the cutoff, 64 KiB at a time at least.
    for (const s of this.#streams.all) {
      if (s.fd < 0) continue;
      const to = Math.floor(s.cutEnd / PAGE) * PAGE;
      if (to - s.punched >= PUNCH_MIN) {
        punchHole(s.fd, s.punched, to - s.punched);
        s.punched = to;
      }
    }
    // Index records are freed only below a checkpoint, written first, that says where an
    // opener goes on from.
    const indexTo = Math.floor((HEADER + this.#cutScan * RECORD) / PAGE) * PAGE;
    if (indexTo - this.#indexPunched >= PUNCH_MIN) {
      writeCheckpoint(this.#dir, {
        seq: this.#cutScan,
        cum: this.#cutCum,
        order: this.#cutOrder,
        streams: this.#streams.all.filter((s) => s.cutCount > 0).map((s) => ({
          id: s.id,
          end: s.cutEnd,
          count: s.cutCount,
          lastSeq: s.cutLast,
        })),
      });
      punchHole(this.#indexFd, this.#indexPunched, indexTo - this.#indexPunched);
      this.#indexPunched = indexTo;
    }
    const orderTo = Math.floor((orderCut < 0 ? this.#orderEnd : orderCut) / PAGE) * PAGE;
    if (orderTo - this.#orderPunched >= PUNCH_MIN) {
      punchHole(this.#orderFd, this.#orderPunched, orderTo - this.#orderPunched);
      this.#orderPunched = orderTo;
    }
  }

  /**
   * Brings each stream's state at the cutoff (its cut* fields) up to date, from the records
   * between the last look and the cutoff; false when a record there is not sound.
   */
  #advanceCutState(): boolean {
    const c = this.#chunk;
    const v = this.#chunkView;
    this.#chunkCount = 0;
    while (this.#cutScan < this.#cutoff) {
      const n = this.readRecords(this.#cutScan, c);
      let i = 0;
      for (; i < n && this.#cutScan < this.#cutoff; i++) {
        const o = i * RECORD;
        if (recordProblem(v, o, this.#cutScan, this.#version)) break;
        const s = this.#streams.all[v.getUint32(o + R.STREAM, true)];
        if (s === undefined) return false;
        const length = u64(v, o + R.LENGTH);
        s.cutEnd = u64(v, o + R.OFFSET) + length;
        s.cutCount = u64(v, o + R.LOCAL) + 1;
        s.cutLast = this.#cutScan;
        this.#cutCum = u64(v, o + R.CUM) + length;
        this.#cutOrder = u64(v, o + R.ORDER) + s.orderEntry.length;
        this.#cutScan++;
      }
      if (this.#cutScan >= this.#cutoff) break;
      if (i < n || n === 0) {
        // Freed by another process, which wrote a checkpoint past it first.
        const cp = readCheckpoint(this.#dir);
        if (typeof cp !== "object" || cp.seq <= this.#cutScan || !this.#takeCut(cp)) {
          return false;
        }
      }
    }
    return true;
  }

  #takeCut(cp: Checkpoint): boolean {
    for (const e of cp.streams) {
      const s = this.#streams.all[e.id];
      if (s === undefined) return false;
      s.cutEnd = e.end;
      s.cutCount = e.count;
      s.cutLast = e.lastSeq;
    }
    this.#cutScan = cp.seq;
    this.#cutCum = cp.cum;
    this.#cutOrder = cp.order;
    return true;
  }

  /**
   * The cutoff: the global sequence number below which history is trimmed.
   *
   * @returns The cutoff, from the index header.
   */
  readCutoff(): number {
    if (this.#lockedCutoff >= 0) return this.#lockedCutoff;
    const cutoff = this.#readCutoffFile();
    if (this.#lockHeld) this.#lockedCutoff = cutoff;
    return cutoff;
  }

  #readCutoffFile(): number {
    for (let attempt = 0;; attempt++) {
      preadFull(this.#indexFd, this.#word, H_CUTOFF);
      const cutoff = u64(this.#wordView, 0);
      let why: string | undefined;
      if (
        this.#version === 2 && (cutoff !== 0 || this.#wordView.getUint32(8, true) !== 0) &&
        this.#wordView.getUint32(8, true) !== cutoffCrc(this.#word)
      ) {
        why = "checksum mismatch";
      } else if (cutoff <= this.#next || cutoff <= this.#recordsInFile()) {
        return cutoff;
      } else {
        why = `it is past the last record (${cutoff})`;
      }
      // Read once more: a writer may have been moving it just then.
      if (attempt > 0) throw damaged(this.#path, '".mq/index" cutoff', why);
    }
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
   * below {@linkcode GroupIndex.next} are meaningful.
   *
   * @param seq The first record.
   * @param buf Where to put them.
   * @returns How many whole records were read.
   */
  readRecords(seq: number, buf: Uint8Array): number {
    return Math.floor(preadFd(this.#indexFd, buf, HEADER + seq * RECORD) / RECORD);
  }

  /**
   * How many bytes of messages the group holds from record `seq` to its last (a hint, for
   * deciding how to read them: 0 when the record cannot be read or is not sound).
   *
   * @param seq The first record.
   * @returns The bytes of messages `[seq, next)`.
   */
  bytesFrom(seq: number): number {
    if (seq >= this.#next) return 0;
    if (this.readRecords(seq, this.#rec) !== 1) return 0;
    if (recordProblem(this.#recView, 0, seq, this.#version) !== undefined) return 0;
    return Math.max(0, this.#cum - u64(this.#recView, R.CUM));
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
    const s = this.#streams.all[id];
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
}
