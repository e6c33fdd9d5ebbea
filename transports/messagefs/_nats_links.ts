/**
 * Delivery once and in order over NATS core, which is at most once: the sender numbers each
 * message per recipient (a link) and keeps it until acknowledged; the recipient delivers each
 * link's messages once and in order (holding any that come early) and acknowledges
 * cumulatively. This file keeps the numbers; the NATS carrier in `nats.ts` sends, resends and
 * acknowledges.
 *
 * @module
 */

import type { Header } from "./envelope.ts";

const decoder = new TextDecoder();

/** A message kept for a resend. */
export interface Pending {
  /** The encoded message. */
  bytes: Uint8Array;
}

/** The sender's side of a link: what it numbered and what is not acknowledged. */
export interface Link {
  /** Messages sent on this link so far. */
  n: number;
  /** Sent and not acknowledged, by link number. */
  unacked: Map<number, Pending>;
  /**
   * When the link last made progress: an acknowledgement that moved, a resend, or the first
   * message after a quiet time. A resend comes only after RETRY_MS without progress, so a
   * recipient that is merely slow is not flooded with copies.
   */
  progressAt: number;
  /** Set when its node went silent: unacknowledged messages are kept until KEEP_MS after. */
  goneAt?: number | undefined;
}

/** The recipient's side of a link: what to deliver next, and what came early. */
export interface Incoming {
  /** The next link number to deliver. */
  next: number;
  /** Messages that came before their turn. */
  held: Map<number, { header: Header; data: Uint8Array }>;
}

/**
 * A new link, with nothing sent.
 *
 * @returns The link.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newLink } from "./_nats_links.ts";
 * assert.equal(newLink().n, 0);
 * ```
 */
export function newLink(): Link {
  return { n: 0, unacked: new Map(), progressAt: Date.now() };
}

/**
 * Where the recipient starts again: the oldest unacknowledged number, or the last one sent
 * (the sender gives the base with each message when something is unacknowledged).
 *
 * @param link The link.
 * @returns The number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newLink, resendBase } from "./_nats_links.ts";
 * const link = newLink();
 * link.n = 3;
 * link.unacked.set(2, { bytes: new Uint8Array() });
 * assert.equal(resendBase(link), 2);
 * ```
 */
export function resendBase(link: Link): number {
  for (const n of link.unacked.keys()) return n;
  return link.n;
}

/**
 * An acknowledgement from its bytes (`{"id": SENDER, "upto": N}`), or `undefined`.
 *
 * @param bytes The message.
 * @returns Who acknowledged, and up to which number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAck } from "./_nats_links.ts";
 * const ack = parseAck(new TextEncoder().encode('{"id":"x","upto":4}'));
 * assert.deepEqual(ack, { id: "x", upto: 4 });
 * ```
 */
export function parseAck(bytes: Uint8Array): { id: string; upto: number } | undefined {
  let raw: { id?: unknown; upto?: unknown };
  try {
    raw = JSON.parse(decoder.decode(bytes));
  } catch {
    return;
  }
  if (typeof raw?.id !== "string" || !Number.isSafeInteger(raw.upto)) return;
  return { id: raw.id, upto: raw.upto as number };
}

/**
 * Forgets what the recipient acknowledged (everything up to `upto`); the link made progress
 * when that was anything.
 *
 * @param link The link.
 * @param upto The last number acknowledged.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { acknowledge, newLink } from "./_nats_links.ts";
 * const link = newLink();
 * for (const n of [1, 2, 3]) link.unacked.set(n, { bytes: new Uint8Array() });
 * acknowledge(link, 2);
 * assert.deepEqual([...link.unacked.keys()], [3]);
 * ```
 */
export function acknowledge(link: Link, upto: number): void {
  let moved = false;
  for (const n of link.unacked.keys()) {
    if (n > upto) break;
    link.unacked.delete(n);
    moved = true;
  }
  if (moved) link.progressAt = Date.now();
}

/**
 * A new incoming link: it delivers from number 1.
 *
 * @returns The state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newIncoming } from "./_nats_links.ts";
 * assert.equal(newIncoming().next, 1);
 * ```
 */
export function newIncoming(): Incoming {
  return { next: 1, held: new Map() };
}

/**
 * Moves on to `base` when the sender gave up on what came before it (it took this node for
 * gone).
 *
 * @param rx The incoming link.
 * @param base The sender's base.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newIncoming, skipTo } from "./_nats_links.ts";
 * const rx = newIncoming();
 * skipTo(rx, 5);
 * assert.equal(rx.next, 5);
 * ```
 */
export function skipTo(rx: Incoming, base: number): void {
  if (base > rx.next) {
    // The sender gave up on what came before `base` (it took this node for gone).
    for (const k of rx.held.keys()) if (k < base) rx.held.delete(k);
    rx.next = base;
  }
}

/**
 * Takes message `n` of a link: delivers it and any held ones that follow when it is next,
 * holds it when it is early, and drops a resend of what was delivered or held.
 *
 * @param rx The incoming link.
 * @param n The message's number.
 * @param header Its header.
 * @param data Its payload (copied when held).
 * @param accept Delivers one message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { Header } from "./envelope.ts";
 * import { newIncoming, receive } from "./_nats_links.ts";
 * const rx = newIncoming();
 * const got: number[] = [];
 * const accept = (_h: Header, d: Uint8Array) => void got.push(d[0]!);
 * const header = {} as Header;
 * receive(rx, 2, header, new Uint8Array([2]), accept); // early: held
 * receive(rx, 1, header, new Uint8Array([1]), accept); // its turn: 1, then 2
 * receive(rx, 1, header, new Uint8Array([1]), accept); // a resend: dropped
 * assert.deepEqual(got, [1, 2]);
 * ```
 */
export function receive(
  rx: Incoming,
  n: number,
  header: Header,
  data: Uint8Array,
  accept: (header: Header, data: Uint8Array) => void,
): void {
  if (n < rx.next || rx.held.has(n)) return; // a resend of what was delivered or held
  if (n > rx.next) {
    if (rx.held.size < 100_000) rx.held.set(n, { header, data: data.slice() });
    return;
  }
  accept(header, data);
  rx.next++;
  for (let h = rx.held.get(rx.next); h !== undefined; h = rx.held.get(rx.next)) {
    rx.held.delete(rx.next);
    accept(h.header, h.data);
    rx.next++;
  }
}
