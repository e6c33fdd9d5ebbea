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
import type { StreamState, StreamTable } from "./_streams.ts";

const CHUNK_RECORDS = 1024;
const PUNCH_MIN = 64 * 1024;
const PAGE = 4096;

/** The time now, in microseconds since the epoch. */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** The index of one group, as one process sees it. */
export class GroupIndex {
  readonly #path: string;
  readonly #indexFd: number;
  readonly #intentFd: number;
  readonly #orderFd: number;
  readonly #streams: StreamTable;

  /** The next global sequence number (= committed messages, including trimmed ones). */
  #next = 0;
  #cum = 0;
  #orderEnd = 0;
  #cutoff = 0;
  #indexPunched = HEADER;
  #orderPunched = 0;
  readonly #intentBuf = new Uint8Array(RECORD);
  readonly #intentView = new DataView(this.#intentBuf.buffer);
  readonly #chunk = new Uint8Array(CHUNK_RECORDS * RECORD);
  readonly #chunkView = new DataView(this.#chunk.buffer);
  /** What #chunk holds after the last index read: records [#chunkSeq, +#chunkCount). */
  #chunkSeq = 0;
  #chunkCount = 0;
  readonly #rec = new Uint8Array(RECORD);
  readonly #recView = new DataView(this.#rec.buffer);
  readonly #word = new Uint8Array(8);
  readonly #wordView = new DataView(this.#word.buffer);

  /**
   * @param path The group's directory, for messages.
   * @param fds `.mq/index`, `.mq/intent` and `order`, open.
   * @param streams The group's stream table.
   */
  constructor(
    path: string,
    fds: { index: number; intent: number; order: number },
    streams: StreamTable,
  ) {
    this.#path = path;
    this.#indexFd = fds.index;
    this.#intentFd = fds.intent;
    this.#orderFd = fds.order;
    this.#streams = streams;
  }

  /** The next global sequence number (messages committed so far). */
  get next(): number {
    return this.#next;
  }

  /** Under the lock: writes the header of a new index, or checks an existing one's. */
  initLocked(): void {
    if (fdSize(this.#indexFd) < HEADER) {
      const header = new Uint8Array(HEADER);
      header.set(MAGIC);
      pwriteAll(this.#indexFd, header, 0);
      return;
    }
    preadFull(this.#indexFd, this.#word, 0);
    for (let i = 0; i < MAGIC.length; i++) {
      if (this.#word[i] !== MAGIC[i]) {
        throw new FsbusError(
          "invalid",
          `Cannot open group "${this.#path}": ".mq/index" is not an fsbus mq index`,
        );
      }
    }
  }

  /** Under the lock, after the first read: drops `order` bytes no record accounts for. */
  settleOrderLocked(): void {
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    this.#cutoff = this.readCutoff();
  }

  /**
   * Reads index records committed since the last look. The index only ever grows by whole
   * committed records appended at its end (a reader cannot see an append before its bytes
   * are copied, since the file size moves after the copy). With the lock held, a write that
   * a dead writer left half done is then recovered from `.mq/intent`.
   *
   * @param locked Whether the caller holds the lock.
   */
  read(locked: boolean): void {
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
        this.#apply(v, o, locked);
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

  #apply(v: DataView, o: number, locked: boolean): void {
    const id = v.getUint32(o + R.STREAM, true);
    const length = u64(v, o + R.LENGTH);
    let s = this.#streams.all[id];
    if (s === undefined) {
      this.#streams.readNames(locked);
      s = this.#streams.all[id];
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

  /** Under the lock: finish or undo the write a dead writer left (see group.ts). */
  #recoverIntent(): void {
    const r = this.#readIntent();
    if (r === undefined) return;
    const streams = this.#streams;
    const s = streams.all[r.stream] ?? (streams.readNames(true), streams.all[r.stream]);
    if (s !== undefined && streams.ensureFd(s) && r.offset === s.end) {
      if (fdSize(s.fd) >= r.offset + r.length) {
        // The whole message reached the stream: the writer died after its data. Commit it.
        pwriteAll(this.#orderFd, s.orderEntry, r.order);
        this.commit(s, { ...r, state: COMMITTED });
      } else {
        // Torn: cut the stream back to where the message started.
        truncateTo(s.fd, r.offset);
      }
    }
    if (fdSize(this.#orderFd) > this.#orderEnd) truncateTo(this.#orderFd, this.#orderEnd);
    const settled = new Uint8Array([COMMITTED]); // never look at this intent again
    pwriteAll(this.#intentFd, settled, R.STATE);
  }

  #record(r: RecordFields): Uint8Array {
    encodeRecord(this.#recView, 0, r);
    return this.#rec;
  }

  /**
   * Under the lock: the record a write to `s` of `length` bytes would get next.
   *
   * @param s The stream.
   * @param length The message's length.
   * @param flags FLAG_* bits.
   * @returns The record, marked intent.
   */
  nextRecord(s: StreamState, length: number, flags = 0): RecordFields {
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
    };
  }

  /**
   * Under the lock: writes the intent of the write in progress.
   *
   * @param r Its record.
   */
  writeIntent(r: RecordFields): void {
    pwriteAll(this.#intentFd, this.#record(r), 0);
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
    pwriteAll(this.#indexFd, this.#record(r), HEADER + r.seq * RECORD);
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
    const r = this.nextRecord(s, length, FLAG_FOREIGN);
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
        if (seq >= this.#next - 1) break scan;
        const keep = depth.kind === "count"
          ? this.#next - seq <= depth.count
          : this.#cum - u64(v, o + R.CUM) <= depth.bytes;
        if (keep) {
          orderCut = u64(v, o + R.ORDER);
          break scan;
        }
        const s = this.#streams.all[v.getUint32(o + R.STREAM, true)];
        if (s) s.cutEnd = u64(v, o + R.OFFSET) + u64(v, o + R.LENGTH);
        cut++;
      }
    }
    if (cut <= from) return;
    setU64(this.#wordView, 0, cut);
    pwriteAll(this.#indexFd, this.#word, H_CUTOFF);
    this.#cutoff = cut;
    // Free whole pages below the cutoff, 64 KiB at a time at least.
    for (const s of this.#streams.all) {
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
