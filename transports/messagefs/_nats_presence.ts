/**
 * What NATS nodes of a messagefs network say about themselves on the presence subject
 * (`P.p`): heartbeats, name claims, queries and goodbyes, as JSON; and how names become
 * subject tokens. Read from messages other processes wrote, so every field is checked.
 *
 * @module
 */

import { checkInfo, type NodeInfo } from "./_info.ts";

type Info = NodeInfo;

const decoder = new TextDecoder();

/** A presence message: `hb` (heartbeat), `bye`, `claim` (of a name) or `query`. */
export interface PresenceMsg {
  /** What it says. */
  t: "hb" | "bye" | "claim" | "query";
  /** The node that says it (every kind but `query`). */
  info?: Info;
}

/**
 * One subject token for a name: "." (the one character names allow that NATS does not) and
 * "%" escaped.
 *
 * @param s The name.
 * @returns The token.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { token } from "./_nats_presence.ts";
 * assert.equal(token("a.b"), "a%2Eb");
 * ```
 */
export function token(s: string): string {
  return s.replace(/%/g, "%25").replace(/\./g, "%2E");
}

function parseInfo(raw: unknown): Info | undefined {
  const i = checkInfo(raw);
  return i !== undefined && /^[0-9a-f-]{36}$/.test(i.id) ? i : undefined;
}

/**
 * A presence message from its bytes, or `undefined` when it is not one (too large, not JSON,
 * an unknown kind, or a node description that is not well formed).
 *
 * @param bytes The message.
 * @returns The message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePresence } from "./_nats_presence.ts";
 * assert.deepEqual(parsePresence(new TextEncoder().encode('{"t":"query"}')), { t: "query" });
 * assert.equal(parsePresence(new TextEncoder().encode("hello")), undefined);
 * ```
 */
export function parsePresence(bytes: Uint8Array): PresenceMsg | undefined {
  if (bytes.length > 256 * 1024) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
  const p = raw as { t?: unknown; info?: unknown };
  if (typeof p !== "object" || p === null) return undefined;
  if (p.t !== "hb" && p.t !== "bye" && p.t !== "claim" && p.t !== "query") return undefined;
  if (p.t === "query") return { t: "query" };
  const info = parseInfo(p.info);
  return info ? { t: p.t, info } : undefined;
}
