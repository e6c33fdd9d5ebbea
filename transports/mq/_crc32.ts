/**
 * CRC-32 (the IEEE polynomial of zlib and Ethernet): the checksums of an mq group's index
 * records and of its messages' bytes. Readers check every message they deliver, so this is on
 * the replay path.
 *
 * In JavaScript it is sliced by sixteen bytes: it reads the bytes four at a time as 32-bit
 * words (little-endian, as every platform Deno runs on) and looks each byte up in one of
 * sixteen tables, about 8,500 instructions per KiB (the byte-at-a-time form takes five times
 * as long). Once {@linkcode loadNativeCrc32} has loaded the runtime's own CRC-32 (`node:zlib`'s,
 * part of Deno), runs of 64 bytes and more go to it instead: about 500 instructions per KiB
 * and a call. It is loaded on demand, not imported, because loading it costs a process that
 * has not loaded Deno's Node compatibility yet about 200 million instructions (a process
 * using the fsbus CLI, which has, about 5 million): readers load it when they have enough
 * to replay for that to pay.
 *
 * @module
 */

/**
 * Table t (t = 0..15) at [t * 256, t * 256 + 256): the CRC of byte i followed by t zero bytes.
 * Int32 rather than Uint32 so every value stays a small integer for the JIT.
 */
const TABLE = new Int32Array(256 * 16);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[i] = c;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 16; t++) {
    const prev = TABLE[(t - 1) * 256 + i]!;
    TABLE[t * 256 + i] = (prev >>> 8) ^ TABLE[prev & 255]!;
  }
}

/** Words read from memory are little-endian here (checked once; else bytes, one at a time). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * The runtime's CRC-32 once {@linkcode loadNativeCrc32} has loaded it and found it gives the
 * same values as {@linkcode crc32Js}, else undefined.
 */
let native: ((data: Uint8Array, value: number) => number) | undefined;
let loading: Promise<boolean> | undefined;
/** Shorter runs stay in JavaScript: below this, the call costs more than it saves. */
const NATIVE_MIN = 64;

/**
 * Continues a CRC-32 over more bytes (through the runtime's CRC-32 for runs of 64 bytes and
 * more once {@linkcode loadNativeCrc32} has loaded it: the same values).
 *
 * @param crc The CRC so far (0 to start).
 * @param b The bytes.
 * @param from The first byte.
 * @param to The end (exclusive).
 * @returns The CRC including `b[from, to)`.
 *
 * @example The check value of CRC-32, in one go and in two parts
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32 } from "./_crc32.ts";
 * const bytes = new TextEncoder().encode("123456789");
 * assert.equal(crc32(0, bytes), 0xcbf43926);
 * assert.equal(crc32(crc32(0, bytes, 0, 4), bytes, 4), 0xcbf43926);
 * ```
 */
export function crc32(crc: number, b: Uint8Array, from = 0, to = b.length): number {
  if (native !== undefined && to - from >= NATIVE_MIN) {
    return native(from === 0 && to === b.length ? b : b.subarray(from, to), crc);
  }
  return crc32Js(crc, b, from, to);
}

/**
 * Loads the runtime's CRC-32 (`node:zlib`'s) for {@linkcode crc32} to use from then on, after
 * checking that it gives the same values as {@linkcode crc32Js} (in one go and continued, on
 * every alignment). Loading it costs a process that has not loaded Deno's Node compatibility
 * about 200 million instructions, so it is worth it only before checksumming many megabytes.
 * Until the promise settles (and for good when the module cannot be loaded or disagrees),
 * {@linkcode crc32} stays in JavaScript, with the same results.
 *
 * @returns Whether the runtime's CRC-32 is used from now on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32, loadNativeCrc32 } from "./_crc32.ts";
 * const bytes = new Uint8Array(4096).fill(7);
 * const before = crc32(0, bytes);
 * assert.equal(await loadNativeCrc32(), true);
 * assert.equal(crc32(0, bytes), before);
 * ```
 */
export function loadNativeCrc32(): Promise<boolean> {
  loading ??= import("node:zlib").then(
    (zlib) => {
      const f = zlib.crc32 as (data: Uint8Array, value: number) => number;
      if (typeof f !== "function") return false;
      const probe = new Uint8Array(256 + 3);
      for (let i = 0; i < probe.length; i++) probe[i] = (i * 167 + 13) & 255;
      for (let from = 0; from < 4; from++) {
        const whole = probe.subarray(from, from + 256);
        const want = crc32Js(0, whole);
        if (f(whole, 0) !== want) return false;
        if (f(whole.subarray(100), f(whole.subarray(0, 100), 0)) !== want) return false;
      }
      native = f;
      return true;
    },
    () => false,
  );
  return loading;
}

/**
 * Whether {@linkcode crc32} uses the runtime's CRC-32 now.
 *
 * @returns True once {@linkcode loadNativeCrc32} has loaded and checked it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadNativeCrc32, usingNativeCrc32 } from "./_crc32.ts";
 * await loadNativeCrc32();
 * assert.equal(usingNativeCrc32(), true);
 * ```
 */
export function usingNativeCrc32(): boolean {
  return native !== undefined;
}

/**
 * {@linkcode crc32} in JavaScript only, whether or not the runtime's is loaded.
 *
 * @param crc The CRC so far (0 to start).
 * @param b The bytes.
 * @param from The first byte.
 * @param to The end (exclusive).
 * @returns The CRC including `b[from, to)`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32Js } from "./_crc32.ts";
 * assert.equal(crc32Js(0, new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32Js(crc: number, b: Uint8Array, from = 0, to = b.length): number {
  const T = TABLE;
  let c = ~crc;
  let i = from;
  const base = b.byteOffset;
  // Bytes one at a time up to a 4-byte boundary of the underlying buffer, then 16 at a time.
  while (i < to && ((base + i) & 3) !== 0) c = T[(c ^ b[i++]!) & 255]! ^ (c >>> 8);
  const blocks = LITTLE_ENDIAN ? (to - i) >>> 4 : 0;
  if (blocks > 0) {
    const w = new Int32Array(b.buffer, base + i, blocks * 4);
    for (let j = 0; j < w.length; j += 4) {
      const a = c ^ w[j]!;
      const b1 = w[j + 1]!;
      const b2 = w[j + 2]!;
      const b3 = w[j + 3]!;
      c = T[3840 + (a & 255)]! ^ T[3584 + ((a >>> 8) & 255)]! ^ T[3328 + ((a >>> 16) & 255)]! ^
        T[3072 + (a >>> 24)]! ^ T[2816 + (b1 & 255)]! ^ T[2560 + ((b1 >>> 8) & 255)]! ^
        T[2304 + ((b1 >>> 16) & 255)]! ^ T[2048 + (b1 >>> 24)]! ^ T[1792 + (b2 & 255)]! ^
        T[1536 + ((b2 >>> 8) & 255)]! ^ T[1280 + ((b2 >>> 16) & 255)]! ^
        T[1024 + (b2 >>> 24)]! ^ T[768 + (b3 & 255)]! ^ T[512 + ((b3 >>> 8) & 255)]! ^
        T[256 + ((b3 >>> 16) & 255)]! ^ T[b3 >>> 24]!;
    }
    i += blocks * 16;
  }
  for (; i < to; i++) c = T[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return ~c >>> 0;
}
