/**
 * What a filebus producer and consumer both start with: FILE's paths, a watch on its
 * directory (set up before the first look, so nothing after it is missed), and the open lock
 * file.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { Files, type Lock } from "./_files.ts";
import { Watch } from "./_watch.ts";
import { DEFAULT_SLEEP_INTERVAL_MS, type FilebusOptions } from "./options.ts";

/** The pieces of an open producer or consumer. */
export interface Endpoint {
  files: Files;
  watch: Watch;
  lock: Lock;
}

/**
 * Checks the options, starts the watch and opens the lock file.
 *
 * @param path FILE's path.
 * @param options The caller's options.
 * @param wantsEvents Whether this end waits for FILE to change (else the watch only sleeps).
 * @returns The files, the watch and the lock.
 * @throws {FsbusError} For an invalid sleep interval or a lock file that cannot be opened.
 */
export function openEndpoint(
  path: string,
  options: FilebusOptions,
  wantsEvents: boolean,
): Endpoint {
  const sleepMs = options.sleepIntervalMs ?? DEFAULT_SLEEP_INTERVAL_MS;
  if (!(sleepMs >= 0) || !Number.isFinite(sleepMs)) {
    throw new FsbusError("invalid", `Invalid sleep interval "${sleepMs}" ms`);
  }
  const files = new Files(path);
  const watch = new Watch(
    files.dir,
    files.base,
    wantsEvents && (options.fileMonitoring ?? true) && files.ffi,
    sleepMs,
    options.blockMs ?? 0,
  );
  try {
    return { files, watch, lock: files.openLock() };
  } catch (err) {
    void watch.close();
    throw err;
  }
}
