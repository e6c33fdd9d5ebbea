/**
 * messagefs: nodes and groups. A node joins a named network with a name (by default the
 * first 6 hexadecimal characters of its UUID, uppercase) and any number of groups (paths such
 * as `ops/db`); it sends direct messages to other nodes by name, and broadcasts to a group,
 * which reaches every node in that group and in the groups below it, once each.
 *
 * On one machine no server is needed (the default): nodes find each other through a registry
 * under `$XDG_RUNTIME_DIR/fsbus/messagefs/NETWORK`, the kernel's flock tells when a node is
 * gone (even SIGKILLed), and each node's inbox is a msgfs directory bus, so nothing sent to a
 * live node is lost. Across machines, `nats` puts the network on a NATS server or cluster.
 *
 * @example Two nodes on one machine
 * ```ts
 * import { join } from "./mod.ts";
 *
 * const root = Deno.makeTempDirSync();
 * await using alice = await join({ root, name: "alice" });
 * await using bob = await join({ root, name: "bob", groups: ["ops/db"] });
 * await alice.send("bob", "hi bob");
 * await alice.broadcast("ops", "to everyone in ops");
 * let n = 0;
 * for await (const m of bob.messages()) {
 *   console.log(m.from, m.group ?? "(direct)", new TextDecoder().decode(m.data));
 *   if (++n === 2) break;
 * }
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { defaultRoot, listLocal, LocalCarrier } from "./local.ts";
import { NatsCarrier, type NatsOptions } from "./nats.ts";
import { checkGroup, checkNetworkName, checkNodeName, defaultName } from "./names.ts";
import { type Carrier, Node, type Peer } from "./node.ts";

export {
  type CarrierEvents,
  Node,
  type NodeMessage,
  type Peer,
  type PresenceEvent,
  type Sent,
} from "./node.ts";
export type { Header } from "./envelope.ts";
export { checkGroup, checkNodeName, reaches, reachesAny } from "./names.ts";
export { defaultRoot } from "./local.ts";
export { type MountedTree, mountNode, type MountTreeOptions } from "./mount.ts";
export type { Subscription } from "../../types.ts";

/** The default size limit of a message: 1 MiB. */
export const DEFAULT_MAX_SIZE: number = 1024 * 1024;

/**
 * Options of {@linkcode join}.
 *
 * @example
 * ```ts
 * import type { JoinOptions } from "./mod.ts";
 * const options: JoinOptions = { name: "alice", groups: ["ops/db"], network: "lab" };
 * ```
 */
export interface JoinOptions {
  /**
   * The network.
   *
   * @default {"default"}
   */
  network?: string;
  /** The node's name, unique in the network (default: 6 hex characters of its UUID). */
  name?: string;
  /**
   * Groups to join at once.
   *
   * @default {[]}
   */
  groups?: string[];
  /**
   * The directory holding local networks (default: `$XDG_RUNTIME_DIR/fsbus/messagefs`, or
   * `/tmp/fsbus-UID/messagefs`). Ignored with `nats`.
   */
  root?: string;
  /** NATS server URLs (or one comma-separated string): the network is on NATS. */
  nats?: string | string[];
  /**
   * The largest message, in bytes ({@linkcode DEFAULT_MAX_SIZE}, 1 MiB; over NATS also the
   * server's limit).
   *
   * @default {1048576}
   */
  maxSize?: number;
  /**
   * Over NATS: how long to keep trying to reach a server before failing (default: forever,
   * with a notice after the first failure).
   */
  connectTimeoutMs?: number;
  /** Called with notices: NATS unreachable and retrying, reconnected. */
  onNotice?: (text: string) => void;
}

function carrierFor(options: JoinOptions, network: string, maxSize: number): Carrier {
  if (options.nats !== undefined) {
    const servers = (Array.isArray(options.nats) ? options.nats : options.nats.split(","))
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (servers.length === 0) {
      throw new FsbusError("usage", `Cannot join network "${network}": no NATS server given`);
    }
    const nats: NatsOptions = { servers, network, maxSize };
    if (options.connectTimeoutMs !== undefined) nats.connectTimeoutMs = options.connectTimeoutMs;
    return new NatsCarrier(nats);
  }
  return new LocalCarrier({ root: options.root ?? defaultRoot(), network, maxSize });
}

/**
 * Joins a network as a new node.
 *
 * @param options Network, name, groups, where the network lives, size limit.
 * @returns The node; leave with `await node.leave()` or `await using`.
 * @throws {FsbusError} `already_exists` when the name is taken, `invalid` for a bad name or
 *   group, `permission_denied` for a registry others could tamper with, `io` when NATS
 *   cannot be reached within `connectTimeoutMs`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "./mod.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * {
 *   await using alice = await join({ root, name: "alice", groups: ["ops"] });
 *   const arrivals = alice.presence();
 *   await using bob = await join({ root, name: "bob" });
 *   for await (const e of arrivals) if (e.kind === "join" && e.peer.name === "bob") break;
 *   assert.deepEqual(alice.peers().map((p) => [p.name, p.groups]), [["bob", []]]);
 *   assert.deepEqual(bob.peers().map((p) => [p.name, p.groups]), [["alice", ["ops"]]]);
 * } // leaving the block leaves the network
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function join(options: JoinOptions = {}): Promise<Node> {
  const { network: networkName = "default", groups: given = [], maxSize = DEFAULT_MAX_SIZE } =
    options;
  const network = checkNetworkName(networkName);
  const id = crypto.randomUUID();
  const name = options.name === undefined ? defaultName(id) : checkNodeName(options.name);
  const groups = [...new Set(given.map(checkGroup).filter((g) => g !== ""))];
  if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
    throw new FsbusError(
      "invalid",
      `Cannot join network "${network}": invalid message size limit ${maxSize}`,
    );
  }
  const carrier = carrierFor(options, network, maxSize);
  const self = { id, name, groups };
  const node = new Node(self, network, carrier, options.onNotice);
  await carrier.start(self, node.events);
  return node;
}

/**
 * Lists the nodes of a network without joining it. Locally this reads the registry; over
 * NATS it asks every node to announce itself and waits `waitMs`.
 *
 * @param options The network and where it lives.
 * @returns The nodes, by name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join, list } from "./mod.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice", groups: ["ops/db"] });
 * const peers = await list({ root });
 * assert.deepEqual(peers.map((p) => `${p.name} ${p.groups.join(" ")}`), ["alice ops/db"]);
 * await alice.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function list(
  options: Pick<JoinOptions, "network" | "root" | "nats" | "connectTimeoutMs"> & {
    waitMs?: number;
  } = {},
): Promise<Peer[]> {
  const network = checkNetworkName(options.network ?? "default");
  let peers: Peer[];
  if (options.nats !== undefined) {
    const carrier = carrierFor(options, network, DEFAULT_MAX_SIZE) as NatsCarrier;
    peers = await carrier.survey(options.waitMs ?? 1500);
  } else {
    peers = listLocal(options.root ?? defaultRoot(), network);
  }
  return peers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
