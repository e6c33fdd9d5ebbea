/**
 * What a bridge remembers across restarts, in its state directory: for each direction the
 * position of the last message delivered (`pos-0`, `pos-1`), and the ids the bridge has
 * either written into a local bus or already sent out (`seen`), so that neither comes out
 * again.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { FileLock } from "../../sys/flock.ts";
import { closeFd, O, openFd } from "../../sys/fs.ts";
import { preadFd, pwriteAll } from "../../sys/fd_io.ts";

const POS_WIDTH = 160;
const posEnc = new TextEncoder();
const SEEN_KEEP = 50_000;
/** The last line of a seen list that was compacted into a new file. */
const MOVED = "#moved";

/**
 * One direction's persisted position: a short line rewritten in place. Before a message is
 * written to a local bus the line also names it (`POS<TAB>KEY<TAB>MS`, a write ahead), so
 * that after a crash between the write and the update the bridge can check whether that one
 * message got in, rather than write it twice.
 */
export class Position implements Disposable {
  readonly #fd: number;
  readonly #buf = new Uint8Array(POS_WIDTH);
  /** The position when the bridge started, if any. */
  readonly initial: string | undefined;
  /** The message being written when the last run stopped: its key and the time (ms). */
  readonly pending: { key: string; since: number } | undefined;

