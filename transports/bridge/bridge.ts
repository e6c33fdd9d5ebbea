/**
 * A running bridge: one or two directions (pumps) between two endpoints, the NATS
 * connections they share, the state that makes delivery exactly once across restarts, and a
 * live status.
 *
 * @module
 */

import { sha256Hex } from "./_sha256.ts";
import { connectNats, type NatsConnection, type NatsState } from "../_nats.ts";
import { FsbusError } from "../../types.ts";
import { type Context, Echo, type Sink, type Source } from "./_envelope.ts";
import { localSink, localSource } from "./_local.ts";
import { remoteSink, remoteSource } from "./_remote.ts";
import { Position, Seen } from "./_state.ts";
import {
  type Endpoint,
  type EndpointOptions,
  isRemote,
  isWide,
  parseEndpoint,
} from "./endpoint.ts";

/**
 * Options of {@linkcode bridge}.
 *
 * @example
 * ```ts
 * import type { BridgeOptions } from "./bridge.ts";
 * const options: BridgeOptions = { both: true, stateDir: "/var/lib/fsbus-bridge" };
 * ```
 */
export interface BridgeOptions extends EndpointOptions {
  /**
   * Carry messages both ways (false: FROM to TO only).
   *
   * @default {false}
   */
  both?: boolean;
  /** This bridge's identity (default: derived from the host name and the local endpoints). */
  name?: string;
  /**
   * Where positions and sent ids are kept across restarts (default
   * `$XDG_STATE_HOME/fsbus/bridge`, or `~/.local/state/fsbus/bridge`); `false` keeps nothing.
   */
  stateDir?: string | false;
  /**
   * On a first run, also carry the history a local bus already holds.
   *
   * @default {false}
   */
  history?: boolean;
  /**
   * filebus endpoints in lossless (back-pressure) mode.
   *
   * @default {false}
   */
  lossless?: boolean;
  /**
   * When more than 0, a directory-bus source waits for messages by blocking this thread in
   * poll(2) for up to this long at a time, the event loop getting a turn between waits (and
   * every 5 ms while messages keep coming). That saves a hand-off through a worker thread per
   * wake-up (some 0.1-0.2 ms per message), at the cost of delaying everything else the
   * process does by up to this long: for a process that runs only this bridge, one way (as
   * the CLI does).
   *
   * @default {0}
   */
  blockMs?: number;
  /** Called with a one-line notice on each NATS connection change or retry. */
  onNotice?: (text: string) => void;
  /** Called for each message that cannot be carried (it is skipped, never silently). */
  onError?: (err: FsbusError) => void;
  /** Stops the bridge (as `close()` does). */
  signal?: AbortSignal;
}

/**
 * Counters of one direction.
 *
 * @example
 * ```ts
 * import type { DirectionStatus } from "./bridge.ts";
 * const d: DirectionStatus = {
 *   from: "dir:/a", to: "nats://h:4222/x", received: 0, delivered: 0, skipped: 0,
 *   dropped: 0, lag: 0, done: false,
 * };
 * ```
 */
export interface DirectionStatus {
  /** The source endpoint. */
  readonly from: string;
  /** The sink endpoint. */
  readonly to: string;
  /** Messages taken from the source. */
  received: number;
  /** Messages stored at the sink. */
  delivered: number;
  /** Messages not carried because they came from this bridge (loops) or were already sent. */
  skipped: number;
  /** Messages that could not be carried (too large, bad topic): each reported to onError. */
  dropped: number;
  /** Messages waiting: at the source (JetStream pending) plus those not yet acknowledged. */
  lag: number;
  /** Whether the source ended (an mq stream's EOF, a lossless filebus's end). */
  done: boolean;
}

/**
 * A bridge's live status.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bridge, statusLine } from "@x/fsbus/bridge";
 * import { publish, subscribe } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${dir}/a`);
 * Deno.mkdirSync(`${dir}/b`);
 * {
 *   await using b = await bridge(`dir:${dir}/a`, `dir:${dir}/b`, { stateDir: false });
 *   publish(`${dir}/a`, "hello");
 *   for await (const _ of subscribe(`${dir}/b`, { since: "all" })) break;
 *   assert.equal(b.status.state, "local");
 *   assert.equal(b.status.directions[0]!.delivered, 1);
 *   assert.match(statusLine(b.status), /^local; dir:.* -> dir:.*: in 1 out 1 /);
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface BridgeStatus {
  /** The NATS connection's state ("local" when both sides are local buses). */
  state: NatsState | "local" | "stopped" | "failed";
  /** The NATS server in use. */
  server: string;
  /** Each direction's counters. */
  readonly directions: DirectionStatus[];
  /** How many messages or operations failed. */
  errors: number;
  /** The last failure, one line. */
  lastError: string;
}

