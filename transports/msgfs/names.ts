/**
 * Message names: UUIDv7 with sub-millisecond precision (RFC 9562, method 3), strictly
 * increasing within a process, so that names sort by publication time and a publisher's
 * messages sort in the order it sent them.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";

/** The character codes of the hex digits. */
const HEX_CODES: number[] = Array.from({ length: 16 }, (_, i) => i.toString(16).charCodeAt(0));
/** An id's 36 character codes, dashes in place: filled in, then made a string at once (one
 * flat string, no concatenation). */
const codes: number[] = Array.from({ length: 36 }, (_, i) => [8, 13, 18, 23].includes(i) ? 45 : 48);
const pool = new Uint8Array(4096);
let poolPos = pool.length;
let lastMs = 0;
let lastSub = -1;

/** Writes `digits` hex digits of `v` (below 2^32) at `at`. */
function hex(at: number, v: number, digits: number): void {
  for (let i = at + digits - 1; i >= at; i--) {
    codes[i] = HEX_CODES[v & 15]!;
    v >>>= 4;
  }
}

/**
 * Makes a new message id: a UUIDv7 whose 12 `rand_a` bits hold the sub-millisecond fraction,
 * bumped when needed so that ids from one process strictly increase.
 *
 * @param nowMs A time to encode instead of now (for back-dated test messages); ids made with
 *   an explicit time are not part of the process's increasing sequence.
 * @returns The id, 36 lowercase characters.
 *
 * @example
 * ```ts
 * import { newId } from "./names.ts";
 * const a = newId();
 * const b = newId();
 * console.log(a < b); // true
 * ```
 */
export function newId(nowMs?: number): string {
  const t = nowMs ?? performance.timeOrigin + performance.now();
  let ms = Math.floor(t);
  let sub = Math.floor((t - ms) * 4096);
  if (nowMs === undefined) {
    if (ms < lastMs || (ms === lastMs && sub <= lastSub)) {
      ms = lastMs;
      sub = lastSub + 1;
      if (sub > 0xfff) {
        ms++;
        sub = 0;
      }
    }
    lastMs = ms;
    lastSub = sub;
  }
  if (poolPos + 8 > pool.length) {
    crypto.getRandomValues(pool);
    poolPos = 0;
  }
  const r = poolPos;
  poolPos += 8;
  hex(0, Math.floor(ms / 0x10000), 8);
  hex(9, ms % 0x10000, 4);
  hex(14, 0x7000 | sub, 4);
  hex(19, 0x8000 | ((pool[r]! & 0x3f) << 8) | pool[r + 1]!, 4);
  hex(24, (pool[r + 2]! << 16) | (pool[r + 3]! << 8) | pool[r + 4]!, 6);
  hex(30, (pool[r + 5]! << 16) | (pool[r + 6]! << 8) | pool[r + 7]!, 6);
  return String.fromCharCode.apply(null, codes);
}

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The publication time encoded in an fsbus message name, in milliseconds since the epoch
 * (with the sub-millisecond fraction), or `undefined` for a name that is not a UUIDv7.
 *
 * @param name The file name.
 * @returns Milliseconds since the epoch, or undefined.
 *
 * @example
 * ```ts
 * import { idTime, newId } from "./names.ts";
 * idTime(newId(1700000000000.5)); // 1700000000000.5
 * idTime("greeting.txt"); // undefined
 * ```
 */
export function idTime(name: string): number | undefined {
  if (name.length !== 36 || !UUID7.test(name)) return undefined;
  const ms = parseInt(name.slice(0, 8) + name.slice(9, 13), 16);
  return ms + parseInt(name.slice(15, 18), 16) / 4096;
}

/**
 * A key that sorts messages by publication time, then name: from the name for fsbus ids,
 * from the modification time for files written by other programs.
 *
 * @param name The file name.
 * @param mtimeMs The file's modification time in milliseconds (fractional allowed).
 * @returns A string key; compare keys with `<`.
 *
 * @example
 * ```ts
 * import { sortKey } from "./names.ts";
 * sortKey("x", 1700000000000) < sortKey("y", 1700000000001); // true
 * ```
 */
export function sortKey(name: string, mtimeMs: number): string {
  if (name.length === 36 && UUID7.test(name)) {
    return name.slice(0, 8) + name.slice(9, 13) + name.slice(15, 18) + name;
  }
  const ms = Math.floor(mtimeMs);
  const sub = Math.min(0xfff, Math.floor((mtimeMs - ms) * 4096));
  return ms.toString(16).padStart(12, "0") + sub.toString(16).padStart(3, "0") + name;
}

/**
 * Whether a directory entry is hidden from subscribers: dot files and fsbus's own
 * bookkeeping (temp directory, config, sweep marker) all start with ".".
 *
 * @param name The entry's name.
 * @returns True for hidden entries.
 *
 * @example
 * ```ts
 * import { isHidden } from "./names.ts";
 * isHidden(".fsbus-tmp"); // true
 * ```
 */
export function isHidden(name: string): boolean {
  return name.charCodeAt(0) === 0x2e;
}

/**
 * Checks a topic name: "/"-separated segments, none empty, hidden, "." or "..", and none a
 * lone wildcard character ("+", "#", "*"), which would otherwise become a directory of that
 * name.
 *
 * @param topic The topic, such as "sensors/kitchen" ("" is the bus's root).
 * @returns The topic, normalised (no leading or trailing "/").
 * @throws {FsbusError} With code "invalid" when a segment is not allowed.
 *
 * @example
 * ```ts
 * import { checkTopic } from "./names.ts";
 * checkTopic("/sensors/kitchen/"); // "sensors/kitchen"
 * ```
 */
export function checkTopic(topic: string): string {
  const t = topic.replace(/^\/+|\/+$/g, "");
  if (t === "") return "";
  for (const seg of t.split("/")) {
    if (seg === "" || seg.startsWith(".") || seg.includes("\0")) {
      throw new FsbusError(
        "invalid",
        `Cannot use "${topic}" as a topic: segments must be non-empty and not start with "."`,
      );
    }
    if (seg === "+" || seg === "#" || seg === "*") {
      throw new FsbusError(
        "invalid",
        `Cannot use "${topic}" as a topic: "${seg}" is not a wildcard (topics are directories: subscribe recursively to the topic above instead)`,
      );
    }
  }
  return t;
}
