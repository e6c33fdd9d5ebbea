/**
 * The options shared by filebus producers and consumers.
 *
 * @module
 */

/**
 * How a filebus producer or consumer behaves; every field is optional.
 *
 * @example A lossless consumer that checks at least every 50 ms
 * ```ts
 * import type { FilebusOptions } from "./options.ts";
 * const options: FilebusOptions = { lossless: true, sleepIntervalMs: 50 };
 * ```
 */
export interface FilebusOptions {
  /**
   * Back-pressure mode (the original's `--back-pressure`, alias `--lossless`): a queue of
   * one chunk, each chunk delivered to exactly one lossless consumer, an empty chunk as EOF.
   * False: lossy multicast, latest chunk wins.
   *
   * @default {false}
   */
  lossless?: boolean;
  /**
   * The longest time between two checks of the file, in milliseconds (the original's
   * `--sleep-interval`, 0.1 s). With file monitoring, events wake sooner.
   *
   * @default {100}
   */
  sleepIntervalMs?: number;
  /**
   * Watch the file's directory with inotify. False means polling every `sleepIntervalMs`
   * (the original's `--no-file-monitoring`). Without FFI permission filebus always polls.
   *
   * @default {true}
   */
  fileMonitoring?: boolean;
  /**
   * Wait for events by blocking this thread in `poll(2)`, at most this many milliseconds at a
   * time, with an event-loop turn between waits (0: wait on a worker thread). One thread
   * hand-off less per chunk, for processes that do nothing else (the CLI's consumer).
   *
   * @default {0}
   */
  blockMs?: number;
  /** Stops the producer or consumer when aborted (like calling `close()`). */
  signal?: AbortSignal;
}

/** The default `sleepIntervalMs`: the original's 0.1 s. */
export const DEFAULT_SLEEP_INTERVAL_MS = 100;

/** The default block size for {@linkcode FilebusOptions} users that chunk input: 4096. */
export const DEFAULT_BLOCK_SIZE = 4096;
