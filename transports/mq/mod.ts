/**
 * mq(4) stream groups on an ordinary directory, with no daemon: a group is a directory
 * holding `ctl`, `order` and its streams; every write is one message, kept on disk in the
 * group's global order; readers choose replay off, last or all, read whole messages or a
 * coalesced byte stream, and get EOF from a zero-length write or the stream's removal.
 *
 * Plain programs take part: `cat group/1` shows a stream's bytes, `echo hi >> group/0`
 * is a message, and `echo replay all > group/ctl` changes the settings.
 *
 * @example Write to two streams and merge them in write order (mq-cat)
 * ```ts ignore
 * import { MqGroup, MqReader } from "./mod.ts";
 *
 * const g = MqGroup.create("/dev/shm/chat", { replay: "all" });
 * g.write("alice", "hi\n");
 * g.write("bob", "hello\n");
 * g.write("alice", new Uint8Array()); // EOF for alice's readers
 * g.write("bob", new Uint8Array());
 * for await (const m of MqReader.open(g, ["alice", "bob"])) {
 *   console.log(m.stream, new TextDecoder().decode(m.data));
 * }
 * g.close();
 * ```
 *
 * @module
 */

export {
  checkStreamName,
  type CreateOptions,
  type DataMode,
  type Depth,
  MqGroup,
  type ReplayMode,
  type Settings,
  type StreamState,
  type WriteOptions,
  type WriteResult,
} from "./group.ts";
export { type MqMessage, MqReader, type ReadOptions } from "./reader.ts";
export type { Message, Subscription } from "../../types.ts";
