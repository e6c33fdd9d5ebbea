/**
 * CRC-32 (the IEEE polynomial of zlib and Ethernet), slicing by sixteen bytes: the checksums
 * of an mq group's index records and of its messages' bytes. Readers check every message they
 * deliver, so this is on the replay path: it reads the bytes four at a time as 32-bit words
 * (little-endian, as every platform Deno runs on) and looks each byte up in one of sixteen
 * tables, about 0.6 µs per KiB here (the byte-at-a-time form takes about 3 µs). A long-lived
 * process can load zlib's (`node:zlib`, about 0.1 µs per KiB, but some 20 ms and 10 MB to
 * load, too much for every command) with {@linkcode loadNativeCrc32}: runs of 64 bytes and
 * more then go to it.
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

/** A native CRC-32 of the same kind (`fn(bytes, crcSoFar)`), once loaded. */
let native: ((b: Uint8Array, crc: number) => number) | undefined;
/** Shorter runs stay here: calling out costs more than they do. */
const NATIVE_MIN = 64;

/** Words read from memory are little-endian here (checked once; else bytes, one at a time). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Continues a CRC-32 over more bytes.
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
    return native(from === 0 && to === b.length ? b : b.subarray(from, to), crc) >>> 0;
  }
  return crc32Js(crc, b, from, to);
}

function crc32Js(crc: number, b: Uint8Array, from: number, to: number): number {
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

/**
 * Uses `fn` for {@linkcode crc32} from now on (runs of 64 bytes and more), if it gives the
 * same CRCs as this module (checked here, a continued CRC included).
 *
 * @param fn A CRC-32 of the IEEE polynomial: `fn(bytes, crcSoFar)`, as zlib's `crc32`.
 * @returns Whether it is used.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { useNativeCrc32 } from "./_crc32.ts";
 * assert.equal(useNativeCrc32(() => 0), false); // not a CRC-32: not used
 * ```
 */
export function useNativeCrc32(fn: (b: Uint8Array, crc: number) => number): boolean {
  const probe = new Uint8Array(301);
  for (let i = 0; i < probe.length; i++) probe[i] = (i * 151 + 7) & 255;
  try {
    const whole = crc32Js(0, probe, 0, probe.length);
    const head = crc32Js(0, probe, 0, 100);
    if ((fn(probe, 0) >>> 0) !== whole || (fn(probe.subarray(100), head) >>> 0) !== whole) {
      return false;
    }
  } catch {
    return false;
  }
  native = fn;
  return true;
}

/**
 * Loads zlib's CRC-32 (`node:zlib`) for {@linkcode crc32}: for long-lived processes that
 * checksum many messages (a mount's server), as loading it costs some 20 ms.
 *
 * @returns Whether it is used (false where there is none).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32, loadNativeCrc32 } from "./_crc32.ts";
 * await loadNativeCrc32();
 * const kib = new Uint8Array(1024).fill(97);
 * assert.equal(crc32(0, kib), crc32(crc32(0, kib, 0, 10), kib, 10)); // either way, one CRC
 * ```
 */
export async function loadNativeCrc32(): Promise<boolean> {
  try {
    const zlib = await import("node:zlib");
    const fn = (zlib as { crc32?: (b: Uint8Array, crc: number) => number }).crc32;
    return typeof fn === "function" && useNativeCrc32(fn);
  } catch {
    return false;
  }
}
