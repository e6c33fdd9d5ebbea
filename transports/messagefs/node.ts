/**
 * A messagefs node: a name in a network, the groups it is in, the peers it sees, and the
 * messages it sends and receives. What carries them (a registry and inbox directories on one
 * machine, or NATS across machines) is a {@linkcode Carrier}; the node is the same on both.
 *
 * @module
 */

import { FsbusError, type Message, type Subscription, toBytes } from "../../types.ts";
import { Queue } from "./_queue.ts";
import type { Header } from "./envelope.ts";
import { checkGroup, reachesAny } from "./names.ts";

/**
 * Another node of the network, as this node last saw it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const arrivals = alice.presence();
 * const bob = await join({ root, name: "bob", groups: ["ops", "ops/db"] });
 * for await (const e of arrivals) if (e.peer.name === "bob") break;
 * const [peer] = alice.peers();
 * assert.equal(peer?.name, "bob");
 * assert.deepEqual(peer?.groups, ["ops", "ops/db"]);
 * assert.equal(peer?.pid, Deno.pid); // on this machine
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface Peer {
  /** The node's UUID. */
  readonly id: string;
  /** The node's name, unique in the network. */
  readonly name: string;
  /** The groups it is in (paths such as "ops/db"; every node is also in the root). */
  readonly groups: readonly string[];
  /** Its process id, when on this machine. */
  readonly pid?: number;
  /** The host it runs on, as it says. */
  readonly host?: string;
  /** When it joined. */
  readonly since: Date;
}

/**
 * A message a node received.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const bob = await join({ root, name: "bob", groups: ["ops"] });
 * await alice.send("bob", "hi bob");
 * await alice.broadcast("ops", "to ops");
 * const got: string[] = [];
 * for await (const m of bob.messages()) {
 *   got.push(`${m.from} ${m.group ?? "(direct)"} ${m.seq} ${new TextDecoder().decode(m.data)}`);
 *   if (got.length === 2) break;
 * }
 * assert.deepEqual(got, ["alice (direct) 1 hi bob", "alice ops 2 to ops"]);
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface NodeMessage extends Message {
  /** `SENDER-UUID:SEQ`: unique in the network. */
  readonly id: string;
  /** The group of a broadcast, "" for a direct message (or a broadcast to the root). */
  readonly topic: string;
  /** When the sender sent it (its clock). */
  readonly time: Date;
  /** The sender's name. */
  readonly from: string;
  /** The sender's UUID. */
  readonly fromId: string;
  /** The group a broadcast was sent to ("" for the root); undefined for a direct message. */
  readonly group: string | undefined;
  /** The sender's sequence number (1 for its first message, one more for each it sends). */
  readonly seq: number;
}

/**
 * A change in who is in the network: a node joined, left (or died), or changed its groups.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const events = alice.presence();
 * const bob = await join({ root, name: "bob" });
 * await bob.joinGroup("ops");
 * const seen: string[] = [];
 * for await (const e of events) {
 *   seen.push(`${e.kind} ${e.peer.name}`);
 *   if (e.kind === "update") break;
 * }
 * assert.deepEqual(seen, ["join bob", "update bob"]);
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface PresenceEvent {
  /** "join", "leave" or "update" (its groups changed). */
  readonly kind: "join" | "leave" | "update";
  /** The node, as last seen. */
  readonly peer: Peer;
}

/**
 * What a carrier tells its node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CarrierEvents } from "./node.ts";
 * const notices: string[] = [];
 * const events: CarrierEvents = {
 *   message() {},
 *   presence() {},
 *   notice: (text) => notices.push(text),
 * };
 * events.notice("NATS unreachable, retrying");
 * assert.deepEqual(notices, ["NATS unreachable, retrying"]);
 * ```
 */
export interface CarrierEvents {
  /** A message for this node arrived (once, in each sender's order). */
  message(header: Header, data: Uint8Array): void;
  /** A peer joined, left or changed. */
  presence(event: PresenceEvent): void;
  /** Something the user may want to know (lost connection, retrying, reconnected). */
  notice(text: string): void;
}

/**
 * This node, as its carrier announces it.
 *
 * @example
 * ```ts
 * import type { SelfInfo } from "./node.ts";
 * const me: SelfInfo = { id: crypto.randomUUID(), name: "alice", groups: ["ops"] };
 * ```
 */
export interface SelfInfo {
  /** The node's UUID. */
  id: string;
  /** Its name. */
  name: string;
  /** Its groups. */
  groups: string[];
}

