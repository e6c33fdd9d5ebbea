/**
 * CLOCK_MONOTONIC through libc, comparable across processes (unlike `performance.now()`).
 *
 * @module
 */

import { check, libc } from "./libc.ts";

const CLOCK_MONOTONIC = 1;
const ts = new BigInt64Array(2);
const tsBytes = new Uint8Array(ts.buffer);

/**
 * The monotonic clock in nanoseconds, the same clock in every process on the machine.
 *
 * @returns Nanoseconds since an arbitrary point (boot, on Linux).
 *
 * @example Measure an interval
 * ```ts
 * import assert from "node:assert/strict";
 * import { monotonicNs } from "./clock.ts";
 * const t0 = monotonicNs();
 * const elapsedUs = Number(monotonicNs() - t0) / 1000;
 * assert.ok(elapsedUs >= 0);
 * ```
 */
export function monotonicNs(): bigint {
  check(libc().clock_gettime(CLOCK_MONOTONIC, tsBytes), "clock_gettime");
  return ts[0]! * 1_000_000_000n + ts[1]!;
}
