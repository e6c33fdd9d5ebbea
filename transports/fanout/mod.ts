/**
 * fanout: one-to-many ring buffers with topics, with the semantics of the /dev/fanout kernel
 * module, in user space (a shared-memory ring file per topic, mapped through FFI) or on a
 * real /dev/fanout device when one exists; plus baf's one-publisher lock.
 *
 * - A write of at most a quarter ring is atomic; writers never block on readers.
 * - A new reader starts at "now" (or at the oldest data held, with `fromOldest`).
 * - A reader more than one ring behind gets an {@linkcode OverrunError} and resynchronises.
 * - Readers sleep on a futex (rings) or in `poll` (devices): nothing spins while idle.
 * - Message mode (rings only, opt-in per topic): readers get whole messages.
 *
 * @example Publish and subscribe
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, openWriter, subscribe } from "@x/fsbus/fanout";
 *
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" }); // default: /dev/shm/fsbus
 * createTopic("news", { root, messages: true, exclusive: false });
 * const sub = subscribe("news", { root });
 * using w = openWriter("news", { root });
 * w.write("hello");
 * for await (const m of sub) {
 *   assert.equal(new TextDecoder().decode(m.data), "hello");
 *   break;
 * }
 * Deno.removeSync(root, { recursive: true });
 * ```
 *
 * @example A tight synchronous reader loop (lowest latency; blocks its thread)
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, publish } from "@x/fsbus/fanout";
 *
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using r = openReader("news", { root, create: true });
 * publish("news", "one\n", { root });
 * publish("news", "two\n", { root });
 * let got = "";
 * while (!got.endsWith("two\n")) { // a real reader loops for ever
 *   for (const item of r.take()) got += new TextDecoder().decode(item);
 *   r.waitSync(1000);
 * }
 * assert.equal(got, "one\ntwo\n");
 * Deno.removeSync(root, { recursive: true });
 * ```
 *
 * @module
 */

export {
  FsbusError,
  type FsbusErrorCode,
  type Message,
  OverrunError,
  type Subscription,
} from "../../types.ts";
export type { Backend, TopicReader, TopicWriter, WaitSource } from "./endpoint.ts";
export {
  BAF_ROOT,
  checkTopicName,
  defaultBafRoot,
  defaultRoot,
  ensureRoot,
  type RootOptions,
  topicPath,
} from "./root.ts";
export {
  type CreateOptions,
  createTopic,
  DEFAULT_TOPIC_MODE,
  describeTopic,
  listTopics,
  openReader,
  openWriter,
  type ReaderOptions,
  removeTopic,
  type ResolvedTopic,
  resolveTopic,
  type TopicInfo,
  topicNames,
  type WriterOptions,
} from "./topics.ts";
export { lockPublisher, type PublisherLock } from "./publisher_lock.ts";
export { subscribe, type SubscribeOptions, Subscriber } from "./subscriber.ts";
export { status } from "./status.ts";
export { RootWatch } from "./root_watch.ts";
export type { WaitResult } from "../../sys/poll.ts";
export type { FdStat, FileKind } from "../../sys/fs.ts";
export {
  DEFAULT_RING_SIZE,
  MAX_RING_SIZE,
  MIN_RING_SIZE,
  RECORD_HEADER,
  type RingInfo,
} from "./ring.ts";
export { RingReader, RingWriter } from "./ring_endpoint.ts";
export {
  DEFAULT_DEVICE_BUFFER,
  deviceCounts,
  DeviceReader,
  DeviceWriter,
  FANOUT_IOCTL,
  fanoutIoctl,
  isUnsupportedIoctl,
} from "./device.ts";

import { openWriter, type WriterOptions } from "./topics.ts";

/**
 * Publishes one write (or, in message mode, one message) to a topic and closes the writer.
 *
 * @param topic The topic's name (or path).
 * @param data The bytes or text.
 * @param options Root and creation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, publish } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using r = openReader("news", { root, create: true });
 * publish("news", "hello\n", { root });
 * assert.equal(new TextDecoder().decode(r.take()[0]), "hello\n");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function publish(
  topic: string,
  data: Uint8Array | string,
  options: WriterOptions = {},
): void {
  const w = openWriter(topic, options);
  try {
    w.write(data);
  } finally {
    w.close();
  }
}
