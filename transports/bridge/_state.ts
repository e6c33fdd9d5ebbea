/**
 * What a bridge remembers across restarts, in its state directory: for each direction the
 * position of the last message delivered (`pos-0`, `pos-1`), and the ids the bridge has
 * either written into a local bus or already sent out (`seen`), so that neither comes out
 * again.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";

const POS_WIDTH = 160;
const SEEN_KEEP = 50_000;

/**
 * One direction's persisted position: a short line rewritten in place. Before a message is
 * written to a local bus the line also names it (`POS<TAB>KEY<TAB>MS`, a write ahead), so
 * that after a crash between the write and the update the bridge can check whether that one
 * message got in, rather than write it twice.
 */
export class Position implements Disposable {
  readonly #file: Deno.FsFile;
  readonly #buf = new Uint8Array(POS_WIDTH);
  /** The position when the bridge started, if any. */
  readonly initial: string | undefined;
  /** The message being written when the last run stopped: its key and the time (ms). */
  readonly pending: { key: string; since: number } | undefined;

  constructor(path: string) {
    try {
      this.#file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
      const n = this.#file.readSync(this.#buf) ?? 0;
      const [pos, key, since] = new TextDecoder().decode(this.#buf.subarray(0, n)).trim()
        .split("\t");
      this.initial = pos === "" || pos === undefined ? undefined : pos;
      this.pending = key === undefined || since === undefined
        ? undefined
        : { key, since: Number(since) };
    } catch (err) {
      throw fromFsError(err, "Cannot open bridge state", path);
    }
  }

  /** Records `value`, or `value` with a message about to be written (`key`). */
  save(value: string, key?: string): void {
    const line = key === undefined ? value : `${value}\t${key}\t${Date.now()}`;
    const text = line.padEnd(POS_WIDTH, " ");
    if (text.length > POS_WIDTH) {
      throw new FsbusError(
        "invalid",
        `Cannot save position "${line}": longer than ${POS_WIDTH} characters`,
      );
    }
    this.#file.seekSync(0, Deno.SeekMode.Start);
    this.#buf.set(new TextEncoder().encode(text));
    this.#file.writeSync(this.#buf);
  }

  [Symbol.dispose](): void {
    this.#file.close();
  }
}

/** Ids a bridge has written locally or sent out: an append-only log with a memory set. */
export class Seen implements Disposable {
  readonly #set = new Set<string>();
  readonly #order: string[] = [];
  readonly #file: Deno.FsFile | undefined;
  readonly #enc = new TextEncoder();

  constructor(path: string | undefined) {
    if (path === undefined) return;
    try {
      let lines: string[] = [];
      try {
        lines = Deno.readTextFileSync(path).split("\n").filter((l) => l !== "");
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      if (lines.length > SEEN_KEEP) {
        lines = lines.slice(-SEEN_KEEP);
        Deno.writeTextFileSync(`${path}.tmp`, lines.join("\n") + "\n", { mode: 0o600 });
        Deno.renameSync(`${path}.tmp`, path);
      }
      for (const l of lines) this.#remember(l);
      this.#file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
    } catch (err) {
      throw fromFsError(err, "Cannot open bridge state", path);
    }
  }

  #remember(id: string): void {
    if (this.#set.has(id)) return;
    this.#set.add(id);
    this.#order.push(id);
    if (this.#order.length > 2 * SEEN_KEEP) {
      for (const old of this.#order.splice(0, SEEN_KEEP)) this.#set.delete(old);
    }
  }

  /** Whether `id` was recorded. */
  has(id: string): boolean {
    return this.#set.has(id);
  }

  /** Records `id`. */
  add(id: string): void {
    if (this.#set.has(id)) return;
    this.#remember(id);
    this.#file?.writeSync(this.#enc.encode(id + "\n"));
  }

  [Symbol.dispose](): void {
    this.#file?.close();
  }
}
