/**
 * filebus: a regular file as a multicast named pipe, byte-compatible with filebus 0.3.5
 * (Python and bash).
 *
 * On disk, exactly as the original: `FILE` holds the current chunk as raw bytes;
 * `FILE.lock` is locked with `flock(2)` `LOCK_EX` (created if missing, never deleted); each
 * chunk is written to `FILE.__new__` and renamed over `FILE` while the lock is held.
 *
 * - Lossy (default): the producer overwrites FILE and never waits; each consumer sees every
 *   new chunk it can keep up with, starting with the one present when it starts.
 * - Lossless (`lossless: true`, the original's `--back-pressure`): the producer waits until
 *   FILE is gone; one consumer takes each chunk (reads it and removes FILE under the lock);
 *   an empty FILE is the EOF marker.
 *
 * Producers and consumers wake on inotify events on FILE's directory, with the sleep
 * interval as the longest time between two checks; without FFI permission they poll.
 *
 * @example Lossless: a producer and a consumer in one program
 * ```ts ignore
 * import { consumer, producer } from "./mod.ts";
 *
 * const file = "/dev/shm/jobs";
 * const taking = (async () => {
 *   const got: string[] = [];
 *   for await (const chunk of consumer(file, { lossless: true })) {
 *     got.push(new TextDecoder().decode(chunk));
 *   }
 *   return got;
 * })();
 * await using out = producer(file, { lossless: true });
 * await out.write("one");
 * await out.write("two");
 * await out.close(); // writes the EOF marker once "two" is taken
 * console.log(await taking); // ["one", "two"]
 * ```
 *
 * @example Pipe stdin into a filebus, chunked like `filebus producer`
 * ```ts ignore
 * import { producer, readChunks } from "./mod.ts";
 * await using out = producer("/dev/shm/urandom");
 * for await (const chunk of readChunks(Deno.stdin, { blockSize: 4096, idleMs: 100 })) {
 *   await out.write(chunk);
 * }
 * ```
 *
 * @module
 */

export { consumer, FilebusConsumer } from "./consumer.ts";
export { FilebusProducer, producer } from "./producer.ts";
export { type ByteReader, type ChunkOptions, readChunks } from "./chunks.ts";
export { waitForDirectory, type WaitForDirectoryOptions } from "./wait_dir.ts";
export { DEFAULT_BLOCK_SIZE, DEFAULT_SLEEP_INTERVAL_MS, type FilebusOptions } from "./options.ts";
export { status } from "./status.ts";
export type { Subscription } from "../../types.ts";
