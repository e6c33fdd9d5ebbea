/**
 * Reading an mq group: one stream, several streams merged in write order (mq-cat), or the
 * `order` meta-stream, with replay off/last/all, message or coalesce mode, EOF by a
 * zero-length write or by removal, and an error for a reader the depth cutoff overtook.
 *
 * Every message's bytes are checked against the CRC-32 its writer recorded (format 2 groups)
 * before it is delivered: bytes changed in a stream file are an error of code `damaged` naming
 * the group, stream, message and offset (the whole messages before it are delivered first),
 * never wrong data.
 *
 * Readers take no lock to read: they follow the index's committed records. They sleep in
 * inotify on the group directory (for streams created, removed or appended to by other
 * programs) and on `.mq` (for the index), so an idle reader uses no CPU.
 *
 * @module
 */

import { FsbusError, type Message, OverrunError, type Subscription } from "../../types.ts";
import { IN, Inotify, type InotifyEvent } from "../../sys/inotify.ts";
import { yieldTurn } from "../../sys/poll.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { fdSize, preadFull } from "../../sys/fd_io.ts";
import type { DataMode, ReplayMode } from "./_ctl.ts";
import { R, RECORD, recordProblem, u64 } from "./_layout.ts";
import { crc32, loadNativeCrc32 } from "./_crc32.ts";
import { MqGroup } from "./group.ts";
import { checkStreamName } from "./_names.ts";
import { damaged, type GroupIndex } from "./_index.ts";
import { type GroupInternals, internalsOf } from "./_internal.ts";
import type { StreamState } from "./_streams.ts";

/**
 * A message read from an mq group.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MqGroup, type MqMessage, MqReader } from "@x/fsbus/mq";
 * const show = (m: MqMessage) => `${m.seq} ${m.stream}: ${new TextDecoder().decode(m.data)}`;
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = MqGroup.create(`${dir}/g`);
 * g.write("0", "hi");
 * const r = MqReader.open(g, ["0"], { replay: "all" });
 * assert.deepEqual(r.poll().map(show), ["0 0: hi"]);
 * await r.close();
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface MqMessage extends Message {
  /** The stream it was written to (`order` for the order meta-stream). */
  readonly stream: string;
  /** Its place in the group's global order (the first of several when coalesced). */
  readonly seq: number;
}

/** Options for reading. */
export interface ReadOptions {
  /**
   * Where to start: new messages only, the most recent, or all history.
   *
   * @default {the group's ctl setting}
   */
  replay?: ReplayMode;
  /**
   * One message per item, or consecutive messages of a stream joined.
   *
   * @default {the group's ctl setting}
   */
  data?: DataMode;
  /**
   * When several streams are read: end once these have reached EOF.
   *
   * @default {every stream read}
   */
  until?: string[];
  /** Stops the reader. */
  signal?: AbortSignal;
  /**
   * Wait by blocking this thread in `poll(2)` for up to this many milliseconds at a time,
   * with an event-loop turn in between (0: wait on a worker thread). One thread hand-off
   * less per wake-up, for processes that only read; timers and other I/O of the process run
   * only between waits.
   *
   * @default {0}
   */
  blockMs?: number;
  /**
   * Watch the group for changes. False makes a reader that only
   * {@linkcode MqReader.poll}s (no descriptor of its own): for a server that watches the
   * group once for many readers (the FUSE mount).
   *
   * @default {true}
   */
  watch?: boolean;
  /**
   * Check each message's bytes against the CRC-32 its writer recorded before delivering it
   * (groups in format 2). A message whose bytes differ is an error of code `damaged` naming
   * the group, stream, message and offset, never delivered. False only to measure what the
   * check costs (bench/mq.ts).
   *
   * @default {true}
   */
  verify?: boolean;
}

interface Want {
  s: StreamState;
  /** The local number of the next message expected. */
  k: number;
  /** Messages below this global sequence number are not for this reader. */
  from: number;
  eof: boolean;
  /** A read-ahead buffer of the stream's file. */
  cache: Uint8Array | undefined;
  /** The file offset the read-ahead buffer starts at. */
  cacheAt: number;
}

