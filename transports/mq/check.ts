/**
 * Checking a group's files, and repairing what can be repaired: `fsbus mq check GROUP
 * [--repair]`.
 *
 * What is checked: the index header and its cutoff; every record kept (its checksum or
 * position, that it follows the one before, that its stream is listed in `.mq/streams` and
 * its bytes are in the stream file, with the CRC the writer recorded); each `.mq/streams`
 * line; the checkpoint; `.mq/settings`; the `order` entries; the stream files against their
 * index.
 *
 * What is repaired (with the lock held, so writers wait): a damaged record between sound
 * ones is rebuilt from its neighbours, the `order` file and the stream's bytes; a damaged
 * last record is dropped and its bytes indexed again as the message they are; where neither
 * can be done, the index is cut at the damage and the streams and `order` are cut back to
 * match (those messages are lost, and the report says how many); a damaged cutoff (its
 * checksum does not match, or it points past the last record or below the checkpoint) is
 * set again just after the last message whose bytes trimming freed, so every message from
 * there on reads whole (the next write moves it on by the group's depth); a torn partial
 * record, a damaged `.mq/streams` line (rebuilt from `order`), wrong `order` entries and
 * unreadable settings are fixed.
 *
 * What cannot be repaired, and is only reported: a message whose bytes differ from those
 * written (its CRC) or a stream file shorter than its index. The bytes are lost; a record
 * made to match what is there would deliver it as if it were whole, so readers fail at that
 * message with an error naming it instead (remove the stream to go on without it).
 *
 * Groups in format 1 (made before checksums) are checked but not upgraded to format 2:
 * every record, the cutoff and each `.mq/streams` line would be rewritten, and processes
 * that have the group open (writers between two writes hold no lock, and readers never do)
 * keep reading and appending in the format they opened it with, so a rewrite under them
 * would make them fail; there is no way to know that none has it open. Format 1 groups keep
 * every check but the checksums.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { closeFd, fstat, O } from "../../sys/fs.ts";
import { fdSize, lockFd, preadFull, pwriteAll, truncateTo, unlockFd } from "../../sys/fd_io.ts";
import { applyCommands, DEFAULT_SETTINGS, renderCtl } from "./_ctl.ts";
import { GroupDir } from "./_files.ts";
import { crc32 } from "./_crc32.ts";
import { fileCrc } from "./_index.ts";
import { readCheckpoint } from "./_checkpoint.ts";
import {
  COMMITTED,
  decodeRecord,
  encodeRecord,
  H_CUTOFF,
  HEADER,
  MAGIC,
  MAGIC_V1,
  RECORD,
  type RecordFields,
  recordProblem,
  u64,
} from "./_layout.ts";
import { setU64 } from "../../sys/le64.ts";
import { isStreamName } from "./_names.ts";
import { parseStreamLine, renderStreamLine } from "./_streams.ts";

/** Options for {@linkcode checkGroup}. */
export interface CheckOptions {
  /**
   * Repair what can be repaired (false: only report, writing nothing).
   *
   * @default {false}
   */
  repair?: boolean;
}

/** One thing found wrong with a group. */
export interface CheckProblem {
  /** The file (relative to the group) it is in. */
  file: string;
  /** What is wrong. */
  problem: string;
  /** What was done about it (with `repair`), or what repair would do; undefined: nothing. */
  repair?: string;
}

/** What {@linkcode checkGroup} found. */
export interface CheckReport {
  /** The group. */
  group: string;
  /** The index format (1 or 2). */
  version: number;
  /** Messages in the index (including trimmed ones). */
  messages: number;
  /** Streams (live incarnations). */
  streams: number;
  /** What is wrong; empty when the group is sound. */
  problems: CheckProblem[];
  /** Whether repairs were made. */
  repaired: boolean;
}

interface Incarnation {
  name: string;
  ino: bigint;
  end: number;
  count: number;
  fd: number;
  size: number;
}