/**
 * One line summing up a status, for logs: state, server, and each direction's counters.
 *
 * @param s The status.
 * @returns The line (no newline).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { statusLine } from "@x/fsbus/bridge";
 * const line = statusLine({
 *   state: "local",
 *   server: "",
 *   directions: [
 *     { from: "dir:/a", to: "dir:/b", received: 2, delivered: 2, skipped: 0, dropped: 0, lag: 0, done: false },
 *   ],
 *   errors: 0,
 *   lastError: "",
 * });
 * assert.equal(line, "local; dir:/a -> dir:/b: in 2 out 2 skipped 0 dropped 0 lag 0");
 * ```
 */
export function statusLine(s: BridgeStatus): string {
  const dirs = s.directions.map((d) =>
    `${d.from} -> ${d.to}: in ${d.received} out ${d.delivered} skipped ${d.skipped} dropped ${d.dropped} lag ${d.lag}${
      d.done ? " (ended)" : ""
    }`
  );
  const head = s.state === "local" ? "local" : `${s.state}${s.server ? ` ${s.server}` : ""}`;
  return `${head}; ${dirs.join("; ")}${s.errors ? `; errors ${s.errors}: ${s.lastError}` : ""}`;
}

function canonical(e: Endpoint): string {
  const real = (p: string) => {
    try {
      return Deno.realPathSync(p);
    } catch {
      return p;
    }
  };
  switch (e.kind) {
    case "dir":
      return `dir:${real(e.path)}${e.topic === undefined ? "" : `#${e.topic}`}`;
    case "mq":
      return `mq:${real(e.group)}${e.stream === undefined ? "" : `/${e.stream}`}`;
    case "filebus":
      return `filebus:${real(e.path)}`;
    case "fanout":
      return `fanout:${e.root ?? ""}#${e.topic}`;
    default:
      return e.text;
  }
}

/** The bus an endpoint is part of: a topic's directory bus, a stream's group. */
function busOf(e: Endpoint): string {
  if (e.kind === "dir") return canonical({ kind: "dir", path: e.path, text: e.text });
  if (e.kind === "mq") return canonical({ kind: "mq", group: e.group, text: e.text });
  return canonical(e);
}

function directionKey(src: Endpoint, dst: Endpoint): string {
  return short(`${canonical(src)}\n${canonical(dst)}`).slice(0, 12);
}

/**
 * Takes over the state an earlier fsbus kept per direction number (`pos-0`, `pos-1`) and in
 * one list (`seen`): the positions move to their direction's name, and the ids join the
 * local buses' lists (as messages not to send again).
 */
async function migrateState(
  stateDir: string,
  pairs: [Endpoint, Endpoint][],
  writtenFor: (e: Endpoint) => Seen,
): Promise<void> {
  for (const [i, [src, dst]] of pairs.entries()) {
    const old = `${stateDir}/pos-${i}`;
    const now = `${stateDir}/pos-${directionKey(src, dst)}`;
    try {
      Deno.lstatSync(now);
    } catch {
      try {
        if (Deno.lstatSync(old).isFile) Deno.renameSync(old, now);
      } catch {
        // nothing to take over
      }
    }
  }
  let ids: string[];
  try {
    ids = Deno.readTextFileSync(`${stateDir}/seen`).split("\n").filter((l) => l !== "");
  } catch {
    return;
  }
  for (const e of pairs.flat()) {
    if (isRemote(e)) continue;
    const list = writtenFor(e);
    await list.guard(() => {
      for (const id of ids) list.add(id);
    });
  }
  Deno.renameSync(`${stateDir}/seen`, `${stateDir}/seen.migrated`);
}

/**
 * What a bridge records as where a message came from: a NATS subject or JetStream stream
 * whichever server it was reached through, a local bus by its real path.
 */
function peerKey(e: Endpoint): string {
  if (e.kind === "jetstream") return `jetstream:${e.stream}/${e.subject}`;
  if (e.kind === "nats") return `nats:${e.subject}`;
  return canonical(e);
}

