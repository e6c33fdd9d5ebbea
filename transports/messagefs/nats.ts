/**
 * A messagefs network on NATS (one server or a cluster), with no other service.
 *
 * Subjects, with `P` = `fsbus.mfs.NETWORK`:
 * - `P.n.UUID`: direct messages to a node (and resends of anything it missed);
 * - `P.g` and `P.g.SEG...`: broadcasts to the root and to each group. A node subscribes to
 *   the subject of each group it is in and of each ancestor, once each, so a broadcast to
 *   `ops` reaches a node in `ops/db` and `ops/web` once;
 * - `P.a.UUID`: acknowledgements to a sender;
 * - `P.p`: presence: heartbeats (every second), name claims, queries and goodbyes.
 *
 * Delivery: NATS core is at most once, and a server that dies (or a client that moves to
 * another server) loses what was in flight. So every message carries, for each recipient the
 * sender knows, a per-link number; recipients deliver each link's messages once and in
 * order (holding any that come early), and acknowledge cumulatively; senders keep what is
 * not acknowledged and send it again (direct, to the node's subject) every half second and
 * at once after a reconnect. What is guaranteed: to a node that stays alive and that the
 * sender knows (it has seen its heartbeat), every message arrives once, in the sender's
 * order, across server failures and reconnects, as long as some server of the cluster is
 * reachable. A node that joined a group a moment ago and is not yet known to a sender gets
 * that sender's broadcasts at most once (no resend). Nothing survives the sender's death:
 * there is no storage (no JetStream needed).
 *
 * Presence: a node that stops sending heartbeats for 3.5 s (killed, its machine gone) is
 * taken as gone; what it has not acknowledged is still kept and resent for 30 s, so a node
 * that was only stalled or cut off for a while (and comes back) loses nothing. Names are claimed: a new node announces its claim and listens for 0.6 s;
 * a live node with that name, or a concurrent claim by a node with a smaller UUID, makes
 * the join fail.
 *
 * The link numbers (sender and recipient) are kept in `_nats_links.ts`, presence messages
 * are parsed in `_nats_presence.ts`; this file is the carrier: subscriptions, sends, resends,
 * acknowledgements, heartbeats.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { connectNats, type NatsConnection, type NatsStatus } from "../_nats.ts";
import { decode, encode, type Header } from "./envelope.ts";
import { heardGroups, reachesAny } from "./names.ts";
import type { Carrier, CarrierEvents, Peer, SelfInfo } from "./node.ts";
import { type NodeInfo, toPeer } from "./_info.ts";
import { parsePresence, type PresenceMsg, token } from "./_nats_presence.ts";
import {
  acknowledge,
  type Incoming,
  type Link,
  newIncoming,
  newLink,
  parseAck,
  receive,
  resendBase,
  skipTo,
} from "./_nats_links.ts";

const HEARTBEAT_MS = 1000;
const GONE_MS = 3500;
const KEEP_MS = 30_000;
const CLAIM_MS = 600;
const RETRY_MS = 500;
const ACK_MS = 5;
const HEADER_ROOM = 16 * 1024;

/**
 * Options of a {@linkcode NatsCarrier}.
 *
 * @example
 * ```ts
 * import type { NatsOptions } from "./nats.ts";
 * const o: NatsOptions = { servers: ["127.0.0.1:4222"], network: "default", maxSize: 1 << 20 };
 * ```
 */
export interface NatsOptions {
  /** The servers (`host:port` or `nats://host:port`). */
  servers: string[];
  /** The network's name. */
  network: string;
  /** The largest payload, in bytes (lowered to fit the server's max_payload). */
  maxSize: number;
  /** Fail when no server answers within this many milliseconds (default: keep trying). */
  connectTimeoutMs?: number;
}

type Info = NodeInfo;

const encoder = new TextEncoder();

/**
 * The carrier of a network on NATS.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NatsCarrier } from "./nats.ts";
 * // Made without connecting: start() connects (and retries until a server answers).
 * const c = new NatsCarrier({ servers: ["127.0.0.1:4222"], network: "default", maxSize: 1 << 20 });
 * assert.equal(c.mode, "nats");
 * assert.equal(c.where, "127.0.0.1:4222");
 * await c.close();
 * ```
 */