const MAX_SETTINGS = 64 * 1024;
const MAX_STREAMS = 64 * 1024 * 1024;
const CHUNK = 1024;
const PAGE = 4096;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Checks a group's files and, with `repair`, repairs what can be repaired (see the module
 * doc). Without `repair` nothing is written.
 *
 * @param path The group's directory.
 * @param options Whether to repair.
 * @returns What was found (and done).
 * @throws {FsbusError} When the directory is not a group at all, or cannot be read.
 *
 * @example Check a group, and repair it when something is wrong
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkGroup, MqGroup } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = MqGroup.create(`${dir}/g`);
 * g.write("0", "one\n");
 * g.write("0", "two\n");
 * g.close();
 * assert.deepEqual(checkGroup(`${dir}/g`).problems, []);
 * // One flipped byte in the first index record: found, then rebuilt from its neighbours.
 * const index = Deno.openSync(`${dir}/g/.mq/index`, { read: true, write: true });
 * index.seekSync(4096, Deno.SeekMode.Start);
 * index.writeSync(new Uint8Array([7]));
 * index.close();
 * const report = checkGroup(`${dir}/g`);
 * assert.match(report.problems[0]!.problem, /^record 0: checksum mismatch/);
 * assert.ok(checkGroup(`${dir}/g`, { repair: true }).repaired);
 * assert.deepEqual(checkGroup(`${dir}/g`).problems, []);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function checkGroup(path: string, options: CheckOptions = {}): CheckReport {
  const dir = path.replace(/(.)\/+$/, "$1");
  const repair = options.repair === true;
  using g = GroupDir.open(dir, false);
  if (g.stat("group", "ctl")?.kind !== "file") {
    throw new FsbusError("not_found", `Cannot check group "${dir}": not an mq group (no "ctl")`);
  }
  if (g.metaFd < 0) {
    return { group: dir, version: 2, messages: 0, streams: 0, problems: [], repaired: false };
  }
  using stack = new DisposableStack();
  const open = (place: "group" | "meta", name: string, flags: number) => {
    const fd = g.openFile(place, name, flags, "Cannot check group", true);
    if (fd >= 0) stack.defer(() => closeFd(fd));
    return fd;
  };
  const lock = repair ? open("meta", "lock", O.RDWR | O.CREAT) : -1;
  if (lock >= 0) {
    lockFd(lock);
    stack.defer(() => unlockFd(lock));
  }
  const c = new Checker(g, repair, open);
  c.run();
  return {
    group: dir,
    version: c.version,
    messages: c.next,
    streams: c.liveCount(),
    problems: c.problems,
    repaired: repair && c.problems.some((p) => p.repair !== undefined),
  };
}

class Checker {
  readonly problems: CheckProblem[] = [];
  version = 2;
  next = 0;
  #cum = 0;
  #orderEnd = 0;
  readonly #g: GroupDir;
  readonly #repair: boolean;
  readonly #open: (place: "group" | "meta", name: string, flags: number) => number;
  readonly #incs: (Incarnation | undefined)[] = [];
  #index = -1;
  #order = -1;
  /** The cutoff (repaired when it was damaged): messages from here on are kept. */
  #cutoffSeq = 0;

  constructor(
    g: GroupDir,
    repair: boolean,
    open: (place: "group" | "meta", name: string, flags: number) => number,
  ) {
    this.#g = g;
    this.#repair = repair;
    this.#open = open;
  }