  constructor(path: string) {
    try {
      this.#fd = openFd(path, O.RDWR | O.CREAT | O.NOFOLLOW, 0o600);
    } catch (err) {
      throw fromFsError(err, "Cannot open bridge state", path);
    }
    try {
      const n = preadFd(this.#fd, this.#buf, 0);
      const [pos, key, since] = new TextDecoder().decode(this.#buf.subarray(0, n)).trim()
        .split("\t");
      this.initial = pos === "" || pos === undefined ? undefined : pos;
      this.pending = key === undefined || since === undefined
        ? undefined
        : { key, since: Number(since) };
    } catch (err) {
      closeFd(this.#fd);
      throw fromFsError(err, "Cannot open bridge state", path);
    }
  }

  #value = "";
  #key: string | undefined;
  #since = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Records, at once, `value` with a message about to be written (`key`): the write ahead.
   * Without `key`, the same as {@linkcode Position.saveSoon} followed by a flush.
   */
  save(value: string, key?: string): void {
    const before = [this.#value, this.#key, this.#since] as const;
    this.#value = value;
    this.#key = key;
    this.#since = Date.now();
    try {
      this.#write();
    } catch (err) {
      // Refused (too long): what was recorded before stays.
      [this.#value, this.#key, this.#since] = before;
      throw err;
    }
  }

  /**
   * Records `value` (the message being written, if any, is now written) within 100 ms: one
   * write for many messages. A crash loses at most those 100 ms of positions, so messages
   * after the saved one come again: a local bus's write ahead finds the one that matters,
   * JetStream's message ids absorb the others.
   */
  saveSoon(value: string): void {
    this.#value = value;
    this.#key = undefined;
    this.#timer ??= setTimeout(() => this.flush(), 100);
  }

  /** Writes what is recorded now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#value !== "" || this.#key !== undefined) this.#write();
  }

  #write(): void {
    const line = this.#key === undefined
      ? this.#value
      : `${this.#value}\t${this.#key}\t${this.#since}`;
    // The line in UTF-8, padded with spaces to the full width: one pwrite(2) in place.
    const { read, written } = posEnc.encodeInto(line, this.#buf);
    if (read < line.length) {
      throw new FsbusError(
        "invalid",
        `Cannot save position "${line}": longer than ${POS_WIDTH} bytes`,
      );
    }
    this.#buf.fill(0x20, written);
    pwriteAll(this.#fd, this.#buf, 0);
  }

  [Symbol.dispose](): void {
    try {
      this.flush();
    } finally {
      closeFd(this.#fd);
    }
  }
}

/** Where a message a bridge wrote into a bus came from, kept beside its id. */
export interface WrittenFrom {
  /** The endpoint it came from (see `peerKey` in bridge.ts): not sent back there. */
  from: string;
  /** Its origin, kept when it is carried on to another endpoint. */
  origin: string;
  /** Its id at the origin. */
  id: string;
  /** The host it was published on. */
  host: string;
}

function formatLine(id: string, w: WrittenFrom | null): string {
  if (w === null) return id;
  const f = (t: string) => encodeURIComponent(t);
  return `${id}\t${f(w.from)}\t${f(w.origin)}\t${f(w.id)}\t${f(w.host)}`;
}

function parseLine(line: string): [string, WrittenFrom | null] {
  const [id, from, origin, oid, host] = line.split("\t");
  if (from === undefined || origin === undefined || oid === undefined) return [id!, null];
  try {
    const d = decodeURIComponent;
    return [id!, { from: d(from), origin: d(origin), id: d(oid), host: d(host ?? "") }];
  } catch {
    return [id!, null];
  }
}

/** Options of {@linkcode Seen}. */
export interface SeenOptions {
  /** How many ids to keep (the file holds at most twice as many; default 50,000). */
  keep?: number;
}

/**
 * Ids written into one local bus by any bridge of this machine (and ids sent out), shared
 * through an append-only file: a bridge that writes into the bus records the id under the
 * file's lock before releasing it, so a bridge reading the bus that meets an id it does not
 * know takes the lock and reads what the others appended — a message another bridge wrote
 * is never sent out again (no loop through two one-way bridges). The file is compacted to
 * the last `keep` ids whenever it holds twice as many (by whichever bridge notices first;
 * the others reopen it), so it stays bounded however long the bridges run.
 */
export class Seen implements Disposable {
  readonly #set = new Map<string, WrittenFrom | null>();
  /** `ORIGIN<TAB>ID` of every id recorded with where it came from. */
  readonly #origins = new Set<string>();
  readonly #order: string[] = [];
  readonly #path: string | undefined;
  readonly #lock: FileLock | undefined;
  readonly #keep: number;
  readonly #enc = new TextEncoder();
  readonly #dec = new TextDecoder();
  readonly #pendingAdds: string[] = [];
  readonly #chunk = new Uint8Array(64 * 1024);
  #file: Deno.FsFile | undefined;
  #lines = 0;
  #partial = "";
  #waiters = 0;
  #tail: Promise<void> = Promise.resolve();

  constructor(path: string | undefined, options: SeenOptions = {}) {
    this.#keep = options.keep ?? SEEN_KEEP;
    this.#path = path;
    if (path === undefined) return;
    try {
      this.#lock = FileLock.open(`${path}.lock`);
      while (!this.#lock.tryLock()) {
        // Another bridge holds it for a moment (one write).
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
      this.#section(() => {});
    } catch (err) {
      this.#lock?.close();
      this.#file?.close();
      throw fromFsError(err, "Cannot open bridge state", path);
    }
  }

  /** Lines in the file now (it stays under twice `keep`). */
  get fileLines(): number {
    return this.#lines;
  }

  /** Ids held in memory (it stays under twice `keep`). */
  get size(): number {
    return this.#set.size;
  }

  #reopen(): void {
    this.#file?.close();
    this.#file = undefined;
    this.#file = Deno.openSync(this.#path!, {
      read: true,
      append: true,
      create: true,
      mode: 0o600,
    });
    this.#lines = 0;
    this.#partial = "";
  }

  /** Under the lock: follows a compaction by another bridge, reads what was appended. */
  #catchUp(): void {
    if (this.#file === undefined) this.#reopen();
    if (this.#readNew()) {
      // Compacted by another bridge: the list goes on in a new file at the same path.
      this.#reopen();
      this.#catchUp();
    }
  }

  /**
   * Reads what was appended since the last read, and remembers its lines; true when it met
   * the mark of a compaction (the rest of this file is left unread). The descriptor's own
   * position is where the last read ended: reads move it, and so do this list's appends
   * (`O_APPEND`), made only when every earlier line was read. A short read is the end of the
   * file at that moment: nothing new costs one read(2).
   */
  #readNew(): boolean {
    const f = this.#file!;
    let text = "";
    for (;;) {
      const n = f.readSync(this.#chunk);
      if (n === null || n === 0) break;
      text += this.#dec.decode(this.#chunk.subarray(0, n)); // ASCII: fields are URI-encoded
      if (n < this.#chunk.length) break;
    }
    if (text === "") return false;
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const l of lines) {
      if (l === MOVED) return true;
      if (l === "") continue;
      this.#lines++;
      this.#remember(...parseLine(l));
    }
    return false;
  }

  #append(id: string): void {
    this.#appendAll([id]);
  }

  /** Under the lock: appends the ids' lines with one write (a batch of sent ids). */
  #appendAll(ids: readonly string[]): void {
    if (this.#file === undefined || ids.length === 0) return;
    let text = "";
    for (const id of ids) text += formatLine(id, this.#set.get(id) ?? null) + "\n";
    const bytes = this.#enc.encode(text);
    for (let off = 0; off < bytes.length;) off += this.#file.writeSync(bytes.subarray(off));
    this.#lines += ids.length;
  }

  /** Under the lock: rewrites the file with the last `keep` ids when it holds twice as many. */
  #compactIfLarge(): void {
    if (this.#lines < 2 * this.#keep) return;
    const tmp = `${this.#path}.tmp`;
    const kept = this.#order.slice(-this.#keep).map((id) =>
      formatLine(id, this.#set.get(id) ?? null)
    );
    Deno.writeTextFileSync(tmp, kept.join("\n") + "\n", { mode: 0o600 });
    this.#file!.writeSync(this.#enc.encode(MOVED + "\n"));
    Deno.renameSync(tmp, this.#path!);
    this.#reopen();
    this.#catchUp();
  }

  #remember(id: string, from: WrittenFrom | null = null): void {
    if (this.#set.has(id)) return;
    this.#set.set(id, from);
    if (from) this.#origins.add(`${from.origin}\t${from.id}`);
    this.#order.push(id);
    if (this.#order.length > 2 * this.#keep) {
      for (const old of this.#order.splice(0, this.#keep)) {
        const from = this.#set.get(old);
        if (from) this.#origins.delete(`${from.origin}\t${from.id}`);
        this.#set.delete(old);
      }
    }
  }

  /**
   * With the lock held: catch up, run `fn`, compact when large, release — or, with `keep`,
   * keep holding the lock for the next section (see {@linkcode Seen.guard}).
   */
  #section<T>(fn: () => T, keep = false): T {
    let kept = false;
    try {
      // Held since the last section: no other bridge can have added anything.
      if (!this.#kept) this.#catchUp();
      const r = fn();
      this.#compactIfLarge();
      kept = keep;
      return r;
    } finally {
      this.#kept = kept;
      // Kept: the next section (a message already waiting) or `release()` lets it go.
      if (!kept) this.#lock!.unlock();
    }
  }

  #kept = false;

  /**
   * Gives up the lock if a {@linkcode Seen.guard} with `more` kept it: for a caller whose next
   * message, announced by `more`, is not written after all (skipped), or that stops. A no-op
   * otherwise.
   */
  release(): void {
    if (!this.#kept) return;
    this.#kept = false;
    this.#lock!.unlock();
  }

  /** Runs `fn` holding the file's lock (in turn, waiting while another process holds it). */
  #locked<T>(fn: () => T, keep = false): T | Promise<T> {
    const lock = this.#lock!;
    if (this.#waiters === 0 && lock.tryLock()) return this.#section(fn, keep);
    this.#waiters++;
    const run = this.#tail.then(async () => {
      await lock.lock();
      return this.#section(fn, keep);
    });
    this.#tail = run.then(() => {}, () => {}).finally(() => this.#waiters--);
    return run;
  }

  /** Whether `id` was recorded by this bridge (in memory; see {@linkcode Seen.known}). */
  has(id: string): boolean {
    return this.#set.has(id);
  }

  /**
   * Where `id` came from as far as this bridge knows now (without reading what others added
   * since it last did): undefined when not recorded, null when recorded without it.
   */
  recorded(id: string): WrittenFrom | null | undefined {
    return this.#set.get(id);
  }

  /**
   * Whether `id` was recorded by any bridge sharing the file (reading what others added):
   * undefined when not, else where it came from (null when that was not recorded).
   */
  async lookup(id: string): Promise<WrittenFrom | null | undefined> {
    if (this.#set.has(id)) return this.#set.get(id);
    if (!this.#lock) return undefined;
    await this.#locked(() => {});
    return this.#set.get(id);
  }

  /**
   * Whether a message of `origin` with id `id` was written into the bus already (it can
   * arrive by two ways). Call inside {@linkcode Seen.guard}, which reads what others added.
   */
  hasOrigin(origin: string, id: string): boolean {
    return origin !== "" && this.#origins.has(`${origin}\t${id}`);
  }

  /** Whether `id` was recorded by any bridge sharing the file (reads what others added). */
  async known(id: string): Promise<boolean> {
    return (await this.lookup(id)) !== undefined;
  }

  /**
   * Runs `write` (which writes a message into the bus and {@linkcode Seen.add}s its id)
   * holding the file's lock, so that no other bridge can read the message before its id.
   *
   * With `more` (another message waits right behind this one, as when one socket read
   * brought several), the lock stays held for the next call: a burst takes the lock once
   * (two `flock` calls and a read fewer per message). It is given up by the next call without
   * `more` (or by any other section of this list, a lookup), or by {@linkcode Seen.release},
   * which the caller owes when the next message does not come to a call after all; the
   * bridge's pump makes it whenever a message is not written (skipped) with nothing
   * announced behind it, and when it stops. A `write` that throws lets the lock go at once.
   * Every id is still recorded right after its message, under the lock.
   */
  guard<T>(write: () => T, more = false): T | Promise<T> {
    return this.#lock ? this.#locked(write, more) : write();
  }

  /**
   * Records `id` (inside {@linkcode Seen.guard} when it names a message written locally,
   * with where it came from).
   */
  add(id: string, from?: WrittenFrom): void {
    if (this.#set.has(id)) return;
    this.#remember(id, from ?? null);
    if (!this.#lock) return;
    if (this.#lock.held) {
      this.#append(id);
      return;
    }
    // An id sent out (it only spares a resend after a restart): recorded within 100 ms,
    // many at a time, under the lock too (a compaction may be under way).
    this.#pendingAdds.push(id);
    if (this.#pendingAdds.length >= 1024) this.#flushAdds();
    else this.#addTimer ??= setTimeout(() => this.#flushAdds(), 100);
  }

  #addTimer: ReturnType<typeof setTimeout> | undefined;

  #flushAdds(): void {
    clearTimeout(this.#addTimer);
    this.#addTimer = undefined;
    if (this.#pendingAdds.length === 0 || this.#file === undefined) return;
    Promise.resolve(this.#locked(() => this.#appendAll(this.#pendingAdds.splice(0))))
      .catch(() => {}); // closed meanwhile
  }

  [Symbol.dispose](): void {
    clearTimeout(this.#addTimer);
    if (this.#pendingAdds.length > 0 && this.#file && this.#lock?.tryLock()) {
      try {
        this.#section(() => this.#appendAll(this.#pendingAdds.splice(0)));
      } catch {
        // kept as far as it went
      }
    }
    this.#file?.close();
    this.#file = undefined;
    this.#lock?.close();
  }
}
