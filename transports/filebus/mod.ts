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
 * ```ts
 * import assert from "node:assert/strict";
 * import { consumer, producer } from "@x/fsbus/filebus";
 *
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const file = `${dir}/jobs`;
 * const taking = (async () => {
 *   const got: string[] = [];
 *   for await (const chunk of consumer(file, { lossless: true })) {
 *     got.push(new TextDecoder().decode(chunk));
 *   }
 *   return got;
 * })();
 * const out = producer(file, { lossless: true });
 * await out.write("one");
 * await out.write("two");
 * await out.close(); // writes the EOF marker once "two" is taken
 * assert.deepEqual(await taking, ["one", "two"]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @example Pipe a stream into a filebus, chunked like `filebus producer`
 * ```ts
 * import assert from "node:assert/strict";
 * import { producer, readChunks } from "@x/fsbus/filebus";
 *
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/input`, "hello\n"); // Deno.stdin in a real program
 * using input = await Deno.open(`${dir}/input`);
 * {
 *   await using out = producer(`${dir}/urandom`);
 *   for await (const chunk of readChunks(input, { blockSize: 4096, idleMs: 100 })) {
 *     await out.write(chunk);
 *   }
 * }
 * assert.equal(Deno.readTextFileSync(`${dir}/urandom`), "hello\n");
 * Deno.removeSync(dir, { recursive: true });
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
