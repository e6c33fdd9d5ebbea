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
 * ```ts ignore
 * import { mkgroup, read } from "./mod.ts";
 *
 * const g = mkgroup("/dev/shm/chat", { replay: "all" });
 * g.write("alice", "hi\n");
 * g.write("bob", "hello\n");
 * g.write("alice", new Uint8Array()); // EOF for alice's readers
 * g.write("bob", new Uint8Array());
 * for await (const m of read(g, ["alice", "bob"])) {
 *   console.log(m.seq, m.stream, new TextDecoder().decode(m.data));
 * }
 * g.close();
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
 * ```ts ignore
 * import { mkgroup } from "./mod.ts";
 * const g = mkgroup("/dev/shm/chat", { replay: "all", depth: "16M" });
 * g.write("alice", "hi\n");
 * g.close();
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
 * ```ts ignore
 * import { openGroup } from "./mod.ts";
 * using g = openGroup("/dev/shm/chat");
 * console.log(g.settings.replay);
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
 * ```ts ignore
 * import { write } from "./mod.ts";
 * write("/dev/shm/chat", "alice", "hi\n");
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
 * ```ts ignore
 * import { read } from "./mod.ts";
 * for await (const m of read("/dev/shm/chat", ["alice", "bob"], { replay: "all" })) {
 *   console.log(m.stream, new TextDecoder().decode(m.data));
 * }
 * ```
 */
export function read(
  group: MqGroup | string,
  streams: string[],
  options: ReadOptions = {},
): MqReader {
  return MqReader.open(group, streams, options);
}