function short(text: string): string {
  return sha256Hex(text).slice(0, 16);
}

function defaultStateDir(): string {
  const xdg = Deno.env.get("XDG_STATE_HOME");
  const home = Deno.env.get("HOME") ?? "/tmp";
  return `${xdg || `${home}/.local/state`}/fsbus/bridge`;
}

/** A running bridge: its status, a promise for its end, and `close()`. */
export class Bridge implements AsyncDisposable {
  /** The live status. */
  readonly status: BridgeStatus;
  /** This bridge's identity (its state directory's and durable consumers' name). */
  readonly identity: string;
  /** Resolves when every direction's source has ended; rejects when a direction fails. */
  readonly done: Promise<void>;
  readonly #abort: AbortController;
  readonly #sources: Source[];
  readonly #sinks: Sink[];
  readonly #conns: NatsConnection[];
  readonly #state: Disposable[];
  #closing: Promise<void> | undefined;

  /** @internal Made by {@linkcode bridge}. */
  constructor(
    parts: {
      status: BridgeStatus;
      identity: string;
      done: Promise<void>;
      abort: AbortController;
      sources: Source[];
      sinks: Sink[];
      conns: NatsConnection[];
      state: Disposable[];
    },
  ) {
    this.status = parts.status;
    this.identity = parts.identity;
    this.done = parts.done;
    this.#abort = parts.abort;
    this.#sources = parts.sources;
    this.#sinks = parts.sinks;
    this.#conns = parts.conns;
    this.#state = parts.state;
    this.done.catch(() => {});
  }

