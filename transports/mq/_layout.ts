/**
 * The on-disk layout of an mq group's hidden index (`.mq/index`): a one-page header, then
 * one fixed-size record per message, record `seq` at `HEADER + seq * RECORD`.
 *
 * Two formats share this layout, told apart by the header's first eight bytes:
 * - `fsbusmq2` (made by this version): bytes 8..15 of a record hold a checksum of the record
 *   (its other bytes and its position) and a CRC-32 of the message's bytes, so a damaged,
 *   misplaced or stale record is recognised, and a rewritten stream too.
 * - `fsbusmq1` (made by earlier versions): bytes 8..15 hold the record's position only. Such
 *   groups are read and written in their own format, with every check but the checksums.
 *
 * @module
 */

import { setU64 } from "../../sys/le64.ts";
/** The header's size: one page, so hole punching never touches it. */
export const HEADER = 4096;
/** The size of one index record. */
export const RECORD = 64;
/** The header's first bytes, format 2 (checksummed records). */
export const MAGIC: Uint8Array = new TextEncoder().encode("fsbusmq2");
/** The header's first bytes, format 1 (earlier versions, no checksums). */
export const MAGIC_V1: Uint8Array = new TextEncoder().encode("fsbusmq1");

/**
 * Header field: the global sequence number below which history is trimmed (u64), followed
 * (format 2) by a CRC-32 of its eight bytes (u32; zero with a zero cutoff in a new index).
 */
export const H_CUTOFF = 8;

/** Record field offsets. */
export const R = {
  /** u8: 0 = intent (write in progress, or torn), 1 = committed. */
  STATE: 0,
  /** u8: FLAG_* bits. */
  FLAGS: 1,
  /** u32: the stream's id (its line in `.mq/streams`). */
  STREAM: 4,
  /** Format 1: u64, the global sequence number (equals the record's position). */
  SEQ: 8,
  /** Format 2: u32, checksum of bytes 0..7 and 12..63 and the position (see recordCrc). */
  CRC: 8,
  /** Format 2: u32, CRC-32 of the message's bytes. */
  DATA_CRC: 12,
  /** u64: the message's offset in the stream file. */
  OFFSET: 16,
  /** u64: the message's length. */
  LENGTH: 24,
  /** u64: the message's number within its stream. */
  LOCAL: 32,
  /** u64: the write time, microseconds since the epoch. */
  TIME: 40,
  /** u64: the group's total bytes written before this message. */
  CUM: 48,
  /** u64: the offset of this message's entry in `order`. */
  ORDER: 56,
} as const;

/** Record state: a write in progress (or torn, when no writer holds the lock). */
export const INTENT = 0;
/** Record state: the message is complete and visible. */
export const COMMITTED = 1;
/** Record flag: the bytes were appended by a program that knows nothing of fsbus. */
export const FLAG_FOREIGN = 1;
/** The largest value a u64 field may hold (numbers stay exact below it). */
export const MAX_VALUE = Number.MAX_SAFE_INTEGER;

/**
 * Reads a u64 field as a number; values of 2^53 and more read as Infinity.
 *
 * @param v The view.
 * @param at The field's offset.
 * @returns The value.
 */
export function u64(v: DataView, at: number): number {
  const hi = v.getUint32(at + 4, true);
  if (hi > 0x1fffff) return Infinity;
  return v.getUint32(at, true) + hi * 4294967296;
}

/** The fields of one record. */
export interface RecordFields {
  state: number;
  flags: number;
  stream: number;
  seq: number;
  offset: number;
  length: number;
  local: number;
  timeUs: number;
  cum: number;
  order: number;
  /** Format 2: CRC-32 of the message's bytes. */
  dataCrc: number;
}

function mix(h: number, w: number): number {
  h = Math.imul(h ^ w, 0x9e3779b1);
  return (h << 13) | (h >>> 19);
}

/**
 * The checksum of the record in `view` at `at`, as if it were at position `seq`: a 32-bit
 * multiply-rotate hash over its words (all but the checksum's own) and the position, so any
 * change to one word, or a record moved, gives another value. Cheap enough to check every
 * record every time it is read.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @param seq Its position.
 * @returns The checksum.
 */
