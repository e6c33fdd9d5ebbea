/**
 * msgfs: a directory is a bus, a message is a new file, and subscribers learn of it through
 * inotify. Compatible with the msgfs protocol and with plain shell (`echo hi > bus/x`), with
 * its gaps fixed: no event lost in a burst or a queue overflow, files renamed in are seen,
 * symlinks are never followed, messages expire, and names sort by time for replay.
 *
 * @example Publish and subscribe
 * ```ts
 * import { publish, subscribe } from "./mod.ts";
 *
 * const bus = Deno.makeTempDirSync();
 * publish(bus, "hello");
 * for await (const m of subscribe(bus, { since: "all" })) {
 *   console.log(new TextDecoder().decode(m.data)); // "hello"
 *   break;
 * }
 * Deno.removeSync(bus, { recursive: true });
 * ```
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { readConfig } from "./config.ts";
import { markSwept, sweep, type SweepResult } from "./retention.ts";

export { publish, type Published, Publisher, type PublisherOptions } from "./publish.ts";
export {
  type BusMessage,
  BusSubscription,
  DEFAULT_MAX_SIZE,
  type SkippedFile,
  subscribe,
  type SubscribeOptions,
  type SubscriptionStats,
} from "./subscribe.ts";
export { init, type InitOptions } from "./access.ts";
export { type BusConfig, DEFAULT_TTL_MS, readConfig } from "./config.ts";
export { idTime, newId } from "./names.ts";
export { status } from "./status.ts";
export type { SweepResult } from "./retention.ts";

/**
 * Removes the bus's expired messages now (what publishers do in the background at most once
 * per interval).
 *
 * @param dir The bus directory.
 * @param options The TTL to apply (default: the bus's own).
 * @returns How many messages were removed and kept.
 *
 * @example
 * ```ts
 * import { gc, publish } from "./mod.ts";
 * const bus = Deno.makeTempDirSync();
 * publish(bus, "old news");
 * const { removed } = await gc(bus, { ttlMs: 0 });
 * console.log(removed); // 1
 * Deno.removeSync(bus, { recursive: true });
 * ```
 */
export async function gc(dir: string, options: { ttlMs?: number } = {}): Promise<SweepResult> {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch (err) {
    throw fromFsError(err, "Cannot sweep", dir);
  }
  if (!info.isDirectory) {
    throw new FsbusError("not_a_directory", `Cannot sweep "${dir}": not a directory`);
  }
  const ttlMs = options.ttlMs ?? readConfig(dir).ttlMs;
  const result = await sweep(dir, ttlMs);
  markSwept(dir);
  return result;
}
