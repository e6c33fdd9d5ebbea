/**
 * The envelope a messagefs message travels in, the same on every carrier (an inbox file, a
 * NATS message): the 4 bytes `MFS1`, a 4-byte little-endian header length, a JSON header,
 * then the payload bytes untouched.
 *
 * @module
 */

/**
 * What an envelope says about its payload.
 *
 * @example
 * ```ts
 * import type { Header } from "./envelope.ts";
 * const h: Header = { id: "3f2a1b9c-0000-4000-8000-000000000000", from: "3F2A1B", seq: 1, t: 0 };
 * ```
 */
export interface Header {
  /** The sender's UUID. */
  id: string;
  /** The sender's name. */
  from: string;
  /** The sender's sequence number: 1 for its first message, one more for each. */
  seq: number;
  /** When it was sent, in milliseconds since the epoch. */
  t: number;
  /** The group of a broadcast ("" for the root); absent for a direct message. */
  g?: string;
  /** The recipient of a direct message, by UUID. */
  to?: string;
  /**
   * Per-recipient link numbers (carriers that resend: NATS): for each recipient's UUID, the
   * count of messages this sender has sent it, this one included, and the first number the
   * sender still holds for it (what came before is delivered, or given up).
   */
  l?: Record<string, [number, number]>;
}

const MAGIC = [0x4d, 0x46, 0x53, 0x31]; // "MFS1"
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The largest header accepted when reading. */
export const MAX_HEADER = 64 * 1024;

/**
 * Packs a header and a payload.
 *
 * @param header The header.
 * @param data The payload.
 * @returns The envelope's bytes.
 *
 * @example
 * ```ts
 * import { decode, encode } from "./envelope.ts";
 * const id = crypto.randomUUID();
 * const bytes = encode({ id, from: "A", seq: 1, t: Date.now() }, new Uint8Array([1, 2]));
 * decode(bytes)?.data; // Uint8Array [1, 2]
 * ```
 */
export function encode(header: Header, data: Uint8Array): Uint8Array<ArrayBuffer> {
  const h = encoder.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  out.set(MAGIC);
  new DataView(out.buffer).setUint32(4, h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/**
 * Unpacks an envelope, checking everything: bytes from an inbox or the network are
 * untrusted.
 *
 * @param bytes The envelope.
 * @returns The header and the payload (a view into `bytes`), or undefined when the bytes are
 *   not a valid envelope.
 *
 * @example
 * ```ts
 * import { decode } from "./envelope.ts";
 * decode(new TextEncoder().encode("hello")); // undefined
 * ```
 */
export function decode(bytes: Uint8Array): { header: Header; data: Uint8Array } | undefined {
  if (bytes.length < 8) return undefined;
  for (let i = 0; i < 4; i++) if (bytes[i] !== MAGIC[i]) return undefined;
  const len = (bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16)) + bytes[7]! * 0x1000000;
  if (len > MAX_HEADER || 8 + len > bytes.length) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes.subarray(8, 8 + len)));
  } catch {
    return undefined;
  }
  const h = raw as Record<string, unknown>;
  if (typeof h !== "object" || h === null) return undefined;
  if (typeof h.id !== "string" || !UUID.test(h.id)) return undefined;
  if (typeof h.from !== "string" || h.from.length === 0 || h.from.length > 64) return undefined;
  if (!Number.isSafeInteger(h.seq) || (h.seq as number) < 1) return undefined;
  if (typeof h.t !== "number" || !Number.isFinite(h.t)) return undefined;
  if (h.g !== undefined && (typeof h.g !== "string" || h.g.length > 255)) return undefined;
  // `to` is only ever compared with the recipient's own UUID.
  if (h.to !== undefined && typeof h.to !== "string") return undefined;
  if (h.l !== undefined) {
    if (typeof h.l !== "object" || h.l === null || Array.isArray(h.l)) return undefined;
    for (const v of Object.values(h.l)) {
      if (!Array.isArray(v) || v.length !== 2) return undefined;
      const [n, base] = v;
      if (!Number.isSafeInteger(n) || !Number.isSafeInteger(base)) return undefined;
      if (base < 1 || n < base) return undefined;
    }
  }
  return { header: h as unknown as Header, data: bytes.subarray(8 + len) };
}
