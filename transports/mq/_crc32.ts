/**
 * CRC-32 (the IEEE polynomial of zlib and Ethernet), slicing by eight bytes: the checksums
 * of an mq group's index records and of its messages' bytes.
 *
 * @module
 */

const TABLE = new Uint32Array(256 * 8);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[i] = c >>> 0;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 8; t++) {
    const prev = TABLE[(t - 1) * 256 + i]!;
    TABLE[t * 256 + i] = (prev >>> 8) ^ TABLE[prev & 255]!;
  }
}

/**
 * Continues a CRC-32 over more bytes.
 *
 * @param crc The CRC so far (0 to start).
 * @param b The bytes.
 * @param from The first byte.
 * @param to The end (exclusive).
 * @returns The CRC including `b[from, to)`.
 *
 * @example
 * ```ts
 * import { crc32 } from "./_crc32.ts";
 * const c = crc32(0, new TextEncoder().encode("123456789"));
 * if (c !== 0xcbf43926) throw new Error("bad crc");
 * ```
 */
export function crc32(crc: number, b: Uint8Array, from = 0, to = b.length): number {
  const T = TABLE;
  let c = ~crc;
  let i = from;
  for (; i + 8 <= to; i += 8) {
    const a = c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    c = T[1792 + (a & 255)]! ^ T[1536 + ((a >>> 8) & 255)]! ^ T[1280 + ((a >>> 16) & 255)]! ^
      T[1024 + (a >>> 24)]! ^ T[768 + b[i + 4]!]! ^ T[512 + b[i + 5]!]! ^ T[256 + b[i + 6]!]! ^
      T[b[i + 7]!]!;
  }
  for (; i < to; i++) c = T[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return ~c >>> 0;
}
