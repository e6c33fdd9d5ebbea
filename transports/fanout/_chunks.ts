/**
 * How a write is cut into atomic pieces: whole items grouped while they fit, and an item
 * larger than the limit split into pieces of the limit, as /dev/fanout splits a long write.
 *
 * @module
 */

/** One piece: a range of the concatenated items. */
export interface Piece {
  /** Offset of the first byte, in the concatenation of the items. */
  start: number;
  /** Offset just past the last byte. */
  end: number;
}

/**
 * Plans the writes for items of the given sizes under a per-write limit: consecutive items
 * share a write while the total fits; an item larger than `max` gets writes of its own, of
 * `max` bytes each (the last one shorter).
 *
 * @param sizes The items' sizes, in order.
 * @param max The largest write.
 * @returns The pieces, in order, covering every byte once.
 *
 * @example
 * ```ts
 * import { planWrites } from "./_chunks.ts";
 * planWrites([10, 10, 30], 25); // [{start:0,end:20},{start:20,end:45},{start:45,end:50}]
 * ```
 */
export function planWrites(sizes: readonly number[], max: number): Piece[] {
  if (!(max > 0)) throw new RangeError(`Invalid write limit ${max}`);
  const pieces: Piece[] = [];
  let off = 0;
  let open: Piece | undefined;
  for (const size of sizes) {
    if (size > max) {
      if (open) pieces.push(open);
      open = undefined;
      for (let s = 0; s < size; s += max) {
        pieces.push({ start: off + s, end: off + Math.min(size, s + max) });
      }
    } else if (size > 0) {
      if (open && open.end - open.start + size <= max) {
        open.end += size;
      } else {
        if (open) pieces.push(open);
        open = { start: off, end: off + size };
      }
    }
    off += size;
  }
  if (open) pieces.push(open);
  return pieces;
}

/**
 * Splits one buffer into pieces of at most `max` bytes.
 *
 * @param data The bytes.
 * @param max The largest piece.
 * @returns Views of `data`, in order.
 *
 * @example
 * ```ts
 * import { splitChunks } from "./_chunks.ts";
 * splitChunks(new Uint8Array(10), 4).map((c) => c.length); // [4, 4, 2]
 * ```
 */
export function splitChunks(data: Uint8Array, max: number): Uint8Array[] {
  if (!(max > 0)) throw new RangeError(`Invalid write limit ${max}`);
  const out: Uint8Array[] = [];
  for (let off = 0; off < data.length; off += max) out.push(data.subarray(off, off + max));
  return out;
}