const READAHEAD = 256 * 1024;
/** Bytes to replay from which a reader loads the runtime's CRC-32 (see _crc32.ts). */
const NATIVE_CRC_FROM = 8 * 1024 * 1024;

const CHUNK = 1024;
// Streams: CLOSE_WRITE, not MODIFY. fsbus writers keep their streams open and commit through
// the index, so a reader wakes once per message (on the index); a plain program's append
// (`echo hi >> group/0`) ends with a close, which wakes readers to index it.
const DIR_MASK = IN.CLOSE_WRITE | IN.CREATE | IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO |
  IN.DELETE_SELF | IN.MOVE_SELF;
const INDEX_MASK = IN.MODIFY;
const FOREIGN_RECHECK_MS = 50;

/**
 * A running reader of one or more streams of a group (or of its `order`).
 *
 * Iterate it for messages, or {@linkcode MqReader.batches} for arrays of them; iteration
 * ends when every stream read (or every one in `until`) has reached EOF.
 *
 * @example Print stream "1" of a group, history first
 * ```ts
 * import assert from "node:assert/strict";
 * import { MqGroup, MqReader } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = MqGroup.create(`${dir}/g`, { replay: "all" });
 * g.write("1", "a\n");
 * g.write("1", "b\n");
 * g.write("1", new Uint8Array()); // EOF: the loop below ends there
 * const got: string[] = [];
 * for await (const m of MqReader.open(g, ["1"])) got.push(new TextDecoder().decode(m.data));
 * assert.deepEqual(got, ["a\n", "b\n"]);
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class MqReader implements Subscription<MqMessage> {
  readonly #g: MqGroup;
  readonly #parts: GroupInternals;
  readonly #index: GroupIndex;
  readonly #ownsGroup: boolean;
  readonly #wants = new Map<number, Want>();
  readonly #until: string[] = [];
  readonly #byName = new Map<string, Want>();
  /** Streams to read that do not exist yet, with the sequence number they start after. */
  readonly #pending = new Map<string, number>();
  readonly #order: boolean;
  readonly #coalesce: boolean;
  readonly #ino: Inotify | undefined;
  readonly #dirWd: number = -1;
  readonly #buf = new Uint8Array(CHUNK * RECORD);
  readonly #view = new DataView(this.#buf.buffer);
  readonly #dirty = new Set<string>();
  readonly #signal: AbortSignal | undefined;
  readonly #blockMs: number;
  readonly #verify: boolean;
  #pos = 0;
  #gone = false;
  #closed = false;
  #ctlEvent = false;
  #forceSync = false;
  #iterating = false;
  /** The runtime's CRC-32 being loaded, for iteration to wait for. */
  #crcLoad: Promise<boolean> | undefined;

  private constructor(
    g: MqGroup,
    owns: boolean,
    streams: string[],
    options: ReadOptions,
  ) {
    this.#g = g;
    this.#parts = internalsOf(g);
    this.#index = this.#parts.index;
    this.#ownsGroup = owns;
    const { signal, until, blockMs = 0, verify = true, watch = true } = options;
    this.#signal = signal;
    this.#blockMs = Math.max(0, blockMs);
    if (streams.length === 0) {
      throw new FsbusError("invalid", `Cannot read group "${g.path}": no stream given`);
    }
    this.#order = streams.length === 1 && streams[0] === "order";
    if (!this.#order) {
      for (const name of streams) {
        checkStreamName(g.path, name, false);
        if (name === "order") {
          throw new FsbusError(
            "invalid",
            `Cannot read "order" of "${g.path}" together with streams: it is read on its own`,
          );
        }
      }
    }
    if (!ffiAvailable()) {
      throw new FsbusError(
        "unsupported",
        `Cannot read "${g.path}": mq readers need inotify through FFI (run with -A on Linux)`,
      );
    }
    // Watch first, then find where to start: nothing written in between is missed.
    this.#ino = watch ? new Inotify() : undefined;
    try {
      if (this.#ino) {
        this.#dirWd = this.#ino.add(g.path, DIR_MASK | IN.ONLYDIR);
        this.#ino.add(`${g.path}/.mq/index`, INDEX_MASK);
      }
      const settings = g.settings;
      this.#coalesce = (options.data ?? settings.data) === "coalesce";
      const replay = options.replay ?? settings.replay;
      g.locked(() => this.#start(streams, replay, until));
      this.#verify = verify && this.#index.version === 2;
      // Enough to check that loading the runtime's CRC-32 pays (see _crc32.ts): iterating
      // waits for it; poll() checks in JavaScript until it is there.
      if (this.#verify && !this.#order && this.#index.bytesFrom(this.#pos) >= NATIVE_CRC_FROM) {
        this.#crcLoad = loadNativeCrc32();
      }
      if (!owns) this.#parts.streams.localReaders++;
    } catch (err) {
      void this.#ino?.close();
      throw err;
    }
  }

  /**
   * Starts reading streams of a group.
   *
   * @param group The group, or its path (then it is opened and closed with the reader).
   * @param streams The streams' names (several: merged in write order, as mq-cat), or
   *   `["order"]` for the order meta-stream.
   * @param options Replay, data mode, `until`, signal.
   * @returns The reader.
   * @throws {FsbusError} `not_found` for a group or stream that does not exist.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MqGroup, MqReader } from "@x/fsbus/mq";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const g = MqGroup.create(`${dir}/g`);
   * g.write("0", "a");
   * g.write("1", "b");
   * g.write("0", "c");
   * const r = MqReader.open(`${dir}/g`, ["0", "1"], { replay: "all" }); // merged in write order
   * assert.deepEqual(r.poll().map((m) => m.stream), ["0", "1", "0"]);
   * await r.close();
   * g.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  static open(group: MqGroup | string, streams: string[], options: ReadOptions = {}): MqReader {
    const owns = typeof group === "string";
    const g = typeof group === "string" ? MqGroup.open(group) : group;
    try {
      return new MqReader(g, owns, streams, options);
    } catch (err) {
      if (owns) g.close();
      throw err;
    }
  }

  #start(streams: string[], replay: ReplayMode, until: string[] | undefined): void {
    const g = this.#g;
    const next = g.next;
    const cutoff = this.#index.readCutoff();
    if (this.#order) {
      this.#pos = replay === "all" ? cutoff : replay === "last" ? Math.max(cutoff, next - 1) : next;
      return;
    }
    let pos = next;
    for (const name of streams) {
      const s = this.#stream(name);
      if (s === undefined) {
        // Not made yet: wait for it. Every message of it will come after `next`.
        this.#pending.set(name, next);
        continue;
      }
      if (this.#wants.has(s.id)) continue;
      let w: Want;
      if (replay === "all") {
        w = want(s, this.#index.firstLocalFrom(s.id, cutoff), cutoff);
      } else if (replay === "last" && s.lastSeq >= cutoff) {
        w = want(s, s.count - 1, s.lastSeq);
      } else {
        w = want(s, s.count, next);
      }
      this.#wants.set(s.id, w);
      this.#byName.set(name, w);
      pos = Math.min(pos, w.from);
    }
    for (const name of until ?? streams) {
      if (!this.#until.includes(name)) this.#until.push(name);
    }
    this.#pos = pos;
  }

  /** Starts reading the streams waited for that exist now. */
  #bindPending(): void {
    for (const [name, from] of this.#pending) {
      const s = this.#stream(name);
      if (s === undefined) continue;
      this.#pending.delete(name);
      const w = want(s, this.#index.firstLocalFrom(s.id, from), from);
      this.#wants.set(s.id, w);
      this.#byName.set(name, w);
    }
  }

  /** Whether every stream the reader waits for has reached EOF. */
  get done(): boolean {
    if (this.#order) return false;
    return this.#until.every((name) => this.#byName.get(name)?.eof === true);
  }

  /**
   * Everything readable now, without waiting (empty when nothing is).
   *
   * @returns The messages, in write order.
   * @throws {OverrunError} When the depth cutoff overtook the reader.
   */
  poll(): MqMessage[] {
    const g = this.#g;
    g.refresh();
    if (this.#pending.size > 0) this.#bindPending();
    const next = g.next;
    const out: MqMessage[] = [];
    // One chunk of records at a time, until one holds a message for this reader: a chunk may
    // hold none (other streams' records, an old incarnation's), and "empty" must mean that
    // nothing is readable now.
    for (let before = -1; out.length === 0 && this.#pos < next && this.#pos !== before;) {
      before = this.#pos;
      const index = this.#index;
      const cutoff = index.readCutoff();
      if (this.#pos < cutoff) this.#skipTo(cutoff);
      const first = this.#pos;
      const cached = index.cachedRecords(first);
      const v = cached?.view ?? this.#view;
      const base = cached?.at ?? 0;
      let n = Math.min(cached?.count ?? index.readRecords(first, this.#buf), next - first);
      let freed = false;
      for (let i = 0; i < n; i++) {
        const o = base + i * RECORD;
        const seq = this.#pos + i;
        // Records the group's own read brought in were checked then; others are checked now.
        const why = cached ? undefined : recordProblem(v, o, seq, index.version);
        if (why !== undefined) {
          // Freed by trimming since the cutoff was read (overrun, below), or damaged.
          if (seq < index.readCutoff()) {
            freed = true;
            n = i;
            break;
          }
          // What came before is whole: deliver it; the next poll stops here.
          if (out.length > 0) {
            n = i;
            break;
          }
          throw damaged(g.path, `".mq/index" record ${seq}`, why);
        }
        const id = v.getUint32(o + R.STREAM, true);
        if (this.#order) {
          const s = this.#parts.streams.all[id];
          if (s) out.push(message(s.orderEntry, "order", seq, u64(v, o + R.TIME)));
          continue;
        }
        const w = this.#wants.get(id);
        if (w === undefined || w.eof || seq < w.from) continue;
        const local = u64(v, o + R.LOCAL);
        if (local > w.k) this.#overrun(w, local - w.k);
        const length = u64(v, o + R.LENGTH);
        if (length === 0) {
          w.k = local + 1;
          w.eof = true;
          continue;
        }
        const offset = u64(v, o + R.OFFSET);
        // The message this process wrote (its CRC was taken from these bytes), or the file.
        const mine = w.s.written !== undefined && w.s.writtenAt === offset &&
          w.s.written.length === length;
        const data = mine ? w.s.written!.slice() : readData(g.path, w, offset, length);
        if (!mine && this.#verify && crc32(0, data) !== v.getUint32(o + R.DATA_CRC, true)) {
          // Bytes freed by trimming since the cutoff was read read as zeros: an overrun.
          if (seq < index.readCutoff()) {
            freed = true;
            n = i;
            break;
          }
          if (out.length > 0) {
            n = i;
            break;
          }
          throw new FsbusError(
            "damaged",
            `Cannot read stream "${g.path}/${w.s.name}": its message ${seq} (${length} bytes ` +
              `at offset ${offset}) differs from what was written (checksum mismatch); ` +
              `see "fsbus mq check ${g.path}"`,
          );
        }
        w.k = local + 1;
        out.push(message(data, w.s.name, seq, u64(v, o + R.TIME)));
      }
      this.#pos += n;
      // Trimming may have raced with the reads above: anything now below the cutoff may
      // have been freed, so it cannot be delivered.
      const after = index.readCutoff();
      if (after > first && out.length > 0 && out[0]!.seq < after) {
        const lost = out.filter((m) => m.seq < after).length;
        throw new OverrunError(
          `Reader of "${g.path}" fell behind the depth cutoff: ${lost} messages lost`,
          lost,
        );
      }
      if (freed) this.#skipTo(after);
    }
    if (!this.#order && this.#pos >= g.next) {
      for (const w of this.#wants.values()) {
        if (!w.s.removed || w.eof) continue;
        // A stream removed is EOF; a group removed (its ctl gone with it) is an error.
        if (this.#parts.streams.groupGone()) this.#gone = true;
        else w.eof = true;
      }
    }
    return this.#coalesce && out.length > 1 ? coalesce(out) : out;
  }

  #skipTo(cutoff: number): void {
    const g = this.#g;
    if (this.#order) {
      const lost = cutoff - this.#pos;
      throw new OverrunError(
        `Reader of "order" in "${g.path}" fell behind the depth cutoff: ${lost} messages lost`,
        lost,
      );
    }
    for (const w of this.#wants.values()) {
      if (w.eof) continue;
      const n = this.#index.firstLocalFrom(w.s.id, Math.max(cutoff, w.from));
      if (n > w.k) this.#overrun(w, n - w.k);
    }
    this.#pos = cutoff;
  }

  #overrun(w: Want, lost: number): never {
    throw new OverrunError(
      `Reader of stream "${w.s.name}" in "${this.#g.path}" fell behind the depth cutoff: ${lost} messages lost`,
      lost,
    );
  }

  #classify(events: InotifyEvent[]): boolean {
    let sync = this.#forceSync;
    this.#forceSync = false;
    for (const e of events) {
      if (e.mask & IN.Q_OVERFLOW) {
        sync = true;
        continue;
      }
      if (e.wd !== this.#dirWd) continue;
      if (e.mask & (IN.DELETE_SELF | IN.MOVE_SELF | IN.IGNORED)) {
        this.#gone = true;
        continue;
      }
      if (e.name === "ctl") {
        if (e.mask & (IN.DELETE | IN.MOVED_FROM)) this.#gone = true;
        this.#ctlEvent = true;
        continue;
      }
      if (e.name === "" || e.name === "order" || e.name.startsWith(".")) continue;
      if (e.mask & (IN.CREATE | IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO)) sync = true;
      else this.#dirty.add(e.name);
    }
    return sync;
  }

  /**
   * Whether a stream holds bytes that no record claims and no write in progress explains.
   * The size is read before the index: a writer writes its intent before its bytes, so
   * bytes seen first are either claimed by what the index shows next, or foreign.
   */
  #foreignPending(): boolean {
    let refreshed = false;
    for (const name of this.#dirty) {
      const s = this.#stream(name);
      if (s === undefined || s.removed) {
        this.#dirty.delete(name);
        continue;
      }
      const size = fdSize(s.fd);
      if (size === s.end) {
        this.#dirty.delete(name);
        continue;
      }
      if (!refreshed) {
        this.#g.refresh();
        refreshed = true;
      }
      if (size === s.end) {
        this.#dirty.delete(name);
        continue;
      }
      // Shorter than its index: truncated by a plain program (a sync makes it new).
      if (size < s.end) return true;
      if (!this.#index.writeInProgress()) return true;
    }
    return false;
  }

  /** The live incarnation of a stream, open (undefined when there is none). */
  #stream(name: string): StreamState | undefined {
    const streams = this.#parts.streams;
    const s = streams.live.get(name);
    return s && streams.ensureFd(s) ? s : undefined;
  }

  #sync(): void {
    this.#g.sync();
    this.#dirty.clear();
  }

  /**
   * The messages in batches: each array holds what was readable at once.
   *
   * @returns An async iterable of arrays of messages; it ends at EOF or on close.
   */
  async *batches(): AsyncGenerator<MqMessage[]> {
    if (this.#iterating) {
      throw new FsbusError(
        "busy",
        `Cannot iterate the reader of "${this.#g.path}": it is already being iterated`,
      );
    }
    const ino = this.#ino;
    if (ino === undefined) {
      throw new FsbusError(
        "invalid",
        `Cannot iterate the reader of "${this.#g.path}": it was opened with watch: false (use poll)`,
      );
    }
    this.#iterating = true;
    const onAbort = () => void this.close();
    this.#signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (this.#signal?.aborted) return;
      if (this.#crcLoad !== undefined) {
        await this.#crcLoad;
        this.#crcLoad = undefined;
      }
      for (;;) {
        if (this.#closed) return;
        const events = ino.read();
        if (this.#classify(events)) this.#sync();
        if (this.#ctlEvent) {
          this.#ctlEvent = false;
          this.#g.checkCtl();
        }
        const batch = this.poll();
        if (batch.length > 0) {
          yield batch;
          continue;
        }
        if (this.#gone) {
          const path = this.#g.path;
          throw new FsbusError("not_found", `Cannot read group "${path}": it was removed`);
        }
        if (this.done) return;
        if (this.#foreignPending()) {
          this.#sync();
          continue;
        }
        if (events.length > 0 || this.#pos < this.#g.next) continue;
        let result;
        if (this.#blockMs > 0) {
          const ms = this.#dirty.size > 0 ? FOREIGN_RECHECK_MS : this.#blockMs;
          result = ino.waitSync(Math.min(ms, this.#blockMs));
          if (result !== "ready") await yieldTurn();
        } else {
          result = await ino.wait(this.#dirty.size > 0 ? FOREIGN_RECHECK_MS : -1);
        }
        // A write in progress that never completes belongs to a dead writer: sync.
        if (result === "timeout" && this.#dirty.size > 0) this.#forceSync = true;
      }
    } finally {
      this.#signal?.removeEventListener("abort", onAbort);
      await this.close();
    }
  }

  /**
   * The messages one by one, in write order.
   *
   * @returns An async iterator; it ends at EOF or on close.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<MqMessage> {
    for await (const batch of this.batches()) yield* batch;
  }

  /** Stops reading and releases the watch (and the group, if the reader opened it). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#ownsGroup) this.#parts.streams.localReaders--;
    await this.#ino?.close();
    if (this.#ownsGroup) this.#g.close();
  }

  /** Same as {@linkcode MqReader.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function want(s: StreamState, k: number, from: number): Want {
  return { s, k, from, eof: false, cache: undefined, cacheAt: 0 };
}

/**
 * Reads a message's bytes from its stream, through the reader's read-ahead buffer. Bytes
 * that are not in the file are never made up: a stream shorter than its index is an error.
 */
function readData(group: string, w: Want, offset: number, length: number): Uint8Array {
  if (length === 0) return new Uint8Array(0);
  const cache = w.cache;
  if (cache && offset >= w.cacheAt && offset + length <= w.cacheAt + cache.length) {
    return cache.subarray(offset - w.cacheAt, offset - w.cacheAt + length);
  }
  const s = w.s;
  const short = (size: number) =>
    new FsbusError(
      "damaged",
      `Cannot read stream "${group}/${s.name}": it holds ${size} bytes but its message at ` +
        `${offset} ends at ${offset + length} (truncated or rewritten by another program)`,
    );
  if (s.fd < 0) throw short(0);
  // A length no file here could hold is refused before anything is allocated for it.
  if (length > READAHEAD && offset + length > fdSize(s.fd)) throw short(fdSize(s.fd));
  const buf = new Uint8Array(Math.max(length, Math.min(READAHEAD, s.end - offset)));
  const got = preadFull(s.fd, buf, offset);
  if (got < length) throw short(offset + got);
  w.cache = buf.subarray(0, got);
  w.cacheAt = offset;
  return buf.subarray(0, length);
}

function message(data: Uint8Array, stream: string, seq: number, timeUs: number): MqMessage {
  // A time no Date can hold (a writer's clock gone wrong) reads as the epoch.
  const ms = timeUs / 1000;
  const time = new Date(ms <= 8.64e15 ? ms : 0);
  return { data, stream, topic: stream, seq, id: String(seq), time };
}

function coalesce(msgs: MqMessage[]): MqMessage[] {
  const out: MqMessage[] = [];
  let run: MqMessage[] = [];
  const flush = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) {
      const total = run.reduce((n, m) => n + m.data.length, 0);
      const data = new Uint8Array(total);
      let off = 0;
      for (const m of run) {
        data.set(m.data, off);
        off += m.data.length;
      }
      out.push({ ...run[0]!, data });
    }
    run = [];
  };
  for (const m of msgs) {
    if (run.length > 0 && run[0]!.stream !== m.stream) flush();
    run.push(m);
  }
  flush();
  return out;
}