/**
 * How a node reaches the others: one on each machine's registry, one over NATS.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalCarrier } from "./local.ts";
 * import type { Carrier } from "./node.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const carrier: Carrier = new LocalCarrier({ root, network: "default", maxSize: 1 << 20 });
 * assert.equal(carrier.mode, "local");
 * await carrier.close();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface Carrier {
  /** "local" or "nats". */
  readonly mode: "local" | "nats";
  /** The largest payload it carries, in bytes. */
  readonly maxSize: number;
  /** Where the network lives: the registry directory, or the NATS servers. */
  readonly where: string;
  /** Registers the node (claiming its name) and starts receiving. */
  start(self: SelfInfo, events: CarrierEvents): Promise<void>;
  /** The peers seen now (this node excluded). */
  peers(): Peer[];
  /** Looks a peer up by name among those known now. */
  lookup(name: string): Peer | undefined;
  /** Looks a peer up by name, asking the network again when it is not known yet. */
  find(name: string): Promise<Peer | undefined>;
  /** Sends a direct message. */
  send(peer: Peer, header: Header, data: Uint8Array): Promise<void>;
  /** Sends a broadcast to `recipients` (the peers the group reaches, this node excluded). */
  broadcast(group: string, recipients: Peer[], header: Header, data: Uint8Array): Promise<void>;
  /** Announces this node's new groups. */
  setGroups(groups: string[]): Promise<void>;
  /** Waits until what was sent has been handed on (acknowledged, where the carrier can). */
  flush(timeoutMs: number): Promise<void>;
  /** Leaves the network and releases everything. */
  close(): Promise<void>;
}

/**
 * What {@linkcode Node.send} and {@linkcode Node.broadcast} did.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const bob = await join({ root, name: "bob", groups: ["ops"] });
 * await alice.send("bob", "hello");
 * const { seq, recipients } = await alice.broadcast("ops", "deploying");
 * assert.deepEqual({ seq, recipients }, { seq: 2, recipients: 1 }); // bob is in ops
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface Sent {
  /** The message's sequence number. */
  seq: number;
  /** How many nodes it was sent to. */
  recipients: number;
}