export function recordCrc(v: DataView, at: number, seq: number): number {
  let h = mix(0x6d71_0002, v.getUint32(at, true));
  h = mix(h, v.getUint32(at + 4, true));
  for (let i = at + R.DATA_CRC; i < at + RECORD; i += 4) h = mix(h, v.getUint32(i, true));
  h = mix(h, seq >>> 0);
  h = mix(h, Math.floor(seq / 4294967296));
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Encodes a record into `view` at `at`.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @param r The fields.
 * @param version The index format (1 or 2).
 */
export function encodeRecord(v: DataView, at: number, r: RecordFields, version: number): void {
  v.setUint8(at + R.STATE, r.state);
  v.setUint8(at + R.FLAGS, r.flags);
  v.setUint16(at + 2, 0, true);
  v.setUint32(at + R.STREAM, r.stream, true);
  setU64(v, at + R.OFFSET, r.offset);
  setU64(v, at + R.LENGTH, r.length);
  setU64(v, at + R.LOCAL, r.local);
  setU64(v, at + R.TIME, r.timeUs);
  setU64(v, at + R.CUM, r.cum);
  setU64(v, at + R.ORDER, r.order);
  if (version === 1) {
    setU64(v, at + R.SEQ, r.seq);
  } else {
    v.setUint32(at + R.DATA_CRC, r.dataCrc, true);
    v.setUint32(at + R.CRC, recordCrc(v, at, r.seq), true);
  }
}

/**
 * Decodes the record in `view` at `at`.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @param seq Its position (format 2 records do not hold it).
 * @param version The index format (1 or 2).
 * @returns The fields.
 */
export function decodeRecord(v: DataView, at: number, seq: number, version: number): RecordFields {
  return {
    state: v.getUint8(at + R.STATE),
    flags: v.getUint8(at + R.FLAGS),
    stream: v.getUint32(at + R.STREAM, true),
    seq: version === 1 ? u64(v, at + R.SEQ) : seq,
    offset: u64(v, at + R.OFFSET),
    length: u64(v, at + R.LENGTH),
    local: u64(v, at + R.LOCAL),
    timeUs: u64(v, at + R.TIME),
    cum: u64(v, at + R.CUM),
    order: u64(v, at + R.ORDER),
    dataCrc: version === 1 ? 0 : v.getUint32(at + R.DATA_CRC, true),
  };
}

/**
 * Checks what a record can show by itself: its checksum (format 2) or position (format 1),
 * its state, and that its numbers are in range.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @param seq The position it is read from.
 * @param version The index format (1 or 2).
 * @param state The state it must have (COMMITTED for the index, INTENT for `.mq/intent`).
 * @returns Why it is bad, or undefined when it is sound.
 */
export function recordProblem(
  v: DataView,
  at: number,
  seq: number,
  version: number,
  state = COMMITTED,
): string | undefined {
  if (version === 1) {
    if (u64(v, at + R.SEQ) !== seq) return "wrong position";
  } else if (v.getUint32(at + R.CRC, true) !== recordCrc(v, at, seq)) {
    return "checksum mismatch";
  }
  if (v.getUint8(at + R.STATE) !== state) return "not committed";
  if (v.getUint8(at + R.FLAGS) > FLAG_FOREIGN) return "unknown flags";
  const offset = u64(v, at + R.OFFSET);
  const length = u64(v, at + R.LENGTH);
  if (offset + length > MAX_VALUE) return "offset or length out of range";
  // Format 2 records are checksummed and each must follow the one before (see _index.ts):
  // their other numbers need no range check of their own.
  if (
    version === 1 &&
    (u64(v, at + R.LOCAL) > MAX_VALUE || u64(v, at + R.TIME) > MAX_VALUE ||
      u64(v, at + R.CUM) > MAX_VALUE || u64(v, at + R.ORDER) > MAX_VALUE)
  ) {
    return "a field out of range";
  }
  return undefined;
}
