/**
 * Reading the fsbus headers of a NATS message straight from its raw header block, for a
 * bridge's NATS and JetStream sources: the values the client's `MsgHdrs` would give (`Key:
 * value` lines, the value trimmed, the first of a repeated key), decoding and splitting only
 * the lines that change from message to message (the id and time) when the others are the
 * same bytes as in the sender's last block (its origin, topic and host: see `headerBlock`),
 * and the time read without `Date.parse` within a second already seen.
 *
 * @module
 */

import { HEADER } from "./_envelope.ts";

/** The fsbus headers of a message, by name. */
export type Fields = Partial<Record<(typeof HEADER)[keyof typeof HEADER], string>>;

const WANTED: ReadonlySet<string> = new Set(Object.values(HEADER));
/** The lines that change with every message: a block's remembered part ends before them. */
const VARYING: ReadonlySet<string> = new Set([HEADER.id, HEADER.time]);
const CR = 13;
const LF = 10;
const dec = new TextDecoder();

/** Where the line starting at `at` ends (its CR LF), or the block's end. */
function lineEnd(bytes: Uint8Array, at: number): number {
  for (let i = at; i + 1 < bytes.length; i++) {
    if (bytes[i] === CR && bytes[i + 1] === LF) return i;
  }
  return bytes.length;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/**
 * Reads the fsbus fields of header blocks (`NATS/1.0\r\nKey: value\r\n...\r\n\r\n`, the
 * first line being the status line), remembering the lines before the first id or time line
 * of the last block read: the next block that starts with the same bytes has only the rest
 * read. One reader per source (one sender's blocks follow one another).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeaderReader } from "./_headers.ts";
 * const r = new HeaderReader();
 * const block = (id: string) =>
 *   new TextEncoder().encode(`NATS/1.0\r\nFsbus-Origin: o1\r\nFsbus-Id: ${id}\r\n\r\n`);
 * assert.deepEqual(r.read(block("a")), { "Fsbus-Origin": "o1", "Fsbus-Id": "a" });
 * assert.deepEqual(r.read(block("b")), { "Fsbus-Origin": "o1", "Fsbus-Id": "b" });
 * ```
 */
export class HeaderReader {
  /** The bytes of the block's beginning remembered (its status line and fixed lines). */
  #prefix: Uint8Array = new Uint8Array(0);
  /** The fields of those lines. */
  #fields: Record<string, string> = {};

  /**
   * The fsbus fields of a header block.
   *
   * @param block The raw header block.
   * @returns Each fsbus header's value (the first of a repeated one), trimmed.
   */
  read(block: Uint8Array): Fields {
    const out: Record<string, string> = {};
    const prefix = this.#prefix;
    if (prefix.length > 0 && startsWith(block, prefix)) {
      const fields = this.#fields;
      for (const k in fields) out[k] = fields[k]!;
      lines(dec.decode(block.subarray(prefix.length)), 0, out);
      return out as Fields;
    }
    lines(dec.decode(block), 1, out);
    // Remember the lines before the first varying one, up to a line's end (a block that goes
    // on with the same bytes could otherwise continue the last line).
    this.#prefix = new Uint8Array(0);
    this.#fields = {};
    const first = lineEnd(block, 0);
    if (first >= block.length) return out as Fields;
    const kept: Record<string, string> = {};
    let at = first + 2;
    while (at < block.length) {
      const end = lineEnd(block, at);
      if (end >= block.length) break; // no CR LF: not remembered
      const one: Record<string, string> = {};
      lines(dec.decode(block.subarray(at, end)), 0, one);
      const k = Object.keys(one)[0];
      if (k !== undefined && VARYING.has(k)) break;
      if (k !== undefined && kept[k] === undefined) kept[k] = one[k]!;
      at = end + 2;
    }
    this.#prefix = block.slice(0, Math.min(at, block.length));
    this.#fields = kept;
    return out as Fields;
  }
}

/** Reads the `Key: value` lines of `text` from the `skip`-th on into `out` (first key wins). */
function lines(text: string, skip: number, out: Record<string, string>): void {
  const all = text.split("\r\n");
  for (let i = skip; i < all.length; i++) {
    const line = all[i]!;
    const at = line.indexOf(":");
    if (at < 0) continue;
    const k = line.slice(0, at);
    if (WANTED.has(k) && out[k] === undefined) out[k] = line.slice(at + 1).trim();
  }
}

/**
 * The text of a message's subject bytes, decoded once for each run of messages with the same
 * subject (a source reads one subject, or a few): the client would decode them for every
 * message. One per source.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SubjectReader } from "./_headers.ts";
 * const r = new SubjectReader();
 * const enc = new TextEncoder();
 * assert.equal(r.read(enc.encode("app.events")), "app.events");
 * assert.equal(r.read(enc.encode("app.events")), "app.events");
 * assert.equal(r.read(enc.encode("app.other")), "app.other");
 * ```
 */
export class SubjectReader {
  #bytes: Uint8Array = new Uint8Array(0);
  #text = "";

  /**
   * The subject's text.
   *
   * @param bytes The subject's bytes, as the client keeps them.
   * @returns Their UTF-8 text (as the client's `subject` gives).
   */
  read(bytes: Uint8Array): string {
    if (bytes.length !== this.#bytes.length || !startsWith(bytes, this.#bytes)) {
      this.#text = dec.decode(bytes);
      this.#bytes = bytes.slice();
    }
    return this.#text;
  }
}

/** The second last read by {@linkcode parseTime}: its text up to the dot, and its time (ms). */
let second = { text: "", from: 0 };

/**
 * A header's time (`2026-12-02T13:10:35.123Z`, as `Date.prototype.toISOString` writes it) in
 * ms since the epoch: `Date.parse` for the first of each second, then the milliseconds added
 * to that second's start. Any other form goes to `Date.parse` as it is.
 *
 * @param text The header's value.
 * @returns The time in ms, NaN when not a time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTime } from "./_headers.ts";
 * assert.equal(parseTime("2026-12-02T13:10:35.123Z"), Date.parse("2026-12-02T13:10:35.123Z"));
 * assert.equal(parseTime("2026-12-02T13:10:35.999Z"), Date.parse("2026-12-02T13:10:35.999Z"));
 * assert.ok(Number.isNaN(parseTime("soon")));
 * ```
 */
export function parseTime(text: string): number {
  if (text.length === 24 && second.text !== "" && text.charCodeAt(23) === 0x5a) {
    const a = text.charCodeAt(20) - 48;
    const b = text.charCodeAt(21) - 48;
    const c = text.charCodeAt(22) - 48;
    if (
      a >= 0 && a <= 9 && b >= 0 && b <= 9 && c >= 0 && c <= 9 && text.startsWith(second.text)
    ) {
      return second.from + a * 100 + b * 10 + c;
    }
  }
  const t = Date.parse(text);
  // Only a time in the canonical form (which Date writes back the same) is remembered.
  if (text.length === 24 && Number.isFinite(t) && new Date(t).toISOString() === text) {
    second = { text: text.slice(0, 20), from: t - Number(text.slice(20, 23)) };
  }
  return t;
}
