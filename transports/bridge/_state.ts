/**
 * What a bridge remembers across restarts, in its state directory: for each direction the
 * position of the last message delivered (`pos-0`, `pos-1`), and the ids the bridge has
 * either written into a local bus or already sent out (`seen`), so that neither comes out
 * again.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";

const POS_WIDTH = 40;
const SEEN_KEEP = 50_000;

/** One direction's persisted position: a short string rewritten in place. */
export class Position implements Disposable {
  readonly #file: Deno.FsFile;
  readonly #buf = new Uint8Array(POS_WIDTH);
  /** The position when the bridge started, if any. */
  readonly initial: string | undefined;

  constructor(path: string) {
    try {
      this.#file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
      const n = this.#file.readSync(this.#buf) ?? 0;
      const text = new TextDecoder().decode(this.#buf.subarray(0, n)).trim();
      this.initial = text === "" ? undefined : text;
    } catch (err) {
      throw fromFsError(err, "Cannot open bridge state", path);
    }
  }

  /** Records `value` (at most 40 characters). */
  save(value: string): void {
    const text = value.padEnd(POS_WIDTH, " ");
    if (text.length > POS_WIDTH) throw new FsbusError("invalid", `Position "${value}" too long`);
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
