/**
 * The on-disk layout of an mq group's hidden index (`.mq/index`): a one-page header, then
 * one fixed-size record per message, record `seq` at `HEADER + seq * RECORD`.
 *
 * @module
 */

/** The header's size: one page, so hole punching never touches it. */
export const HEADER = 4096;
/** The size of one index record. */
export const RECORD = 64;
/** The header's first bytes. */
export const MAGIC: Uint8Array = new TextEncoder().encode("fsbusmq1");

/** Header field: the global sequence number below which history is trimmed (u64). */
export const H_CUTOFF = 8;

/** Record field offsets. */
export const R = {
  /** u8: 0 = intent (write in progress, or torn), 1 = committed. */
  STATE: 0,
  /** u8: FLAG_* bits. */
  FLAGS: 1,
  /** u32: the stream's id (its line in `.mq/streams`). */
  STREAM: 4,
  /** u64: the global sequence number (equals the record's position). */
  SEQ: 8,
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

/**
 * Reads a u64 field as a number (values stay below 2^53).
 *
 * @param v The view.
 * @param at The field's offset.
 * @returns The value.
 */
export function u64(v: DataView, at: number): number {
  return v.getUint32(at, true) + v.getUint32(at + 4, true) * 4294967296;
}

/**
 * Writes a number into a u64 field.
 *
 * @param v The view.
 * @param at The field's offset.
 * @param n The value.
 */
export function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n >>> 0, true);
  v.setUint32(at + 4, Math.floor(n / 4294967296), true);
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
}

/**
 * Encodes a record into `view` at `at`.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @param r The fields.
 */
export function encodeRecord(v: DataView, at: number, r: RecordFields): void {
  v.setUint8(at + R.STATE, r.state);
  v.setUint8(at + R.FLAGS, r.flags);
  v.setUint16(at + 2, 0, true);
  v.setUint32(at + R.STREAM, r.stream, true);
  setU64(v, at + R.SEQ, r.seq);
  setU64(v, at + R.OFFSET, r.offset);
  setU64(v, at + R.LENGTH, r.length);
  setU64(v, at + R.LOCAL, r.local);
  setU64(v, at + R.TIME, r.timeUs);
  setU64(v, at + R.CUM, r.cum);
  setU64(v, at + R.ORDER, r.order);
}

/**
 * Decodes the record in `view` at `at`.
 *
 * @param v The view.
 * @param at Where the record starts.
 * @returns The fields.
 */
export function decodeRecord(v: DataView, at: number): RecordFields {
  return {
    state: v.getUint8(at + R.STATE),
    flags: v.getUint8(at + R.FLAGS),
    stream: v.getUint32(at + R.STREAM, true),
    seq: u64(v, at + R.SEQ),
    offset: u64(v, at + R.OFFSET),
    length: u64(v, at + R.LENGTH),
    local: u64(v, at + R.LOCAL),
    timeUs: u64(v, at + R.TIME),
    cum: u64(v, at + R.CUM),
    order: u64(v, at + R.ORDER),
  };
}
