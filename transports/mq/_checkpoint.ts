/**
 * `.mq/checkpoint`: the state of a group's index at one sequence number (each stream's end,
 * message count and last message there, the byte count and the `order` offset), so that
 * index records below it can be freed once the depth cutoff has passed them. It is written
 * (to a temporary file, then renamed) before any record it covers is freed.
 *
 * ```
 * fsbus mq checkpoint 1
 * seq 4096
 * cum 4194304
 * order 8192
 * stream 0 4194304 4096 4095
 * crc 1a2b3c4d
 * ```
 *
 * @module
 */

import { crc32 } from "./_crc32.ts";
import type { GroupDir } from "./_files.ts";
import { MAX_VALUE } from "./_layout.ts";

const HEAD = "fsbus mq checkpoint 1\n";
const MAX_BYTES = 64 * 1024 * 1024;
const encoder = new TextEncoder();

/** One stream's state at a checkpoint. */
export interface CheckpointStream {
  /** The incarnation's id. */
  id: number;
  /** The end of its last message below the checkpoint. */
  end: number;
  /** Its messages below the checkpoint. */
  count: number;
  /** The sequence number of its last message below the checkpoint. */
  lastSeq: number;
}

/** The state of the index at one sequence number. */
export interface Checkpoint {
  /** The sequence number: records from here on are kept. */
  seq: number;
  /** The group's bytes written before it. */
  cum: number;
  /** The `order` offset of its record. */
  order: number;
  /** Every incarnation with messages below it. */
  streams: CheckpointStream[];
}

/**
 * The text of a checkpoint.
 *
 * @param cp The checkpoint.
 * @returns The text, ending with its CRC line.
 */
export function renderCheckpoint(cp: Checkpoint): string {
  let text = `${HEAD}seq ${cp.seq}\ncum ${cp.cum}\norder ${cp.order}\n`;
  for (const s of cp.streams) text += `stream ${s.id} ${s.end} ${s.count} ${s.lastSeq}\n`;
  const crc = crc32(0, encoder.encode(text)).toString(16).padStart(8, "0");
  return `${text}crc ${crc}\n`;
}

/**
 * Parses a checkpoint's text.
 *
 * @param text The text.
 * @returns The checkpoint, or what is wrong with it.
 */
export function parseCheckpoint(text: string): Checkpoint | string {
  const crcAt = text.lastIndexOf("crc ");
  if (!text.startsWith(HEAD) || crcAt < 0) return "not a checkpoint";
  const body = text.slice(0, crcAt);
  const want = crc32(0, encoder.encode(body)).toString(16).padStart(8, "0");
  if (text.slice(crcAt) !== `crc ${want}\n`) return "checksum mismatch";
  const lines = body.slice(HEAD.length).split("\n");
  const num = (s: string | undefined): number => {
    const n = s !== undefined && /^\d{1,16}$/.test(s) ? Number(s) : NaN;
    return n <= MAX_VALUE ? n : NaN;
  };
  const field = (i: number, name: string): number => {
    const [key, value] = (lines[i] ?? "").split(" ");
    return key === name ? num(value) : NaN;
  };
  const cp: Checkpoint = {
    seq: field(0, "seq"),
    cum: field(1, "cum"),
    order: field(2, "order"),
    streams: [],
  };
  if (Number.isNaN(cp.seq + cp.cum + cp.order)) return "bad header lines";
  for (const line of lines.slice(3)) {
    if (line === "") continue;
    const [key, ...rest] = line.split(" ");
    const [id, end, count, lastSeq] = rest.map(num);
    if (key !== "stream" || rest.length !== 4 || Number.isNaN(id! + end! + count! + lastSeq!)) {
      return `bad line ${JSON.stringify(line.slice(0, 60))}`;
    }
    if (lastSeq! >= cp.seq) return `stream ${id} has a message past the checkpoint`;
    cp.streams.push({ id: id!, end: end!, count: count!, lastSeq: lastSeq! });
  }
  return cp;
}

/**
 * Reads a group's checkpoint.
 *
 * @param dir The group's directory.
 * @returns The checkpoint, undefined when there is none, or what is wrong with it.
 */
export function readCheckpoint(dir: GroupDir): Checkpoint | string | undefined {
  let text: string | undefined;
  try {
    text = dir.readText("meta", "checkpoint", MAX_BYTES);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return text === undefined ? undefined : parseCheckpoint(text);
}

/**
 * Writes a group's checkpoint (a temporary file, renamed over the old one).
 *
 * @param dir The group's directory.
 * @param cp The checkpoint.
 */
export function writeCheckpoint(dir: GroupDir, cp: Checkpoint): void {
  dir.writeText("meta", "checkpoint", renderCheckpoint(cp));
}
