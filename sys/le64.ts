/**
 * 64-bit little-endian fields read and written as JavaScript numbers, for the structures fsbus
 * shares with the kernel or with other processes (FUSE messages, io_uring entries, mq index
 * records): two 32-bit halves, no `BigInt` per field. Values must stay within ±2^53.
 *
 * @module
 */

/**
 * Reads an unsigned 64-bit field as a number.
 *
 * @param v The view.
 * @param at The field's offset.
 * @returns The value (exact below 2^53).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getU64, setU64 } from "./le64.ts";
 * const v = new DataView(new ArrayBuffer(8));
 * setU64(v, 0, 2 ** 40 + 7);
 * assert.equal(getU64(v, 0), 2 ** 40 + 7);
 * ```
 */
export function getU64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 4294967296;
}

/**
 * Reads a signed 64-bit field as a number.
 *
 * @param v The view.
 * @param at The field's offset.
 * @returns The value (exact within ±2^53).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getI64, setU64 } from "./le64.ts";
 * const v = new DataView(new ArrayBuffer(8));
 * setU64(v, 0, -5);
 * assert.equal(getI64(v, 0), -5);
 * ```
 */
export function getI64(v: DataView, at: number): number {
  return v.getInt32(at + 4, true) * 4294967296 + v.getUint32(at, true);
}

/**
 * Writes a number into a 64-bit field (a negative one as its two's complement).
 *
 * @param v The view.
 * @param at The field's offset.
 * @param n The value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { setU64 } from "./le64.ts";
 * const v = new DataView(new ArrayBuffer(8));
 * setU64(v, 0, 1);
 * assert.equal(v.getBigUint64(0, true), 1n);
 * ```
 */
export function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n >>> 0, true);
  v.setUint32(at + 4, Math.floor(n / 4294967296) >>> 0, true);
}
