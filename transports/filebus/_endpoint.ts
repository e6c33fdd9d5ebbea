/**
 * What a filebus producer and consumer both start with: FILE's paths, a watch on its
 * directory (set up before the first look, so nothing after it is missed), and the lock file
 * (opened when first locked, as the original does).
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { Files, LockFile } from "./_files.ts";
import { Watch } from "./_watch.ts";
import { DEFAULT_SLEEP_INTERVAL_MS, type FilebusOptions } from "./options.ts";

/** The pieces of an open producer or consumer. */
export interface Endpoint {
  files: Files;
  watch: Watch;
  lock: LockFile;
}

/**
 * Checks the options and FILE's directory, and starts the watch.
 *
 * @param path FILE's path.
 * @param options The caller's options.
 * @param wantsEvents Whether this end waits for FILE to change (else the watch only sleeps).
 * @param createLock Whether to open (creating) FILE.lock now, as a producer does; a consumer
 *   opens only an existing one now, and makes it when it first locks.
 * @returns The files, the watch and the lock.
 * @throws {FsbusError} For an invalid sleep interval, a missing directory, or a FILE (or
 *   FILE.lock) that is not a regular file.
 */
export function openEndpoint(
  path: string,
  options: FilebusOptions,
  wantsEvents: boolean,
  createLock: boolean,
): Endpoint {
  const {
    sleepIntervalMs: sleepMs = DEFAULT_SLEEP_INTERVAL_MS,
    fileMonitoring = true,
    blockMs = 0,
  } = options;
  if (!(sleepMs >= 0) || !Number.isFinite(sleepMs)) {
    throw new FsbusError(
      "invalid",
      `Cannot use a sleep interval of "${sleepMs}" ms: expected 0 or more`,
    );
  }
  const files = new Files(path);
  const watch = new Watch(
    files.dir,
    files.base,
    wantsEvents && fileMonitoring && files.ffi,
    sleepMs,
    blockMs,
  );
  try {
    files.check();
    const lock = new LockFile(files);
    // A producer locks at its first write: open (create) FILE.lock now, so that permission
    // problems show at start. A consumer only opens one that is already there.
    lock.open(!createLock);
    return { files, watch, lock };
  } catch (err) {
    void watch.close();
    throw err;
  }
}
