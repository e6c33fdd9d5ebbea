/**
 * What a node says about itself (name, groups, process), as both carriers keep it: the local
 * carrier in its registry files, the NATS carrier in presence messages. Read from files or
 * messages other processes wrote, so every field is checked before use.
 *
 * @module
 */

import { checkGroup, checkNodeName } from "./names.ts";
import type { Peer } from "./node.ts";

/** A node's description, as carried by both transports. */
export interface NodeInfo {
  /** The node's id. */
  id: string;
  /** The node's name. */
  name: string;
  /** The groups the node joined. */
  groups: string[];
  /** The host the node runs on. */
  host: string;
  /** The node's process id. */
  pid: number;
  /** When the node joined, in milliseconds since the epoch. */
  since: number;
}

/**
 * `raw` as a node's description when every field is well formed (a valid name, at most 1,024
 * valid groups, a safe-integer pid, a host and a time); else `undefined`. The id is only checked
 * to be a string: each carrier checks it against what it expects.
 *
 * @param raw A parsed JSON value.
 * @returns The description, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkInfo } from "./_info.ts";
 * const info = { id: "n1", name: "alice", groups: ["ops/db"], host: "h", pid: 7, since: 0 };
 * assert.deepEqual(checkInfo(info), info);
 * assert.equal(checkInfo({ ...info, name: "" }), undefined);
 * assert.equal(checkInfo({ ...info, groups: ["/ops/db/"] }), undefined); // not normalised
 * assert.equal(checkInfo("alice"), undefined);
 * ```
 */
export function checkInfo(raw: unknown): NodeInfo | undefined {
  const i = raw as Record<string, unknown>;
  if (typeof i !== "object" || i === null || typeof i.id !== "string") return undefined;
  if (typeof i.name !== "string" || i.name.length === 0 || i.name.length > 64) return undefined;
  if (!Array.isArray(i.groups) || i.groups.length > 1024) return undefined;
  try {
    if (!i.groups.every((g) => typeof g === "string" && checkGroup(g) === g && g !== "")) {
      return undefined;
    }
    checkNodeName(i.name);
  } catch {
    return undefined;
  }
  if (typeof i.host !== "string" || !Number.isSafeInteger(i.pid)) return undefined;
  if (typeof i.since !== "number") return undefined;
  return i as unknown as NodeInfo;
}

/**
 * A node's description as the `Peer` the library hands out.
 *
 * @param i The description.
 * @returns The peer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toPeer } from "./_info.ts";
 * const p = toPeer({ id: "n1", name: "alice", groups: [], host: "h", pid: 7, since: 0 });
 * assert.equal(p.since.getTime(), 0);
 * ```
 */
export function toPeer(i: NodeInfo): Peer {
  return {
    id: i.id,
    name: i.name,
    groups: i.groups,
    pid: i.pid,
    host: i.host,
    since: new Date(i.since),
  };
}
