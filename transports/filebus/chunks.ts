/**
 * Cutting a byte stream into filebus chunks the way the original Python producer does.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { DEFAULT_BLOCK_SIZE, DEFAULT_SLEEP_INTERVAL_MS } from "./options.ts";

/**
 * Anything with an async `read` into a buffer, such as `Deno.stdin` or a `Deno.FsFile`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ByteReader } from "@x/fsbus/filebus";
 * const input: ByteReader = Deno.stdin;
 * assert.equal(typeof input.read, "function");
 * ```
 */
export interface ByteReader {
  /** Reads into `p`; resolves to the number of bytes read, or null at end of input. */
  read(p: Uint8Array): Promise<number | null>;
}

/**
 * How {@linkcode readChunks} cuts its input.
 *
 * @example
 * ```ts
 * import type { ChunkOptions } from "./chunks.ts";
 * const options: ChunkOptions = { blockSize: 65536, idleMs: 100 };
 * ```
 */
export interface ChunkOptions {
  /**
   * The most bytes per read; a chunk is flushed once it holds at least this many.
   *
   * @default {4096}
   */
  blockSize?: number;
  /**
   * Flush what is buffered when no input arrived for this long, in milliseconds (the
   * original's sleep interval). `Infinity` flushes only on a full block or at end of input
   * (the original's `--blocking-read`, and its behaviour on regular files).
   *
   * @default {100}
   */
  idleMs?: number;
}

const TIMEOUT = Symbol("timeout");

/**
 * Cuts a byte stream into chunks like the original filebus producer: reads of up to
 * `blockSize` bytes; a chunk is flushed when the buffer reaches `blockSize` (so a chunk can
 * approach twice that), when input has been idle for `idleMs`, or at end of input. Bytes are
 * opaque: NUL bytes, binary data and a last line without a newline pass through unchanged.
 *
 * @param input The stream to read.
 * @param options The block size and idle flush time.
 * @returns The chunks, in order; each a fresh array.
 *
 * @example Chunk a file the way `filebus producer` would
 * ```ts
 * import assert from "node:assert/strict";
 * import { readChunks } from "@x/fsbus/filebus";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeFileSync(`${dir}/input`, new Uint8Array(10_000));
 * using file = await Deno.open(`${dir}/input`);
 * const lengths: number[] = [];
 * for await (const chunk of readChunks(file, { blockSize: 4096 })) lengths.push(chunk.length);
 * assert.deepEqual(lengths, [4096, 4096, 1808]);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function* readChunks(
  input: ByteReader,
  options: ChunkOptions = {},
): AsyncGenerator<Uint8Array, void, undefined> {
  const { blockSize = DEFAULT_BLOCK_SIZE, idleMs = DEFAULT_SLEEP_INTERVAL_MS } = options;
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
    throw new FsbusError(
      "invalid",
      `Cannot use a block size of "${blockSize}": expected a whole number, at least 1`,
    );
  }
  if (!(idleMs >= 0)) {
    throw new FsbusError(
      "invalid",
      `Cannot use an idle time of "${idleMs}" ms: expected 0 or more`,
    );
  }
  let buf = new Uint8Array(blockSize * 2);
  let len = 0;
  const readBuf = new Uint8Array(blockSize);
  let pending: Promise<number | null> | undefined;
  const flush = (): Uint8Array => {
    const chunk = buf.slice(0, len);
    len = 0;
    return chunk;
  };
  for (;;) {
    pending ??= input.read(readBuf);
    let n: number | null | typeof TIMEOUT;
    if (len > 0 && Number.isFinite(idleMs)) {
      // Race the read in flight against the idle timer, without losing the read.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<typeof TIMEOUT>((resolve) => {
        timer = setTimeout(() => resolve(TIMEOUT), idleMs);
      });
      try {
        n = await Promise.race([pending, timeout]);
      } finally {
        clearTimeout(timer);
      }
      if (n === TIMEOUT) {
        yield flush();
        continue;
      }
    } else {
      n = await pending;
    }
    pending = undefined;
    if (n === null) {
      if (len > 0) yield flush();
      return;
    }
    if (len + n > buf.length) {
      const bigger = new Uint8Array(Math.max(buf.length * 2, len + n));
      bigger.set(buf.subarray(0, len));
      buf = bigger;
    }
    buf.set(readBuf.subarray(0, n), len);
    len += n;
    if (len >= blockSize) yield flush();
  }
}