export class NatsCarrier implements Carrier {
  /** Always "nats". */
  readonly mode = "nats" as const;
  /** The servers, comma-separated. */
  readonly where: string;
  #maxSize: number;
  readonly #options: NatsOptions;
  readonly #prefix: string;
  #nc: NatsConnection | undefined;
  #self: Info | undefined;
  #events: CarrierEvents | undefined;
  readonly #peers = new Map<string, { info: Info; seen: number }>();
  readonly #links = new Map<string, Link>();
  readonly #incoming = new Map<string, Incoming>();
  readonly #ackDue = new Set<string>();
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #groupSubs = new Map<string, { unsubscribe(): void }>();
  readonly #subs: { unsubscribe(): void }[] = [];
  #timers: ReturnType<typeof setInterval>[] = [];
  #claims: Info[] | undefined;
  #closed = false;
  #flushWaiters: (() => void)[] = [];
  #disconnected = false;

  /**
   * Makes the carrier; nothing happens until {@linkcode NatsCarrier.start}.
   *
   * @param options Servers, network, size limit, connect timeout.
   */
  constructor(options: NatsOptions) {
    this.#options = options;
    this.where = options.servers.join(",");
    this.#maxSize = options.maxSize;
    this.#prefix = `fsbus.mfs.${token(options.network)}`;
  }

  /** The largest payload, in bytes (known for sure once connected). */
  get maxSize(): number {
    return this.#maxSize;
  }

