/**
 * Moving messages between the command line and topics, for `fsbus fanout` and baf's
 * `fsbus pubmsg` / `fsbus submsg`: standard input as lines, byte-stream topics cut into lines,
 * overrun notices, and the read loop.
 *
 * @module
 */

import type { Message, OverrunError } from "../types.ts";
import type { Values } from "./_args.ts";
import { noticeTerminal } from "./_input.ts";
import { isBrokenPipe, warn } from "./_output.ts";
import { subscribe, type Subscriber } from "../transports/fanout/mod.ts";
import { createOptions } from "./_fanout_args.ts";

/**
 * Reads standard input as it arrives and hands over whole lines (each with its newline; a
 * last line without one gets one), as many as one read delivered, until end of input.
 *
 * @param handle Called with the lines of each read.
 *
 * @example
 * ```ts ignore
 * import { pumpLines } from "./_fanout_io.ts";
 * pumpLines((lines) => console.log(lines.length)); // reads standard input to the end
 * ```
 */
export function pumpLines(handle: (lines: Uint8Array[]) => void): void {
  noticeTerminal();
  const buf = new Uint8Array(64 * 1024);
  let pending = new Uint8Array(0);
  for (;;) {
    const n = Deno.stdin.readSync(buf);
    if (n === null) break;
    let data = buf.subarray(0, n);
    if (pending.length > 0) {
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(data, pending.length);
      data = joined;
    }
    const lines: Uint8Array[] = [];
    let start = 0;
    for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
      lines.push(data.slice(start, nl + 1));
      start = nl + 1;
    }
    pending = data.slice(start);
    if (lines.length > 0) handle(lines);
  }
  if (pending.length > 0) handle([withNewline(pending)]);
}

/**
 * The data with a newline at its end (added when missing).
 *
 * @param data The bytes.
 * @returns `data` itself, or a copy with a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withNewline } from "./_fanout_io.ts";
 * assert.deepEqual(withNewline(new Uint8Array([104, 105])), new Uint8Array([104, 105, 10]));
 * ```
 */
export function withNewline(data: Uint8Array): Uint8Array {
  return data[data.length - 1] === 10 ? data : concat(data, NEWLINE);
}

/**
 * Says on stderr that a reader of `topic` was overrun and goes on from "now".
 *
 * @param err The overrun.
 * @param topic The topic.
 *
 * @example
 * ```ts ignore
 * import { overrunNotice } from "./_fanout_io.ts";
 * overrunNotice(err, "news"); // fsbus: Topic "news" overrun (at least 10 bytes lost): ...
 * ```
 */
export function overrunNotice(err: OverrunError, topic: string): void {
  const lost = err.lost === undefined ? "" : ` (at least ${err.lost} bytes lost)`;
  warn(`Topic "${topic}" overrun${lost}: reading on from "now"`);
}

/**
 * Cuts byte-stream topics into lines, each line one message (with its newline), keeping a
 * partial line per topic until the rest arrives. Message-mode topics pass through.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineFramer } from "./_fanout_io.ts";
 * const framer = new LineFramer();
 * const bytes = (s: string) => new TextEncoder().encode(s);
 * assert.equal(framer.frame([{ data: bytes("one\ntw"), topic: "t" }]).length, 1);
 * assert.equal(framer.frame([{ data: bytes("o\n"), topic: "t" }]).length, 1);
 * ```
 */
export class LineFramer {
  readonly #partial = new Map<string, Uint8Array>();
  /** The message-mode topics: their messages pass through whole. */
  readonly messageTopics = new Set<string>();

  /** Forgets a topic's partial line (after an overrun, it would join unrelated text). */
  drop(topic: string): void {
    this.#partial.delete(topic);
  }

  /** Cuts a batch into lines (whole lines only; the rest waits for the next batch). */
  frame(batch: readonly Message[]): Message[] {
    const out: Message[] = [];
    for (const m of batch) {
      const topic = m.topic ?? "";
      if (this.messageTopics.has(topic)) {
        out.push(m);
        continue;
      }
      let data = m.data;
      const before = this.#partial.get(topic);
      if (before) {
        data = concat(before, data);
        this.#partial.delete(topic);
      }
      let start = 0;
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
        out.push({ data: data.subarray(start, nl + 1), topic });
        start = nl + 1;
      }
      if (start < data.length) this.#partial.set(topic, data.slice(start));
    }
    return out;
  }
}

/**
 * Opens a subscriber on `topics`, creating missing ones with `--create`.
 *
 * @param topics The topics.
 * @param values The parsed options (`--create` and the creation options).
 * @param root The topic root.
 * @param fromOldest Whether to start from the oldest data the rings hold.
 * @param onOverrun Called when a reader is overrun.
 * @returns The subscriber.
 *
 * @example
 * ```ts
 * import { openSubscriber } from "./_fanout_io.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const s = openSubscriber(["news"], { create: true }, root, false, () => {});
 * await s.close();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function openSubscriber(
  topics: string[],
  values: Values,
  root: string,
  fromOldest: boolean,
  onOverrun: (err: OverrunError, topic: string) => void,
): Subscriber {
  return subscribe(topics, {
    root,
    ...(fromOldest ? { fromOldest: true } : {}),
    ...(values.create ? { create: createOptions(values) } : {}),
    onOverrun,
  });
}

/**
 * Reads until `each` wants no more. `next` gives the next batch (empty when there is
 * nothing yet). A closed stdout ends it quietly.
 *
 * @param s The subscriber, closed at the end.
 * @param next The next batch.
 * @param each Handles a batch; false: no more.
 * @returns The exit code (0).
 *
 * @example
 * ```ts ignore
 * import { readLoop } from "./_fanout_io.ts";
 * await readLoop(s, () => s.nextSync(), (batch) => output.deliver(batch));
 * ```
 */
export async function readLoop(
  s: Subscriber,
  next: () => Promise<Message[]> | Message[],
  each: (batch: Message[]) => Promise<boolean>,
): Promise<number> {
  try {
    for (;;) {
      const batch = await next();
      if (batch.length === 0) continue;
      if (!await each(batch)) return 0;
    }
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    throw err;
  } finally {
    void s.close();
  }
}

const NEWLINE = new Uint8Array([10]);

/**
 * The bytes of `a` then `b`, in a new array.
 *
 * @param a The first part.
 * @param b The second part.
 * @returns Both.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concat } from "./_fanout_io.ts";
 * assert.deepEqual(concat(new Uint8Array([1]), new Uint8Array([2])), new Uint8Array([1, 2]));
 * ```
 */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}
