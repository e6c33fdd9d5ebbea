/**
 * The open files of a mounted mq tree, private to `mount.ts`: what each open stream,
 * `order` or `ctl` holds (its reader, the messages taken but not yet read, the reads parked
 * until data comes), and how a read(2) of a given size is cut from the queued messages: one
 * message per read in message mode (the rest of a longer message in the next reads), as many
 * bytes as are there in coalesce mode.
 *
 * @example Cut reads from a stream's messages
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, MqReader } from "./mod.ts";
 * import { type OpenFile, readable, take } from "./_mount_files.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = mkgroup(`${dir}/chat`, { replay: "all" });
 * g.write("0", "hello");
 * g.write("0", "!");
 * const f: OpenFile = {
 *   fh: 1,
 *   kind: "stream",
 *   group: { rel: "chat", g, wds: [], dirty: false, lastWrite: 0, writeGap: 0, files: new Set() },
 *   name: "0",
 *   reader: MqReader.open(g, ["0"], { watch: false }),
 *   queue: [],
 *   coalesce: false,
 *   waiting: [],
 *   trunc: false,
 *   wrote: false,
 *   failed: undefined,
 *   pollWake: undefined,
 *   lost: 0,
 * };
 * const text = (b: Uint8Array | undefined) => b && new TextDecoder().decode(b);
 * assert.equal(readable(f, console.error), true);
 * assert.equal(text(take(f, 3, console.error)), "hel"); // a message longer than the read
 * assert.equal(text(take(f, 100, console.error)), "lo"); // ... continues in the next one
 * assert.equal(text(take(f, 100, console.error)), "!");
 * assert.equal(take(f, 100, console.error), undefined); // nothing there: the read waits
 * await f.reader?.close();
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */

import { OverrunError } from "../../types.ts";
import { type Deferred, FuseError } from "../../sys/fuse/mod.ts";
import { E, type Kind } from "./_mount_tree.ts";
import type { MqGroup } from "./group.ts";
import type { MqReader } from "./reader.ts";

/**
 * No bytes: end of file for a reader.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EMPTY } from "./_mount_files.ts";
 * assert.equal(EMPTY.length, 0);
 * ```
 */
export const EMPTY: Uint8Array = new Uint8Array(0);

/** A group the mount has open: the group, its inotify watches and its open files. */
export interface GroupState {
  /** The group's path relative to the served directory. */
  rel: string;
  /** The group. */
  g: MqGroup;
  /** Its inotify watches: the directory's, the index's, `.mq/intent`'s and `ctl`'s. */
  wds: number[];
  /** An event not known to be this server's own was seen since the lock was last taken. */
  dirty: boolean;
  /** When the last write through the mount came (`monotonicMs()`), and the time between
   * it and the one before, in milliseconds. */
  lastWrite: number;
  /** See `lastWrite`. */
  writeGap: number;
  /** The files open in it through the mount. */
  files: Set<OpenFile>;
}

/** A read(2) parked until data comes. */
export interface Waiting {
  /** The reply. */
  d: Deferred<Uint8Array>;
  /** How many bytes the read asked for. */
  size: number;
}

/** A file open through the mount. */
export interface OpenFile {
  /** Its file handle. */
  fh: number;
  /** What it is. */
  kind: Kind;
  /** Its group. */
  group: GroupState;
  /** The stream's name (or `ctl`, `order`). */
  name: string;
  /** The reader of a stream or `order` open for reading. */
  reader: MqReader | undefined;
  /** Messages taken from the reader and not yet read (the first perhaps in part). */
  queue: Uint8Array[];
  /** Whether reads join messages (the group's `data coalesce`). */
  coalesce: boolean;
  /** Reads parked until data comes, oldest first. */
  waiting: Waiting[];
  /** Opened with O_TRUNC. */
  trunc: boolean;
  /** Written to since it was opened. */
  wrote: boolean;
  /** Why reading failed (the reader was overrun), for every later read. */
  failed: string | undefined;
  /** A poll(2) waiting for this file to become readable. */
  pollWake: (() => void) | undefined;
  /** The errno of a write acknowledged early (write-behind) whose commit failed, not yet
   * returned to the writer (by its next write, flush or fsync); 0 when none. */
  lost: number;
}

/** Takes the messages that came for an open file, if it has none queued. */
function fill(f: OpenFile, log: (line: string) => void): void {
  if (f.queue.length === 0 && f.reader !== undefined && f.failed === undefined) {
    try {
      for (const m of f.reader.poll()) if (m.data.length > 0) f.queue.push(m.data);
    } catch (err) {
      if (!(err instanceof OverrunError)) throw err;
      f.failed = err.message;
      log(err.message);
    }
  }
}

/**
 * Whether a read(2) of an open file would return now (data, end of file or an error); see
 * the module doc for an example.
 *
 * @param f The open file.
 * @param log Where an overrun reader's error is logged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type OpenFile, readable } from "./_mount_files.ts";
 * const f = { kind: "ctl" } as OpenFile; // ctl is always readable: its settings
 * assert.equal(readable(f, console.error), true);
 * ```
 */
export function readable(f: OpenFile, log: (line: string) => void): boolean {
  if (f.kind === "ctl") return true;
  fill(f, log);
  return f.queue.length > 0 || f.failed !== undefined || f.reader === undefined ||
    f.reader.done;
}

/**
 * The reply to a read(2) of `size` bytes: the next message (or its next part), in coalesce
 * mode as many queued bytes as fit, EMPTY at end of file, or undefined when nothing is there
 * yet (the read waits). See the module doc for an example.
 *
 * @param f The open file.
 * @param size How many bytes the read asked for.
 * @param log Where an overrun reader's error is logged.
 * @throws {FuseError} EIO when the reader was overrun.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EMPTY, type OpenFile, take } from "./_mount_files.ts";
 * const f = { queue: [new TextEncoder().encode("hi")], coalesce: true } as OpenFile;
 * assert.equal(new TextDecoder().decode(take(f, 10, console.error)), "hi");
 * assert.equal(take(f, 10, console.error), EMPTY); // no reader: end of file
 * ```
 */
export function take(
  f: OpenFile,
  size: number,
  log: (line: string) => void,
): Uint8Array | undefined {
  fill(f, log);
  if (f.queue.length === 0) {
    if (f.failed !== undefined) throw new FuseError(E.EIO, f.failed);
    return f.reader === undefined || f.reader.done ? EMPTY : undefined;
  }
  if (!f.coalesce) {
    const head = f.queue[0]!;
    if (head.length <= size) {
      f.queue.shift();
      return head;
    }
    f.queue[0] = head.subarray(size);
    return head.subarray(0, size);
  }
  const out = new Uint8Array(size);
  let len = 0;
  while (len < size && f.queue.length > 0) {
    const head = f.queue[0]!;
    const n = Math.min(head.length, size - len);
    out.set(head.subarray(0, n), len);
    len += n;
    if (n === head.length) f.queue.shift();
    else f.queue[0] = head.subarray(n);
  }
  return out.subarray(0, len);
}