/**
 * A node of a messagefs network. Made by `join()`; leave with {@linkcode Node.leave} or
 * `await using`.
 *
 * @example Two nodes on one machine
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * {
 *   await using a = await join({ name: "alice", root });
 *   await using b = await join({ name: "bob", root, groups: ["ops"] });
 *   await a.send("bob", "hi bob");
 *   await a.broadcast("ops", "to every node in ops");
 *   const got: string[] = [];
 *   for await (const m of b.messages()) {
 *     got.push(`${m.from}: ${new TextDecoder().decode(m.data)}`);
 *     if (got.length === 2) break;
 *   }
 *   assert.deepEqual(got, ["alice: hi bob", "alice: to every node in ops"]);
 * } // leaving the block leaves the network
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class Node implements AsyncDisposable {
  /** The node's UUID. */
  readonly id: string;
  /** The node's name, unique in its network. */
  readonly name: string;
  /** The network's name. */
  readonly network: string;
  readonly #carrier: Carrier;
  readonly #groups: string[];
  #seq = 0;
  #closed = false;
  readonly #inboxes = new Set<Queue<NodeMessage>>();
  readonly #watchers = new Set<Queue<PresenceEvent>>();
  #backlog: NodeMessage[] | undefined = [];
  #last: NodeMessage | undefined;
  readonly #onNotice: ((text: string) => void) | undefined;

  /**
   * Makes a node over a carrier; use `join()` instead.
   *
   * @param self The node's identity.
   * @param network The network's name.
   * @param carrier What carries its messages.
   * @param onNotice Called with notices from the carrier.
   * @internal
   */
  constructor(
    self: SelfInfo,
    network: string,
    carrier: Carrier,
    onNotice?: (text: string) => void,
  ) {
    this.id = self.id;
    this.name = self.name;
    this.network = network;
    this.#groups = [...self.groups];
    this.#carrier = carrier;
    this.#onNotice = onNotice;
  }

  /** The events the carrier reports to. @internal */
  get events(): CarrierEvents {
    return {
      message: (h, d) => this.#receive(h, d),
      presence: (e) => {
        for (const q of this.#watchers) q.push(e);
      },
      notice: (text) => this.#onNotice?.(text),
    };
  }

  /** "local" (a registry on this machine) or "nats". */
  get mode(): "local" | "nats" {
    return this.#carrier.mode;
  }

  /** Where the network lives: its registry directory, or the NATS servers. */
  get where(): string {
    return this.#carrier.where;
  }

  /** The largest message this node can send, in bytes. */
  get maxSize(): number {
    return this.#carrier.maxSize;
  }

  /** The groups this node is in. */
  get groups(): readonly string[] {
    return [...this.#groups];
  }

  /** The last message received, if any (what the node's own file shows when mounted). */
  get lastMessage(): NodeMessage | undefined {
    return this.#last;
  }

  /**
   * The other nodes of the network, as seen now.
   *
   * @returns The peers, by name.
   */
  peers(): Peer[] {
    return this.#carrier.peers().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  #check(): void {
    if (this.#closed) {
      throw new FsbusError(
        "closed",
        `Cannot use node "${this.name}": it has left network "${this.network}"`,
      );
    }
  }

  #header(data: Uint8Array, what: string): Header {
    if (data.length > this.#carrier.maxSize) {
      throw new FsbusError(
        "too_large",
        `Cannot send to ${what}: the message has ${data.length} bytes, over the ` +
          `${this.#carrier.maxSize}-byte limit`,
      );
    }
    return { id: this.id, from: this.name, seq: 0, t: Date.now() };
  }

  /**
   * Sends a direct message to the node called `name`.
   *
   * @param name The recipient's name (this node's own name delivers to itself).
   * @param data The payload: bytes, or text (UTF-8).
   * @returns The message's sequence number.
   * @throws {FsbusError} `not_found` for an unknown node, `too_large` over the size limit.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * assert.deepEqual(await alice.send("bob", "hello"), { seq: 1, recipients: 1 });
   * await assert.rejects(alice.send("carol", "hello"), /carol/); // no such node
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  async send(name: string, data: Uint8Array | string): Promise<Sent> {
    this.#check();
    const bytes = toBytes(data);
    const header = this.#header(bytes, `"${name}"`);
    if (name === this.name) {
      header.seq = ++this.#seq;
      this.#receive({ ...header, to: this.id }, bytes.slice());
      return { seq: header.seq, recipients: 1 };
    }
    // Known peers are found at once, so the message leaves before send() returns; an unknown
    // one is looked up, and the caller may reuse its buffer meanwhile: keep a copy.
    let peer = this.#carrier.lookup(name);
    if (peer === undefined) {
      const copy = bytes.slice();
      peer = await this.#carrier.find(name);
      if (peer !== undefined) return this.#sendTo(peer, header, copy);
    }
    if (peer === undefined) {
      throw new FsbusError(
        "not_found",
        `Cannot send to "${name}": no such node in network "${this.network}"`,
      );
    }
    return this.#sendTo(peer, header, bytes);
  }

  async #sendTo(peer: Peer, header: Header, bytes: Uint8Array): Promise<Sent> {
    header.seq = ++this.#seq;
    header.to = peer.id;
    await this.#carrier.send(peer, header, bytes);
    return { seq: header.seq, recipients: 1 };
  }

  /**
   * Sends a message to every other node in `group` and in the groups below it, once each
   * (a node in several of those groups gets it once). "" or "/" is the root: every node.
   *
   * @param group The group path, such as "ops" or "ops/db".
   * @param data The payload: bytes, or text (UTF-8).
   * @returns The sequence number and how many nodes it was sent to.
   * @throws {FsbusError} `invalid` for a bad group path, `too_large` over the size limit.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * const { recipients } = await alice.broadcast("ops", "deploying");
   * assert.equal(recipients, 1); // bob
   * assert.equal((await alice.broadcast("", "to everyone")).recipients, 1); // the root: all but alice
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  async broadcast(group: string, data: Uint8Array | string): Promise<Sent> {
    const g = checkGroup(group);
    this.#check();
    const bytes = toBytes(data);
    const header = this.#header(bytes, `group "/${g}"`);
    header.g = g;
    header.seq = ++this.#seq;
    const recipients = this.#carrier.peers().filter((p) => reachesAny(g, p.groups));
    await this.#carrier.broadcast(g, recipients, header, bytes);
    return { seq: header.seq, recipients: recipients.length };
  }

  /**
   * Joins a group (no-op when already in it).
   *
   * @param group The group path.
   * @throws {FsbusError} `invalid` for a bad group path.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * await alice.joinGroup("ops/db");
   * assert.deepEqual(alice.groups, ["ops/db"]);
   * assert.equal((await bob.broadcast("ops", "to ops")).recipients, 1); // ops reaches ops/db
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  async joinGroup(group: string): Promise<void> {
    const g = checkGroup(group);
    this.#check();
    if (g === "" || this.#groups.includes(g)) return;
    this.#groups.push(g);
    await this.#carrier.setGroups([...this.#groups]);
  }

  /**
   * Leaves a group (no-op when not in it).
   *
   * @param group The group path.
   * @throws {FsbusError} `invalid` for a bad group path.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice", groups: ["ops/db"] });
   * await alice.leaveGroup("ops/db");
   * assert.deepEqual(alice.groups, []);
   * await alice.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  async leaveGroup(group: string): Promise<void> {
    const g = checkGroup(group);
    this.#check();
    const i = this.#groups.indexOf(g);
    if (i < 0) return;
    this.#groups.splice(i, 1);
    await this.#carrier.setGroups([...this.#groups]);
  }

  #receive(header: Header, data: Uint8Array): void {
    if (this.#closed) return;
    if (header.to !== undefined && header.to !== this.id) return;
    const m: NodeMessage = {
      id: `${header.id}:${header.seq}`,
      topic: header.g ?? "",
      time: new Date(header.t),
      from: header.from,
      fromId: header.id,
      group: header.g,
      seq: header.seq,
      data,
    };
    this.#last = m;
    if (this.#backlog) {
      this.#backlog.push(m);
      return;
    }
    for (const q of this.#inboxes) q.push(m);
  }

  /**
   * The messages this node receives. Messages that arrived before the first call are kept
   * for it; later calls see messages from then on. Close (or break) to stop.
   *
   * @param options An AbortSignal that ends the subscription.
   * @returns The subscription.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * await alice.send("bob", new Uint8Array(3)); // sent before bob asks: kept for the first call
   * for await (const m of bob.messages()) {
   *   assert.equal(m.from, "alice");
   *   assert.equal(m.data.length, 3);
   *   break;
   * }
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  messages(options: { signal?: AbortSignal } = {}): Subscription<NodeMessage> {
    const q: Queue<NodeMessage> = new Queue(() => this.#inboxes.delete(q), options.signal);
    if (this.#closed) q.end();
    else this.#inboxes.add(q);
    if (this.#backlog) {
      for (const m of this.#backlog) q.push(m);
      this.#backlog = undefined;
    }
    return q;
  }

  /**
   * Joins, leaves and group changes of other nodes, from now on.
   *
   * @param options An AbortSignal that ends the subscription.
   * @returns The subscription.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * const events = alice.presence();
   * await bob.leave();
   * for await (const e of events) {
   *   assert.deepEqual([e.kind, e.peer.name], ["leave", "bob"]);
   *   break;
   * }
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  presence(options: { signal?: AbortSignal } = {}): Subscription<PresenceEvent> {
    const q: Queue<PresenceEvent> = new Queue(() => this.#watchers.delete(q), options.signal);
    if (this.#closed) q.end();
    else this.#watchers.add(q);
    return q;
  }

  /**
   * Waits until every message sent so far has been handed to its recipients' carriers
   * (acknowledged by them over NATS; written to their inboxes locally, which `send` already
   * does), or the timeout passes.
   *
   * @param timeoutMs The longest wait.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * const bob = await join({ root, name: "bob", groups: ["ops"] });
   * await alice.send("bob", "bye");
   * await alice.flush(); // locally, send has already written it to bob's inbox
   * for await (const m of bob.messages()) {
   *   assert.equal(new TextDecoder().decode(m.data), "bye");
   *   break;
   * }
   * await alice.leave();
   * await bob.leave();
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  flush(timeoutMs = 5000): Promise<void> {
    return this.#carrier.flush(timeoutMs);
  }

  /**
   * Leaves the network: other nodes see it go; its subscriptions end.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { join, list } from "@x/fsbus/messagefs";
   * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * const alice = await join({ root, name: "alice" });
   * await alice.leave();
   * assert.deepEqual(await list({ root }), []);
   * await assert.rejects(alice.send("alice", "x")); // a node that left sends nothing
   * Deno.removeSync(root, { recursive: true });
   * ```
   */
  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#carrier.close();
    } finally {
      for (const q of this.#inboxes) q.end();
      for (const q of this.#watchers) q.end();
    }
  }

  /** Same as {@linkcode Node.leave}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.leave();
  }
}