  /** Stops reading, delivers what was taken, and releases everything; safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort();
      for (const s of this.#sources) await s.close().catch(() => {});
      await this.done.catch(() => {});
      for (const s of this.#sinks) await s.close().catch(() => {});
      for (const c of this.#conns) await c.close().catch(() => {});
      for (const s of this.#state) s[Symbol.dispose]();
      if (this.status.state !== "failed") this.status.state = "stopped";
    })();
    return this.#closing;
  }

  /** Same as {@linkcode Bridge.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a bridge from one endpoint to another (and back with `both`). Resolves once both
 * sides are open: a missing bus or a bad endpoint throws at once; unreachable NATS servers
 * are retried until one answers, with a notice each time.
 *
 * Delivery: every message read from the source is stored once at the sink. JetStream sinks
 * publish with a message id (`ORIGIN:ID`), JetStream sources read a durable consumer and
 * skip what the persisted position says was written, and a message this bridge wrote into a
 * bus (or published) is never carried back out.
 *
 * @param from The source endpoint (see {@linkcode parseEndpoint}).
 * @param to The sink endpoint.
 * @param options Both directions, identity, state, history, notices, signal.
 * @returns The running bridge (dispose it to stop).
 * @throws {FsbusError} For a bad endpoint, a missing bus, a stream that cannot be made.
 *
 * @example Join a fanout topic and a directory bus on one machine
 * ```ts
 * import assert from "node:assert/strict";
 * import { bridge } from "@x/fsbus/bridge";
 * import { createTopic, publish } from "@x/fsbus/fanout";
 * import { subscribe } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${dir}/topics`, { mode: 0o700 });
 * Deno.mkdirSync(`${dir}/bus`);
 * createTopic("news", { root: `${dir}/topics` });
 * {
 *   await using b = await bridge("fanout:news", `dir:${dir}/bus#news`, {
 *     root: `${dir}/topics`,
 *     stateDir: false,
 *   });
 *   publish("news", "extra", { root: `${dir}/topics` }); // a fanout topic is live only
 *   for await (const m of subscribe(`${dir}/bus`, { topic: "news", since: "all" })) {
 *     assert.equal(new TextDecoder().decode(m.data), "extra");
 *     break;
 *   }
 *   assert.equal(b.status.directions[0]!.delivered, 1);
 * } // leaving the block stops the bridge
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function bridge(
  from: string | Endpoint,
  to: string | Endpoint,
  options: BridgeOptions = {},
): Promise<Bridge> {
  const { both = false, history = false, lossless = false } = options;
  const endpointOptions = options.root === undefined ? {} : { root: options.root };
  const a = typeof from === "string" ? parseEndpoint(from, endpointOptions) : from;
  const b = typeof to === "string" ? parseEndpoint(to, endpointOptions) : to;
  const host = Deno.hostname();
  const locals = [a, b].filter((e) => !isRemote(e));
  const basis = (locals.length > 0 ? locals : [a, b]).map(canonical).join("\n");
  const identity = options.name ?? short(`${host}\n${basis}`);
  // One origin per local bus, whatever the bridge's name: no bridge of the bus carries a
  // message back into it.
  const origin = locals.length === 1 ? short(`${host}\n${busOf(locals[0]!)}`) : identity;
  if (!/^[A-Za-z0-9_-]+$/.test(identity)) {
    throw new FsbusError(
      "usage",
      `Cannot use bridge name "${identity}": letters, digits, - and _ only`,
    );
  }
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([abort.signal, options.signal]) : abort.signal;
  const status: BridgeStatus = {
    state: isRemote(a) || isRemote(b) ? "connecting" : "local",
    server: "",
    directions: [],
    errors: 0,
    lastError: "",
  };
  const onError = (err: FsbusError) => {
    status.errors++;
    status.lastError = err.message;
    options.onError?.(err);
  };
  const held: Disposable[] = [];
  const sources: Source[] = [];
  const sinks: Sink[] = [];
  const conns = new Map<string, NatsConnection>();
  const release = async () => {
    for (const s of sources) await s.close().catch(() => {});
    for (const s of sinks) await s.close().catch(() => {});
    for (const c of conns.values()) await c.close().catch(() => {});
    for (const h of held) h[Symbol.dispose]();
  };
  try {
    let stateDir: string | undefined;
    if (options.stateDir !== false) {
      stateDir = `${options.stateDir ?? defaultStateDir()}/${identity}`;
      try {
        Deno.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw new FsbusError("io", `Cannot make bridge state "${stateDir}": ${String(err)}`);
      }
    }
    // Every bridge of a local bus (this machine, this state directory) shares one list of
    // the ids written into it, and one origin.
    const stateRoot = options.stateDir === false
      ? undefined
      : options.stateDir ?? defaultStateDir();
    const lists = new Map<string, Seen>();
    const writtenFor = (e: Endpoint): Seen => {
      const bus = isRemote(e) ? "" : busOf(e);
      let list = lists.get(bus);
      if (list) return list;
      if (isRemote(e) || stateRoot === undefined) {
        list = new Seen(undefined);
      } else {
        const dir = `${stateRoot}/bus-${short(`${host}\n${bus}`)}`;
        try {
          Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
        } catch (err) {
          throw new FsbusError("io", `Cannot make bridge state "${dir}": ${String(err)}`);
        }
        list = new Seen(`${dir}/written`);
      }
      held.push(list);
      lists.set(bus, list);
      return list;
    };
    const echo = new Echo();
    const pairs: [Endpoint, Endpoint][] = both ? [[a, b], [b, a]] : [[a, b]];
    const connect = async (e: Extract<Endpoint, { kind: "nats" | "jetstream" }>) => {
      const key = e.servers.join(",");
      let nc = conns.get(key);
      if (!nc) {
        nc = await connectNats(e.servers, {
          name: `fsbus bridge ${identity}`,
          signal,
          onStatus: (s) => {
            status.state = s.state;
            if (s.server) status.server = s.server;
            const what = s.detail || `${s.state}${s.server ? ` ${s.server}` : ""}`;
            if (s.state !== "connecting") options.onNotice?.(what);
          },
        });
        conns.set(key, nc);
      }
      return nc;
    };
    const pumps: Promise<void>[] = [];
    const opened: {
      src: Source;
      sink: Sink;
      d: DirectionStatus;
      pos: Position | undefined;
      sent: Seen;
    }[] = [];
    if (stateDir !== undefined) await migrateState(stateDir, pairs, (e) => writtenFor(e));
    for (const [src, dst] of pairs) {
      // Files and consumers per direction: bridges of one bus share an identity.
      const key = directionKey(src, dst);
      const pos = stateDir === undefined ? undefined : new Position(`${stateDir}/pos-${key}`);
      if (pos) held.push(pos);
      const sent = new Seen(stateDir === undefined ? undefined : `${stateDir}/sent-${key}`);
      held.push(sent);
      const base: Omit<Context, "wide" | "written" | "peer"> = {
        origin,
        host,
        sent,
        echo,
        position: pos?.initial,
        history,
        lossless,
        blockMs: options.blockMs ?? 0,
        signal,
        onError,
        onNotice: (text) => options.onNotice?.(text),
      };
      // Local ends first: a missing bus fails before any network wait.
      const srcCtx = { ...base, written: writtenFor(src), wide: isWide(dst), peer: peerKey(dst) };
      const dstCtx = { ...base, written: writtenFor(dst), wide: isWide(src), peer: peerKey(src) };
      const sink = isRemote(dst) ? undefined : localSink(dst, dstCtx);
      if (sink) sinks.push(sink);
      const source = isRemote(src) ? undefined : localSource(src, srcCtx);
      if (source) sources.push(source);
      const s2 = source ??
        await remoteSource(
          src as Extract<Endpoint, { kind: "nats" | "jetstream" }>,
          await connect(
            src as Extract<Endpoint, { kind: "nats" | "jetstream" }>,
          ),
          srcCtx,
          `fsbus_${identity}_${key}`,
        );
      if (!source) sources.push(s2);
      const k2 = sink ??
        await remoteSink(
          dst as Extract<Endpoint, { kind: "nats" | "jetstream" }>,
          await connect(dst as Extract<Endpoint, { kind: "nats" | "jetstream" }>),
          dstCtx,
        );
      if (!sink) sinks.push(k2);
      const d: DirectionStatus = {
        from: src.text,
        to: dst.text,
        received: 0,
        delivered: 0,
        skipped: 0,
        dropped: 0,
        lag: 0,
        done: false,
      };
      status.directions.push(d);
      opened.push({ src: s2, sink: k2, d, pos, sent });
    }
    for (const o of opened) pumps.push(pump(o.src, o.sink, o.d, o.pos, o.sent, onError, signal));
    const measure = () => {
      for (const o of opened) o.d.lag = o.src.lag() + o.sink.pending();
    };
    const lagTimer = setInterval(measure, 200);
    const done = Promise.all(pumps).then(
      () => {
        clearInterval(lagTimer);
        measure();
      },
      (err) => {
        clearInterval(lagTimer);
        status.state = "failed";
        status.lastError = err instanceof Error ? err.message : String(err);
        throw err;
      },
    );
    return new Bridge({
      status,
      identity,
      done,
      abort,
      sources,
      sinks,
      conns: [...conns.values()],
      state: held,
    });
  } catch (err) {
    abort.abort();
    await release();
    throw err;
  }
}

async function pump(
  source: Source,
  sink: Sink,
  d: DirectionStatus,
  pos: Position | undefined,
  sent: Seen,
  onError: (err: FsbusError) => void,
  signal: AbortSignal,
): Promise<void> {
  let saved = pos?.initial ?? "";
  let pending = pos?.pending;
  try {
    for await (const m of source) {
      d.received++;
      const finish = () => {
        if (m.position !== undefined) pos?.saveSoon(saved = m.position);
        if (m.seenId !== undefined) sent.add(m.seenId);
        m.done?.();
      };
      if (m.skip || (m.pinState && !sink.pinStates)) {
        d.skipped++;
        // A lock kept for this message (announced by the last one's `more`): let go.
        if (!m.more) sink.idle?.();
        finish();
        continue;
      }
      const key = m.seenId ?? m.position;
      if (pending && key === pending.key) {
        // The last run stopped while writing this one: it may be in the bus already.
        const since = pending.since;
        pending = undefined;
        if (await sink.has?.(m, since)) {
          d.skipped++;
          if (!m.more) sink.idle?.();
          finish();
          continue;
        }
      }
      // A local bus: write ahead which message is going in (see Position).
      if (pos && sink.has && key !== undefined) pos.save(saved, key);
      try {
        // Awaited even when the write was done at once: the turn lets what the write queued
        // run (the NATS client flushes in a microtask) before this loop asks the source for
        // the next message, which may block this thread (a directory bus's blocking waits).
        await sink.write(m, () => {
          d.delivered++;
          finish();
        });
      } catch (err) {
        if (err instanceof FsbusError && err.code !== "closed" && err.code !== "io") {
          d.dropped++;
          if (!m.more) sink.idle?.();
          onError(err);
          finish();
          continue;
        }
        throw err;
      }
    }
  } finally {
    sink.idle?.();
  }
  await sink.flush();
  d.done = !signal.aborted;
}