  #report(file: string, problem: string, fix?: string): void {
    const p: CheckProblem = { file, problem };
    if (fix !== undefined) p.repair = this.#repair ? fix : `repair would: ${fix}`;
    this.problems.push(p);
  }

  liveCount(): number {
    const live = new Map<string, Incarnation>();
    for (const inc of this.#incs) if (inc && inc.fd >= 0) live.set(inc.name, inc);
    return live.size;
  }

  run(): void {
    this.#settings();
    const rw = this.#repair ? O.RDWR : O.RDONLY;
    this.#index = this.#open("meta", "index", rw);
    this.#order = this.#open("group", "order", rw);
    if (this.#index < 0 || fdSize(this.#index) < HEADER) return; // never opened by a writer
    const magic = new Uint8Array(8);
    preadFull(this.#index, magic, 0);
    const m = decoder.decode(magic);
    if (m === decoder.decode(MAGIC)) this.version = 2;
    else if (m === decoder.decode(MAGIC_V1)) this.version = 1;
    else {
      this.#report(".mq/index", "not an fsbus mq index (bad header); nothing can be checked");
      return;
    }
    this.#streams();
    this.#records();
    this.#checkStreamFiles();
    this.#rewriteStreams();
  }

  #settings(): void {
    let text: string | undefined;
    try {
      text = this.#g.readText("meta", "settings", MAX_SETTINGS);
      if (text !== undefined) applyCommands(text, DEFAULT_SETTINGS);
      return;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      let fromCtl = DEFAULT_SETTINGS;
      try {
        fromCtl = applyCommands(this.#g.readText("group", "ctl", MAX_SETTINGS) ?? "", fromCtl);
      } catch {
        // the defaults, then
      }
      const fix = `rewrite it from ctl (${renderCtl(fromCtl).trim().replaceAll("\n", ", ")})`;
      this.#report(".mq/settings", why, fix);
      if (this.#repair) {
        this.#g.remove("meta", "settings");
        this.#g.writeText("meta", "settings", renderCtl(fromCtl));
      }
    }
  }

  /** Reads `.mq/streams` line by line; bad lines are left as holes to rebuild from order. */
  #streams(): void {
    const fd = this.#open("meta", "streams", this.#repair ? O.RDWR | O.CREAT : O.RDONLY);
    if (fd < 0) return;
    const size = fdSize(fd);
    if (size > MAX_STREAMS) {
      this.#report(".mq/streams", `${size} bytes, more than ${MAX_STREAMS} allowed`);
      return;
    }
    const buf = new Uint8Array(size);
    const text = decoder.decode(buf.subarray(0, preadFull(fd, buf, 0)));
    const lines = text.split("\n");
    const torn = lines.pop() ?? "";
    if (torn !== "") {
      this.#report(".mq/streams", "a torn last line", "drop it");
      if (this.#repair) truncateTo(fd, size - encoder.encode(torn).length);
    }
    this.#lines = lines.length;
    lines.forEach((line, i) => {
      const p = parseStreamLine(line, i, this.version);
      if (typeof p === "string") {
        this.#incs.push(undefined);
        this.#report(".mq/streams", `line ${i + 1}: ${p}`);
        return;
      }
      this.#incs.push(this.#incarnation(p.name, p.ino));
    });
    // A name's newest incarnation owns its file (an older one of the same inode was
    // truncated or rewritten in place).
    const owner = new Map<string, Incarnation>();
    for (const inc of this.#incs) {
      if (inc === undefined) continue;
      const old = owner.get(inc.name);
      if (old) old.fd = -1;
      owner.set(inc.name, inc);
    }
    this.#streamsFd = fd;
  }

  #streamsFd = -1;

  #incarnation(name: string, ino: bigint): Incarnation {
    const inc: Incarnation = { name, ino, end: 0, count: 0, fd: -1, size: 0 };
    const fd = this.#open("group", name, O.RDONLY);
    if (fd >= 0) {
      const st = fstat(fd);
      if (st.ino === ino) {
        inc.fd = fd;
        inc.size = st.size;
      }
    }
    return inc;
  }

  #records(): void {
    const index = this.#index;
    const total = Math.floor((fdSize(index) - HEADER) / RECORD);
    const tail = (fdSize(index) - HEADER) % RECORD;
    let start = 0;
    const cp = readCheckpoint(this.#g);
    if (cp !== undefined) {
      if (typeof cp === "string") {
        this.#report(".mq/checkpoint", cp);
        return;
      }
      for (const s of cp.streams) {
        const inc = this.#incs[s.id];
        if (inc === undefined) {
          this.#report(".mq/checkpoint", `it names stream ${s.id}, not in ".mq/streams"`);
          return;
        }
        inc.end = s.end;
        inc.count = s.count;
      }
      start = this.next = cp.seq;
      this.#cum = cp.cum;
      this.#orderEnd = cp.order;
    }
    const cutoff = this.#cutoffSeq = this.#cutoff(start, total);
    const buf = new Uint8Array(CHUNK * RECORD);
    const v = new DataView(buf.buffer);
    for (let seq = start; seq < total;) {
      const n = Math.floor(preadFull(index, buf, HEADER + seq * RECORD) / RECORD);
      for (let i = 0; i < n; i++, seq++) {
        const why = recordProblem(v, i * RECORD, seq, this.version) ??
          this.#fits(decodeRecord(v, i * RECORD, seq, this.version), seq >= cutoff);
        if (why === undefined) {
          const r = decodeRecord(v, i * RECORD, seq, this.version);
          this.#checkBytes(r, seq >= cutoff);
          this.#apply(r);
          continue;
        }
        this.#damaged(seq, total, why);
        return;
      }
      if (n === 0) break;
    }
    if (tail !== 0) {
      this.#report(".mq/index", `a torn partial record at the end (${tail} bytes)`, "drop it");
      if (this.#repair) truncateTo(index, HEADER + total * RECORD);
    }
  }

  /**
   * The cutoff in the index header. A damaged one (its checksum does not match, or it is
   * past the last record or below the checkpoint) is set again, with repair, to where the
   * kept history provably starts: just after the last message whose bytes trimming has freed
   * (see #guessCutoff).
   */
  #cutoff(start: number, total: number): number {
    const word = new Uint8Array(12);
    const wv = new DataView(word.buffer);
    preadFull(this.#index, word, H_CUTOFF);
    const cutoff = u64(wv, 0);
    const crc = wv.getUint32(8, true);
    let why: string | undefined;
    if (this.version === 2 && (cutoff !== 0 || crc !== 0) && crc !== crc32(0, word, 0, 8)) {
      why = "the cutoff's checksum does not match";
    } else if (cutoff > total) {
      why = `the cutoff (${cutoff}) is past its last record (${total})`;
    } else if (cutoff < start) {
      why = `the cutoff (${cutoff}) is below ".mq/checkpoint" (${start})`;
    } else {
      return cutoff;
    }
    const guess = this.#guessCutoff(start, total);
    this.#report(
      ".mq/index",
      `${why}: where the kept history starts cannot be read from it`,
      `set it to ${guess}, just after the last message whose bytes were freed by trimming`,
    );
    if (this.#repair) {
      setU64(wv, 0, guess);
      wv.setUint32(8, crc32(0, word, 0, 8), true);
      pwriteAll(this.#index, word.subarray(0, this.version === 1 ? 8 : 12), H_CUTOFF);
    }
    return guess;
  }

  /**
   * Where the kept history starts, for a group whose cutoff is lost: one past the last
   * message (from the checkpoint on) whose bytes were freed by trimming. Trimming frees a
   * stream's pages from its start up to a page boundary below the cutoff, so a freed message
   * reads as zeros from its first byte to the next page boundary (and, in format 2, does not
   * match its CRC); every message after the last freed one is whole. A message of zeros that
   * was never freed moves the guess up too: less history, never wrong bytes.
   */
  #guessCutoff(start: number, total: number): number {
    let guess = start;
    const buf = new Uint8Array(CHUNK * RECORD);
    const v = new DataView(buf.buffer);
    for (let seq = start; seq < total;) {
      const n = Math.floor(preadFull(this.#index, buf, HEADER + seq * RECORD) / RECORD);
      if (n === 0) break;
      for (let i = 0; i < n; i++, seq++) {
        if (recordProblem(v, i * RECORD, seq, this.version)) continue;
        const r = decodeRecord(v, i * RECORD, seq, this.version);
        const inc = this.#incs[r.stream];
        if (inc === undefined || inc.fd < 0 || r.length === 0) continue;
        if (r.offset + r.length > inc.size) continue;
        const head = Math.min(r.length, PAGE - (r.offset % PAGE));
        const first = new Uint8Array(head);
        preadFull(inc.fd, first, r.offset);
        if (!first.every((b) => b === 0)) continue;
        if (this.version === 2 && fileCrc(inc.fd, r.offset, r.length) === r.dataCrc) continue;
        guess = seq + 1;
      }
    }
    return guess;
  }

  /** Why record `r` does not follow what came before, or undefined when it does. */
  #fits(r: RecordFields, kept: boolean): string | undefined {
    const inc = this.#incs[r.stream] ?? this.#recoverName(r);
    if (inc === undefined) {
      return `it names stream ${r.stream}, but ".mq/streams" does not list it`;
    }
    if (r.cum !== this.#cum) return "its byte count does not follow the last";
    if (r.order !== this.#orderEnd) return "its order offset does not follow the last";
    if (this.version === 2) {
      if (r.offset !== inc.end) return `its offset does not follow stream "${inc.name}"`;
      if (r.local !== inc.count) return `its number does not follow stream "${inc.name}"`;
    }
    if (inc.fd >= 0 && kept) {
      if (r.offset + r.length > inc.size) {
        return `stream "${inc.name}" holds ${inc.size} bytes, less than the ${
          r.offset + r.length
        } its message ${r.seq} needs (truncated or rewritten by another program)`;
      }
    }
    return undefined;
  }

  /**
   * Reports a kept message whose bytes differ from those written (format 2). That cannot be
   * repaired: the bytes are lost, and a record made to match them would deliver them as if
   * whole. Its readers fail at it with an error naming it.
   */
  #checkBytes(r: RecordFields, kept: boolean): void {
    const inc = this.#incs[r.stream];
    if (this.version !== 2 || !kept || inc === undefined || inc.fd < 0 || r.length === 0) return;
    if (r.offset + r.length > inc.size) return; // reported by #fits
    if (fileCrc(inc.fd, r.offset, r.length) === r.dataCrc) return;
    this.#report(
      inc.name,
      `the bytes of message ${r.seq} (${r.length} bytes at offset ${r.offset}) differ from ` +
        "those written (checksum mismatch); they cannot be repaired: its readers fail at it " +
        "with an error naming it (remove the stream to go on without it)",
    );
  }

  #apply(r: RecordFields): void {
    const inc = this.#incs[r.stream]!;
    this.next = r.seq + 1;
    this.#cum = r.cum + r.length;
    this.#orderEnd = r.order + encoder.encode(inc.name).length + 1;
    inc.end = Math.max(inc.end, r.offset + r.length);
    inc.count = r.local + 1;
    this.#checkOrderEntry(r, inc);
  }

  #checkOrderEntry(r: RecordFields, inc: Incarnation): void {
    const want = encoder.encode(inc.name + "\0");
    const got = new Uint8Array(want.length);
    const n = preadFull(this.#order, got, r.order);
    if (n === want.length && got.every((b, i) => b === want[i])) return;
    // Never written (a writer measuring without order), or freed below the cutoff.
    if (got.subarray(0, n).every((b) => b === 0)) return;
    this.#report("order", `the entry of message ${r.seq} is not "${inc.name}"`, "rewrite it");
    if (this.#repair) pwriteAll(this.#order, want, r.order);
  }

  /**
   * A record names a stream whose `.mq/streams` line is bad or missing: its name is in
   * `order`; the line is rebuilt (with the inode of the file of that name when no other
   * line claims it).
   */
  #recoverName(r: RecordFields): Incarnation | undefined {
    const buf = new Uint8Array(4096);
    const n = preadFull(this.#order, buf, r.order);
    const nul = buf.subarray(0, n).indexOf(0);
    if (nul < 1) return undefined;
    const name = decoder.decode(buf.subarray(0, nul));
    if (!isStreamName(name)) return undefined;
    const fd = this.#open("group", name, O.RDONLY);
    const ino = fd >= 0 ? fstat(fd).ino : 0n;
    const claimed = this.#incs.some((i) => i?.name === name && i.ino === ino);
    const inc = this.#incarnation(name, claimed ? 0n : ino);
    while (this.#incs.length <= r.stream) this.#incs.push(undefined);
    this.#incs[r.stream] = inc;
    this.#streamsDirty = true;
    this.#report(
      ".mq/streams",
      `line ${r.stream + 1} is ${r.stream < this.#lines ? "bad" : "missing"}`,
      `rebuild it from order as ${quote(name)}`,
    );
    return inc;
  }

  #streamsDirty = false;
  #lines = 0;

  #rewriteStreams(): void {
    if (!this.#streamsDirty || !this.#repair || this.#streamsFd < 0) return;
    let text = "";
    this.#incs.forEach((inc, id) => {
      text += renderStreamLine(id, inc?.ino ?? 0n, inc?.name ?? `lost-${id}`, this.version);
    });
    const bytes = encoder.encode(text);
    pwriteAll(this.#streamsFd, bytes, 0);
    truncateTo(this.#streamsFd, bytes.length);
  }

  /** A damaged record at `seq`: rebuild it, drop it (the last), or cut the index there. */
  #damaged(seq: number, total: number, why: string): void {
    const what = `record ${seq}: ${why}`;
    if (seq === total - 1) {
      this.#report(".mq/index", what, "drop it; its bytes are indexed again by the next writer");
      if (this.#repair) truncateTo(this.#index, HEADER + seq * RECORD);
      return;
    }
    const rebuilt = this.#rebuild(seq);
    if (rebuilt !== undefined) {
      this.#report(".mq/index", what, "rebuild it from its neighbours, order and stream");
      if (this.#repair) {
        const rec = new Uint8Array(RECORD);
        encodeRecord(new DataView(rec.buffer), 0, rebuilt, this.version);
        pwriteAll(this.#index, rec, HEADER + seq * RECORD);
      }
      // Go on checking after it.
      this.#apply(rebuilt);
      this.#continueFrom(seq + 1, total);
      return;
    }
    const lost = total - seq;
    this.#report(
      ".mq/index",
      what,
      `cut the index there: ${lost} messages from ${seq} on are lost, and the streams and ` +
        "order are cut back to match",
    );
    if (!this.#repair) return;
    truncateTo(this.#index, HEADER + seq * RECORD);
    truncateTo(this.#order, this.#orderEnd);
    for (const inc of this.#incs) {
      if (inc && inc.fd >= 0 && inc.size > inc.end) {
        const fd = this.#open("group", inc.name, O.WRONLY);
        if (fd >= 0 && fstat(fd).ino === inc.ino) truncateTo(fd, inc.end);
      }
    }
  }

  #continueFrom(from: number, total: number): void {
    const buf = new Uint8Array(RECORD);
    const v = new DataView(buf.buffer);
    for (let seq = from; seq < total; seq++) {
      preadFull(this.#index, buf, HEADER + seq * RECORD);
      const kept = seq >= this.#cutoffSeq;
      const why = recordProblem(v, 0, seq, this.version) ??
        this.#fits(decodeRecord(v, 0, seq, this.version), kept);
      if (why !== undefined) return this.#damaged(seq, total, why);
      const r = decodeRecord(v, 0, seq, this.version);
      this.#checkBytes(r, kept);
      this.#apply(r);
    }
  }

  /** Rebuilds record `seq` from the sound record after it, `order` and the stream. */
  #rebuild(seq: number): RecordFields | undefined {
    const buf = new Uint8Array(RECORD);
    const v = new DataView(buf.buffer);
    preadFull(this.#index, buf, HEADER + (seq + 1) * RECORD);
    if (recordProblem(v, 0, seq + 1, this.version)) return undefined;
    const after = decodeRecord(v, 0, seq + 1, this.version);
    const length = after.cum - this.#cum;
    const entry = after.order - this.#orderEnd;
    if (length < 0 || entry < 2 || entry > 4096) return undefined;
    const nameBuf = new Uint8Array(entry);
    if (preadFull(this.#order, nameBuf, this.#orderEnd) !== entry) return undefined;
    if (nameBuf[entry - 1] !== 0) return undefined;
    const name = decoder.decode(nameBuf.subarray(0, entry - 1));
    // The incarnation: the newest of that name whose bytes are there and, when its next
    // message is in the index, that the rebuilt one leads to.
    for (let id = this.#incs.length - 1; id >= 0; id--) {
      const inc = this.#incs[id];
      if (inc === undefined || inc.name !== name || inc.fd < 0) continue;
      if (inc.end + length > inc.size) continue;
      const dataCrc = this.version === 2 ? fileCrc(inc.fd, inc.end, length) ?? 0 : 0;
      const r: RecordFields = {
        state: COMMITTED,
        flags: 0,
        stream: id,
        seq,
        offset: inc.end,
        length,
        local: inc.count,
        timeUs: after.timeUs,
        cum: this.#cum,
        order: this.#orderEnd,
        dataCrc,
      };
      if (after.stream === id && (after.offset !== inc.end + length)) continue;
      return r;
    }
    return undefined;
  }

  #checkStreamFiles(): void {
    const live = new Map<string, Incarnation>();
    for (const inc of this.#incs) if (inc && inc.fd >= 0) live.set(inc.name, inc);
    for (const inc of live.values()) {
      if (inc.size < inc.end) {
        this.#report(
          inc.name,
          `holds ${inc.size} bytes but its index says ${inc.end} (truncated by another ` +
            "program); its readers fail at the first missing message",
        );
      }
    }
  }
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? s.slice(0, 60) + "..." : s);
}
