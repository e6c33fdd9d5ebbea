/**
 * mq(4) stream groups on an ordinary directory, with no daemon: a group is a directory
 * holding `ctl`, `order` and its streams; every write is one message, kept on disk in the
 * group's global order; readers choose replay off, last or all, read whole messages or a
 * coalesced byte stream, and get EOF from a zero-length write or the stream's removal.
 *
 * Plain programs take part: `cat group/1` shows a stream's bytes, `echo hi >> group/0`
 * is a message, and `echo replay all > group/ctl` changes the settings.
 *
 * A user who may only read a group reads it (readers take no lock). Damage to a group's
 * files is an error naming the file, never wrong data; {@linkcode checkGroup} explains and
 * repairs it.
 *
 * @example Write to two streams and merge them in write order (mq-cat)
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, read } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = mkgroup(`${dir}/chat`, { replay: "all" });
 * g.write("alice", "hi\n");
 * g.write("bob", "hello\n");
 * g.write("alice", new Uint8Array()); // EOF for alice's readers
 * g.write("bob", new Uint8Array());
 * const lines: string[] = [];
 * for await (const m of read(g, ["alice", "bob"])) {
 *   lines.push(`${m.seq} ${m.stream} ${new TextDecoder().decode(m.data)}`);
 * }
 * assert.deepEqual(lines, ["0 alice hi\n", "1 bob hello\n"]);
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */

import { type CreateOptions, MqGroup, type WriteResult } from "./group.ts";
import { MqReader, type ReadOptions } from "./reader.ts";

export {
  checkStreamName,
  type CreateOptions,
  type DataMode,
  type Depth,
  MqGroup,
  type ReplayMode,
  type Settings,
  type StreamInfo,
  type WriteOptions,
  type WriteResult,
} from "./group.ts";
export { type MqMessage, MqReader, type ReadOptions } from "./reader.ts";
export {
  backingPath,
  mountGroups,
  MQ_SUBTYPE,
  type MqMount,
  type MqMountOptions,
} from "./mount.ts";
export { checkGroup, type CheckOptions, type CheckProblem, type CheckReport } from "./check.ts";
export { status } from "./status.ts";
export type { Message, Subscription } from "../../types.ts";

/**
 * Makes a directory an mq group (with `ctl`, `order` and its hidden index) and opens it.
 *
 * @param path The directory (made with its parents when missing).
 * @param options Initial replay, data mode and depth.
 * @returns The open group; close it when done.
 * @throws {FsbusError} `already_exists` when it is a group already (unless `existOk`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = mkgroup(`${dir}/chat`, { replay: "all", depth: "16M" });
 * g.write("alice", "hi\n");
 * assert.deepEqual(g.settings.depth, { kind: "size", bytes: 16 * 1024 * 1024, text: "16M" });
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function mkgroup(path: string, options: CreateOptions = {}): MqGroup {
  return MqGroup.create(path, options);
}

/**
 * Opens an existing group.
 *
 * @param path The group's directory.
 * @returns The open group; close it when done.
 * @throws {FsbusError} `not_found` when there is no such group.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, openGroup } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * mkgroup(`${dir}/chat`, { replay: "all" }).close();
 * {
 *   using g = openGroup(`${dir}/chat`);
 *   assert.equal(g.settings.replay, "all");
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function openGroup(path: string): MqGroup {
  return MqGroup.open(path);
}

/**
 * Writes one message to a stream of a group, opening and closing the group (for one-off
 * writes; keep an {@linkcode MqGroup} open to write many).
 *
 * @param group The group's directory.
 * @param stream The stream (made when missing).
 * @param data The message; a zero-length message is EOF for the stream's readers.
 * @returns The message's place in the group's order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, write } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * mkgroup(`${dir}/chat`).close();
 * assert.deepEqual(write(`${dir}/chat`, "alice", "hi\n"), { seq: 0, stream: "alice" });
 * assert.equal(Deno.readTextFileSync(`${dir}/chat/alice`), "hi\n");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function write(group: string, stream: string, data: Uint8Array | string): WriteResult {
  const g = MqGroup.open(group);
  try {
    return g.write(stream, data);
  } finally {
    g.close();
  }
}

/**
 * Reads streams of a group: one stream, several merged in write order (mq-cat), or
 * `["order"]`. Iteration ends when every stream (or every one in `until`) reaches EOF.
 *
 * @param group The group, or its directory (then opened and closed with the reader).
 * @param streams The streams' names.
 * @param options Replay (default: the group's ctl), data mode, `until`, `signal`, `blockMs`.
 * @returns The reader.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, read, write } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * mkgroup(`${dir}/chat`).close();
 * write(`${dir}/chat`, "alice", "hi\n");
 * write(`${dir}/chat`, "bob", "hello\n");
 * write(`${dir}/chat`, "alice", ""); // EOF
 * write(`${dir}/chat`, "bob", "");
 * const got: string[] = [];
 * for await (const m of read(`${dir}/chat`, ["alice", "bob"], { replay: "all" })) {
 *   got.push(`${m.stream}: ${new TextDecoder().decode(m.data)}`);
 * }
 * assert.deepEqual(got, ["alice: hi\n", "bob: hello\n"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function read(
  group: MqGroup | string,
  streams: string[],
  options: ReadOptions = {},
): MqReader {
  return MqReader.open(group, streams, options);
}