  #groupSubject(group: string): string {
    return group === ""
      ? `${this.#prefix}.g`
      : `${this.#prefix}.g.${group.split("/").map(token).join(".")}`;
  }

  async #connect(onStatus: (s: NatsStatus) => void): Promise<NatsConnection> {
    const ac = new AbortController();
    const timeout = this.#options.connectTimeoutMs;
    const timer = timeout === undefined ? undefined : setTimeout(() => ac.abort(), timeout);
    let lastFailure = "";
    try {
      return await connectNats(this.#options.servers.join(","), {
        name: "fsbus messagefs",
        signal: ac.signal,
        onStatus: (s) => {
          if (s.state === "reconnecting" && s.detail) lastFailure = s.detail;
          onStatus(s);
        },
      });
    } catch (err) {
      if (err instanceof FsbusError && err.code === "closed" && ac.signal.aborted) {
        throw new FsbusError(
          "io",
          lastFailure.replace(/; retrying.*$/, "") ||
            `Cannot connect to NATS "${this.where}": no server answered`,
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  #failureReported = false;

  #onStatus = (s: NatsStatus): void => {
    if (this.#closed) return;
    const notice = (t: string) => this.#events?.notice(t);
    if (this.#nc === undefined) {
      // The first connection: say once that it failed and that it goes on in the background.
      if (s.state === "reconnecting" && s.detail && !this.#failureReported) {
        this.#failureReported = true;
        notice(s.detail.replace(/ \(attempt \d+\)$/, " in the background"));
      }
    } else if (s.state === "disconnected") {
      this.#disconnected = true;
      notice(`Lost NATS server ${s.server}; reconnecting`);
    } else if (s.state === "connected" && this.#disconnected) {
      this.#disconnected = false;
      notice(`Reconnected to NATS server ${s.server}`);
      this.#heartbeat();
      this.#resend(true);
    }
  };

  /**
   * Connects (retrying in the background until a server answers), claims the name, and
   * starts heartbeats.
   *
   * @param self The node.
   * @param events Where to report messages, presence and notices.
   */
  async start(self: SelfInfo, events: CarrierEvents): Promise<void> {
    this.#events = events;
    const nc = await this.#connect(this.#onStatus);
    this.#nc = nc;
    if (this.#failureReported) events.notice(`Connected to NATS server ${nc.getServer()}`);
    this.#maxSize = Math.max(
      0,
      Math.min(this.#maxSize, (nc.info?.max_payload ?? 1 << 20) - HEADER_ROOM),
    );
    this.#self = {
      id: self.id,
      name: self.name,
      groups: [...self.groups],
      host: Deno.hostname(),
      pid: Deno.pid,
      since: Date.now(),
    };
    const P = this.#prefix;
    try {
      this.#claims = [];
      this.#subs.push(nc.subscribe(`${P}.p`, { callback: (_e, m) => this.#presence(m.data) }));
      this.#subs.push(
        nc.subscribe(`${P}.n.${self.id}`, { callback: (_e, m) => this.#message(m.data) }),
      );
      this.#subs.push(
        nc.subscribe(`${P}.a.${self.id}`, { callback: (_e, m) => this.#ack(m.data) }),
      );
      this.#subscribeGroups();
      this.#publishPresence({ t: "claim", info: this.#self });
      this.#publishPresence({ t: "query" });
      await nc.flush();
      await new Promise((r) => setTimeout(r, CLAIM_MS));
      const clash = [...this.#peers.values()].find((p) => p.info.name === self.name)?.info ??
        this.#claims.find((c) => c.name === self.name && c.id < self.id);
      this.#claims = undefined;
      if (clash) {
        throw new FsbusError(
          "already_exists",
          `Cannot join network "${this.#options.network}" as "${self.name}": the name is taken ` +
            `by node ${clash.id.slice(0, 8)} (pid ${clash.pid} on ${clash.host})`,
        );
      }
    } catch (err) {
      await this.#shutdown(false);
      throw err;
    }
    this.#heartbeat();
    this.#timers.push(setInterval(() => this.#heartbeat(), HEARTBEAT_MS));
    this.#timers.push(setInterval(() => this.#sweep(), 250));
    this.#timers.push(setInterval(() => this.#resend(false), RETRY_MS / 2));
  }

  /**
   * Asks every node to announce itself and collects the answers for `waitMs` (for `ls`).
   *
   * @param waitMs How long to listen.
   * @returns The nodes that answered.
   */
  async survey(waitMs: number): Promise<Peer[]> {
    const nc = await this.#connect(() => {});
    try {
      const found = new Map<string, Info>();
      nc.subscribe(`${this.#prefix}.p`, {
        callback: (_e, m) => {
          const p = parsePresence(m.data);
          if (p?.t === "hb" && p.info) found.set(p.info.id, p.info);
          if (p?.t === "bye" && p.info) found.delete(p.info.id);
        },
      });
      nc.publish(`${this.#prefix}.p`, encoder.encode(JSON.stringify({ t: "query" })));
      await nc.flush();
      await new Promise((r) => setTimeout(r, waitMs));
      return [...found.values()].map(toPeer);
    } finally {
      await nc.close();
    }
  }

  #publishPresence(p: PresenceMsg): void {
    try {
      this.#nc?.publish(`${this.#prefix}.p`, encoder.encode(JSON.stringify(p)));
    } catch {
      // closed or reconnecting: the next heartbeat says it again
    }
  }

  #heartbeat(): void {
    if (this.#closed || this.#claims !== undefined || !this.#self) return;
    this.#publishPresence({ t: "hb", info: this.#self });
  }

  #presence(bytes: Uint8Array): void {
    const p = parsePresence(bytes);
    if (!p || this.#closed) return;
    const self = this.#self!;
    if (p.t === "query") {
      if (this.#claims !== undefined) this.#publishPresence({ t: "claim", info: self });
      else this.#heartbeat();
      return;
    }
    const info = p.info!;
    if (info.id === self.id) return;
    if (p.t === "claim") {
      if (this.#claims !== undefined) this.#claims.push(info);
      else if (info.name === self.name) this.#heartbeat();
      return;
    }
    if (p.t === "bye") return this.#gone(info.id, true);
    const old = this.#peers.get(info.id);
    this.#peers.set(info.id, { info, seen: Date.now() });
    const link = this.#links.get(info.id);
    if (link) link.goneAt = undefined; // back: what it missed is resent
    if (this.#claims !== undefined) return;
    if (!old) this.#events!.presence({ kind: "join", peer: toPeer(info) });
    else if (old.info.groups.join("\n") !== info.groups.join("\n")) {
      this.#events!.presence({ kind: "update", peer: toPeer(info) });
    }
  }

  #gone(id: string, said: boolean): void {
    const old = this.#peers.get(id);
    if (!old) return;
    this.#peers.delete(id);
    const link = this.#links.get(id);
    // A node that said goodbye has what it acknowledged: the rest is abandoned. A silent one
    // may only be stalled or cut off for a while: what it has not acknowledged is kept (and
    // resent) for KEEP_MS, and given up after that; the link's numbering goes on either way
    // (the next message tells the node where it starts again).
    if (link) {
      if (said) link.unacked.clear();
      else link.goneAt = Date.now();
    }
    this.#wakeFlush();
    this.#events!.presence({ kind: "leave", peer: toPeer(old.info) });
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, p] of this.#peers) if (p.seen < now - GONE_MS) this.#gone(id, false);
    for (const link of this.#links.values()) {
      if (link.goneAt !== undefined && link.goneAt < now - KEEP_MS) {
        link.unacked.clear();
        link.goneAt = undefined;
      }
    }
  }

  #subscribeGroups(): void {
    const want = heardGroups(this.#self!.groups);
    for (const [g, sub] of this.#groupSubs) {
      if (!want.has(g)) {
        sub.unsubscribe();
        this.#groupSubs.delete(g);
      }
    }
    for (const g of want) {
      if (this.#groupSubs.has(g)) continue;
      this.#groupSubs.set(
        g,
        this.#nc!.subscribe(this.#groupSubject(g), { callback: (_e, m) => this.#message(m.data) }),
      );
    }
  }

  #message(bytes: Uint8Array): void {
    if (this.#closed) return;
    const env = decode(bytes);
    if (!env) return;
    const { header, data } = env;
    const self = this.#self!;
    if (header.id === self.id) return;
    const link = header.l?.[self.id];
    if (link === undefined) {
      // A broadcast from a sender that did not know of this node yet: no order, no resend.
      if (header.g !== undefined && reachesAny(header.g, self.groups)) {
        this.#events!.message(header, data);
      }
      return;
    }
    const [n, base] = link;
    let rx = this.#incoming.get(header.id);
    if (!rx) this.#incoming.set(header.id, rx = newIncoming());
    skipTo(rx, base);
    this.#ackDue.add(header.id);
    this.#scheduleAck();
    receive(rx, n, header, data, this.#accept);
  }

  #accept = (header: Header, data: Uint8Array): void => {
    // A broadcast for a group this node has left since the sender last heard of it.
    if (header.g !== undefined && !reachesAny(header.g, this.#self!.groups)) return;
    if (header.g === undefined && header.to !== this.#self!.id) return;
    this.#events!.message(header, data);
  };

  #scheduleAck(): void {
    if (this.#ackTimer !== undefined) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = undefined;
      const self = this.#self!;
      for (const id of this.#ackDue) {
        const rx = this.#incoming.get(id);
        if (!rx) continue;
        const body = encoder.encode(JSON.stringify({ id: self.id, upto: rx.next - 1 }));
        try {
          this.#nc?.publish(`${this.#prefix}.a.${id}`, body);
        } catch {
          // reconnecting: the sender resends, and the resend is acknowledged
        }
      }
      this.#ackDue.clear();
    }, ACK_MS);
  }

  #ack(bytes: Uint8Array): void {
    const ack = parseAck(bytes);
    if (!ack) return;
    const link = this.#links.get(ack.id);
    if (!link) return;
    acknowledge(link, ack.upto);
    if (link.unacked.size === 0) this.#wakeFlush();
  }

  #resend(now: boolean): void {
    if (this.#closed || !this.#nc) return;
    const due = Date.now() - RETRY_MS;
    for (const [id, link] of this.#links) {
      if (link.unacked.size === 0 || (!now && link.progressAt > due)) continue;
      link.progressAt = Date.now();
      const subject = this.#nodeSubject(id);
      try {
        for (const p of link.unacked.values()) this.#nc.publish(subject, p.bytes);
      } catch {
        return; // reconnecting: after it, everything is sent again
      }
    }
  }

  #link(id: string): Link {
    let link = this.#links.get(id);
    if (!link) this.#links.set(id, link = newLink());
    return link;
  }

  readonly #subjects = new Map<string, string>();
  #nodeSubject(id: string): string {
    let s = this.#subjects.get(id);
    if (s === undefined) this.#subjects.set(id, s = `${this.#prefix}.n.${id}`);
    return s;
  }

  /** Publishes to `what` (a node's name, or "/group"); what cannot go now goes on resend. */
  #publish(subject: string, bytes: Uint8Array, what: string): void {
    if (bytes.length + 512 > (this.#nc!.info?.max_payload ?? 1 << 20)) {
      const target = what.startsWith("/") ? `group "${what}"` : `"${what}"`;
      throw new FsbusError(
        "too_large",
        `Cannot send to ${target}: ${bytes.length} bytes with its envelope, over the server's ` +
          `max_payload`,
      );
    }
    try {
      this.#nc!.publish(subject, bytes);
    } catch (err) {
      // Closed: fail. Anything else (a reconnect): kept for the resend.
      if (this.#closed) {
        throw new FsbusError("closed", `Cannot send to "${what}": the node has left`);
      }
      void err;
    }
  }

  /** The peers seen now. */
  peers(): Peer[] {
    return [...this.#peers.values()].map((p) => this.#peerOf(p.info));
  }

  /**
   * Finds a peer by name among those known now.
   *
   * @param name The peer's name.
   * @returns The peer, or undefined.
   */
  lookup(name: string): Peer | undefined {
    for (const p of this.#peers.values()) if (p.info.name === name) return this.#peerOf(p.info);
    return undefined;
  }

  readonly #peerCache = new WeakMap<Info, Peer>();
  #peerOf(info: Info): Peer {
    let p = this.#peerCache.get(info);
    if (p === undefined) this.#peerCache.set(info, p = toPeer(info));
    return p;
  }

  /**
   * Finds a peer by name; when unknown, asks the network and waits a moment for answers.
   *
   * @param name The peer's name.
   * @returns The peer, or undefined.
   */
  async find(name: string): Promise<Peer | undefined> {
    const look = () => [...this.#peers.values()].find((p) => p.info.name === name)?.info;
    let found = look();
    if (found || this.#closed) return found ? toPeer(found) : undefined;
    this.#publishPresence({ t: "query" });
    const deadline = Date.now() + 1000;
    while (!found && Date.now() < deadline && !this.#closed) {
      await new Promise((r) => setTimeout(r, 20));
      found = look();
    }
    return found ? toPeer(found) : undefined;
  }

  /**
   * Publishes a direct message, kept until acknowledged.
   *
   * @param peer The recipient.
   * @param header The envelope's header.
   * @param data The payload.
   */
  send(peer: Peer, header: Header, data: Uint8Array): Promise<void> {
    try {
      const link = this.#link(peer.id);
      const n = link.n + 1;
      header.l = { [peer.id]: [n, link.unacked.size ? resendBase(link) : n] };
      const bytes = encode(header, data);
      this.#publish(this.#nodeSubject(peer.id), bytes, peer.name);
      link.n = n;
      if (link.unacked.size === 0) link.progressAt = Date.now();
      link.unacked.set(n, { bytes });
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Publishes a broadcast once on the group's subject; each known recipient acknowledges it
   * and gets it again directly until it does.
   *
   * @param group The group.
   * @param recipients The peers it reaches.
   * @param header The envelope's header.
   * @param data The payload.
   */
  broadcast(group: string, recipients: Peer[], header: Header, data: Uint8Array): Promise<void> {
    try {
      const l: Record<string, [number, number]> = {};
      const links = recipients.map((p) => this.#link(p.id));
      recipients.forEach((p, i) => {
        const link = links[i]!;
        const n = link.n + 1;
        l[p.id] = [n, link.unacked.size ? resendBase(link) : n];
      });
      header.l = l;
      const bytes = encode(header, data);
      this.#publish(this.#groupSubject(group), bytes, `/${group}`);
      const now = Date.now();
      for (const link of links) {
        link.n++;
        if (link.unacked.size === 0) link.progressAt = now;
        link.unacked.set(link.n, { bytes });
      }
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Changes the group subscriptions and announces the new groups at once.
   *
   * @param groups The groups.
   */
  setGroups(groups: string[]): Promise<void> {
    this.#self!.groups = groups;
    this.#subscribeGroups();
    this.#heartbeat();
    return this.#nc!.flush();
  }

  /** Whether a live peer has not acknowledged everything yet. */
  #pending(): boolean {
    for (const [id, l] of this.#links) if (l.unacked.size > 0 && this.#peers.has(id)) return true;
    return false;
  }

  #wakeFlush(): void {
    if (this.#flushWaiters.length === 0) return;
    if (this.#pending()) return;
    for (const w of this.#flushWaiters.splice(0)) w();
  }

  /**
   * Waits until every message sent to a live node has been acknowledged, or the timeout
   * passes.
   *
   * @param timeoutMs The longest wait.
   */
  async flush(timeoutMs: number): Promise<void> {
    if (!this.#pending()) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#flushWaiters.push(resolve);
      timer = setTimeout(resolve, timeoutMs);
    });
    clearTimeout(timer);
  }

  async #shutdown(bye: boolean): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    clearTimeout(this.#ackTimer);
    for (const w of this.#flushWaiters.splice(0)) w();
    const nc = this.#nc;
    if (!nc) return;
    if (bye && this.#self) this.#publishPresence({ t: "bye", info: this.#self });
    try {
      await nc.drain();
    } catch {
      await nc.close().catch(() => {});
    }
  }

  /** Says goodbye, then drains and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#shutdown(true);
  }
}
