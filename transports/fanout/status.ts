/**
 * What a fanout topic is now: its backend, ring size and mode, readers and writers.
 *
 * @module
 */

import { FsbusError, type Status } from "../../types.ts";
import { describeTopic } from "./topics.ts";
import type { RootOptions } from "./root.ts";

/**
 * Describes a fanout topic (a ring file, or a /dev/fanout device): its backend, ring size,
 * whether it carries whole messages or a byte stream, and its live readers and writers
 * where known. The bytes are the ring's capacity: how much history it can hold.
 *
 * @param topic The topic's name (under the root) or path.
 * @param options The root.
 * @returns The status.
 * @throws {FsbusError} When the topic does not exist or is not a usable topic.
 *
 * @example
 * ```ts
 * import { createTopic, status } from "./mod.ts";
 * const root = Deno.makeTempDirSync();
 * createTopic("news", { root });
 * console.log(status("news", { root }).settings.kind); // "bytes"
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function status(topic: string, options: RootOptions = {}): Status {
  const t = describeTopic(topic, options);
  if (t.backend === "invalid") {
    throw new FsbusError("invalid", `Cannot describe topic "${t.path}": ${t.problem}`);
  }
  const settings: Status["settings"] = { backend: t.backend };
  if (t.messages !== undefined) settings.kind = t.messages ? "messages" : "bytes";
  if (t.size !== undefined) settings.size = t.size;
  const counts: Status["counts"] = {};
  if (t.readers !== undefined) counts.readers = t.readers;
  if (t.writers !== undefined) counts.writers = t.writers;
  return {
    kind: "fanout",
    path: t.path,
    what: t.backend === "device" ? "fanout device" : "fanout topic",
    settings,
    counts,
    bytes: t.size ?? 0,
  };
}
