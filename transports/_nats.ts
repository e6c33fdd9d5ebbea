/**
 * The one NATS client module of fsbus (shared by the bridge and messagefs): server lists,
 * a connection that reconnects forever and reports its state, subject checks, and the
 * JetStream helpers both need (ensure a stream, publish with a message id, durable consumers).
 *
 * @example Connect, publish, close
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const states: string[] = [];
 * const nc = await connectNats(`127.0.0.1:${port}`, { onStatus: (s) => states.push(s.state) });
 * const sub = nc.subscribe("app.events", { max: 1 });
 * nc.publish("app.events", new TextEncoder().encode("hi"));
 * for await (const m of sub) assert.equal(new TextDecoder().decode(m.data), "hi");
 * await nc.drain();
 * assert.equal(states.at(-1), "closed");
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */

import type {
  Consumer,
  JetStreamClient,
  JetStreamManager,
  MsgHdrs,
  NatsConnection,
  PubAck,
} from "nats";
import { FsbusError } from "../types.ts";
import { denoTransport } from "./_nats_transport.ts";

export type {
  Consumer,
  ConsumerMessages,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  Msg,
  MsgHdrs,
  NatsConnection,
} from "nats";

/** The `nats` client module's values (what is used at run time, not only as types). */
export type NatsLib = typeof import("nats");

let lib: Promise<NatsLib> | undefined;

/**
 * Loads the `nats` client on first use (a dynamic import), so that programs importing fsbus
 * without using NATS never load it. Every later call returns the same module.
 *
 * @returns The module.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadNats } from "./_nats.ts";
 * const { headers } = await loadNats();
 * const h = headers();
 * h.set("fsbus-id", "1");
 * assert.equal(h.get("fsbus-id"), "1");
 * assert.equal(await loadNats(), await loadNats()); // loaded once
 * ```
 */
export function loadNats(): Promise<NatsLib> {
  lib ??= import("nats");
  return lib;
}

let internals: Promise<typeof import("nats/lib/nats-base-client/internal_mod.js")> | undefined;

/** Connects with fsbus's transport over Deno's sockets (see _nats_transport.ts). */
async function connectDeno(options: import("nats").ConnectionOptions): Promise<NatsConnection> {
  internals ??= import("nats/lib/nats-base-client/internal_mod.js");
  const nats = await internals;
  // The package's own connect() sets its Node transport each time: set ours each time too.
  nats.setTransportFactory({ factory: denoTransport(nats) });
  return await nats.NatsConnectionImpl.connect(options);
}

/** The state of a NATS connection, as reported to {@linkcode ConnectOptions.onStatus}. */
export type NatsState = "connecting" | "connected" | "disconnected" | "reconnecting" | "closed";

/**
 * One status report: the state, the server involved, and a one-line detail.
 *
 * @example
 * ```ts
 * import type { NatsStatus } from "./_nats.ts";
 * const s: NatsStatus = { state: "connected", server: "nats://127.0.0.1:4222", detail: "" };
 * ```
 */
export interface NatsStatus {
  /** The connection's state after this event. */
  state: NatsState;
  /** The server the event concerns, when known. */
  server: string;
  /** A one-line explanation (an error reason, a retry notice), or "". */
  detail: string;
}

/**
 * Options of {@linkcode connectNats}.
 *
 * @example
 * ```ts
 * import type { ConnectOptions } from "./_nats.ts";
 * const options: ConnectOptions = { name: "fsbus bridge", retryMs: 1000 };
 * ```
 */
export interface ConnectOptions {
  /** The client name the servers show in their monitoring. */
  name?: string;
  /** Called on every state change (and once per failed first attempt). */
  onStatus?: (status: NatsStatus) => void;
  /** Time between first-connection attempts, in milliseconds (default 1000). */
  retryMs?: number;
  /** Timeout of one connection attempt, in milliseconds (default 2000). */
  timeoutMs?: number;
  /** Give up the first connection when aborted. */
  signal?: AbortSignal;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/;

/**
 * Parses a server list `host:port,host:port` (each may start with `nats://`) into URLs.
 *
 * @param list The comma-separated list.
 * @returns The servers as `nats://host:port` (port 4222 when omitted).
 * @throws {FsbusError} `invalid` for an empty list or a malformed server.
 *
 * @example
 * ```ts
 * import { parseServers } from "./_nats.ts";
 * console.log(parseServers("a:4222,nats://b:4223")); // ["nats://a:4222", "nats://b:4223"]
 * ```
 */
export function parseServers(list: string): string[] {
  const out: string[] = [];
  for (const raw of list.split(",")) {
    const s = raw.trim().replace(/^nats:\/\//, "");
    const m = HOST_PORT.exec(s);
    const port = m?.[2] === undefined ? 4222 : Number(m[2]);
    if (!m || port < 1 || port > 65535) {
      throw new FsbusError("invalid", `Cannot use NATS server "${raw}": expected HOST:PORT`);
    }
    out.push(`nats://${m[1]}:${port}`);
  }
  return out;
}

const TOKEN = /^[^\s.*>]+$/;

/**
 * Checks a NATS subject: dot-separated tokens without spaces; wildcards (`*`, a final `>`)
 * only when `wildcards` is true (subscribing).
 *
 * @param subject The subject.
 * @param wildcards Whether wildcards are allowed.
 * @throws {FsbusError} `invalid` when the subject is not allowed.
 *
 * @example
 * ```ts
 * import { checkSubject } from "./_nats.ts";
 * checkSubject("app.events", false);
 * checkSubject("app.*", true);
 * ```
 */
export function checkSubject(subject: string, wildcards: boolean): void {
  const tokens = subject.split(".");
  const ok = subject.length > 0 && tokens.every((t, i) =>
    TOKEN.test(t) ||
    (wildcards && (t === "*" || (t === ">" && i === tokens.length - 1)))
  );
  if (!ok) {
    const why = /\s/.test(subject)
      ? "subjects cannot contain spaces"
      : /[*>]/.test(subject) && !wildcards
      ? "wildcards are not allowed here"
      : "expected dot-separated tokens";
    throw new FsbusError("invalid", `Cannot use NATS subject "${subject}": ${why}`);
  }
}

/**
 * Turns any text into one subject token: characters a token cannot hold become `_`.
 *
 * @param text The text (a topic or stream name).
 * @returns A non-empty token.
 *
 * @example
 * ```ts
 * import { subjectToken } from "./_nats.ts";
 * console.log(subjectToken("a b.c")); // "a_b_c"
 * ```
 */
export function subjectToken(text: string): string {
  const t = text.replace(/[\s.*>]/g, "_");
  return t === "" ? "_" : t;
}

function reason(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === "string" ? e.code : "";
  if (code === "CONNECTION_REFUSED") return "connection refused";
  if (code === "TIMEOUT") return "timed out";
  const msg = typeof e?.message === "string" ? e.message : String(err);
  return msg.split("\n")[0]!.toLowerCase();
}

/**
 * Connects to one of `servers`, and stays connected: reconnects forever (moving to another
 * server of the cluster), reporting each change through `onStatus`. When no server answers
 * at first, reports it once per attempt and keeps trying until one does (or `signal` aborts).
 *
 * @param servers A server list (`host:port,...`) or parsed URLs.
 * @param options Name, status callback, retry timing, signal.
 * @returns The connection.
 * @throws {FsbusError} `closed` when aborted before connecting; `invalid` for a bad list.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * // The first server of the list is not running: the other one is used.
 * const nc = await connectNats(`127.0.0.1:1,127.0.0.1:${port}`);
 * assert.equal(nc.getServer(), `127.0.0.1:${port}`);
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function connectNats(
  servers: string | string[],
  options: ConnectOptions = {},
): Promise<NatsConnection> {
  const list = typeof servers === "string" ? parseServers(servers) : servers;
  const report = options.onStatus ?? (() => {});
  const retryMs = options.retryMs ?? 1000;
  for (let attempt = 1;; attempt++) {
    if (options.signal?.aborted) {
      throw new FsbusError("closed", `Cannot connect to "${list.join(",")}": aborted`);
    }
    report({ state: "connecting", server: list.join(","), detail: "" });
    try {
      const nc = await connectDeno({
        servers: list,
        name: options.name ?? "fsbus",
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: options.timeoutMs ?? 2000,
        pingInterval: 5000,
        maxPingOut: 2,
      });
      watchStatus(nc, report);
      report({ state: "connected", server: nc.getServer(), detail: "" });
      return nc;
    } catch (err) {
      report({
        state: "reconnecting",
        server: list.join(","),
        detail: `Cannot connect to "${list.join(",")}": ${reason(err)}; retrying (attempt ${
          attempt + 1
        })`,
      });
      await sleep(retryMs, options.signal);
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function watchStatus(nc: NatsConnection, report: (s: NatsStatus) => void): void {
  (async () => {
    for await (const s of nc.status()) {
      const server = typeof s.data === "string" ? s.data : nc.getServer();
      if (s.type === "disconnect") report({ state: "disconnected", server, detail: "" });
      else if (s.type === "reconnect") report({ state: "connected", server, detail: "" });
      else if (s.type === "reconnecting") report({ state: "reconnecting", server, detail: "" });
      else if (s.type === "error") {
        report({ state: "connected", server: nc.getServer(), detail: reason(s.data) });
      }
    }
  })().catch(() => {});
  nc.closed().then((err) => {
    report({ state: "closed", server: "", detail: err ? reason(err) : "" });
  });
}

/**
 * The largest payload (headers included) the connected server accepts.
 *
 * @param nc The connection.
 * @returns Bytes (1 MiB when the server did not say).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, maxPayload } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const nc = await connectNats(`127.0.0.1:${port}`);
 * assert.equal(maxPayload(nc), 1024 * 1024); // the server's default
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function maxPayload(nc: NatsConnection): number {
  return nc.info?.max_payload ?? 1024 * 1024;
}

/**
 * Throws the clear `too_large` error when `size` bytes (payload plus headers) exceed the
 * server's max_payload, instead of letting the message be dropped.
 *
 * @param nc The connection.
 * @param subject Where it was going.
 * @param size Its size in bytes.
 * @throws {FsbusError} `too_large`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkPayload, connectNats } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const nc = await connectNats(`127.0.0.1:${port}`);
 * checkPayload(nc, "app", 1000); // fits
 * assert.throws(() => checkPayload(nc, "app", 2 << 20), /over the server's max_payload/);
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function checkPayload(nc: NatsConnection, subject: string, size: number): void {
  const max = maxPayload(nc);
  if (size > max) {
    throw new FsbusError(
      "too_large",
      `Cannot publish to "${subject}": message of ${size} bytes is over the server's max_payload of ${max} bytes`,
    );
  }
}

/**
 * Options of {@linkcode ensureStream}.
 *
 * @example
 * ```ts
 * import type { StreamOptions } from "./_nats.ts";
 * const options: StreamOptions = { replicas: 3, memory: false };
 * ```
 */
export interface StreamOptions {
  /** Replicas in a cluster (default: 3, or 1 when the server is not clustered). */
  replicas?: number;
  /** Keep the stream in memory instead of on disk (default false). */
  memory?: boolean;
  /** Window for Nats-Msg-Id duplicate detection, in milliseconds (default 2 minutes). */
  duplicateWindowMs?: number;
}

/**
 * Makes sure the stream `name` exists and captures `subject`: creates it when missing, adds
 * the subject when the stream exists without it.
 *
 * @param jsm A JetStream manager.
 * @param name The stream's name.
 * @param subject The subject (may end in `.>`) it must capture.
 * @param options Replicas, storage, duplicate window.
 * @throws {FsbusError} `invalid` when the server refuses (bad name, overlapping subjects).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, ensureStream } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const nc = await connectNats(`127.0.0.1:${port}`);
 * const jsm = await nc.jetstreamManager();
 * await ensureStream(jsm, "APP", "app.>");
 * await ensureStream(jsm, "APP", "app.>"); // already there: nothing to do
 * assert.deepEqual((await jsm.streams.info("APP")).config.subjects, ["app.>"]);
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function ensureStream(
  jsm: JetStreamManager,
  name: string,
  subject: string,
  options: StreamOptions = {},
): Promise<void> {
  if (!/^[^\s.*>/\\]+$/.test(name)) {
    throw new FsbusError("invalid", `Cannot use JetStream stream "${name}": not a valid name`);
  }
  // A cluster busy electing leaders or making the stream for another client may not answer
  // in time: a timeout is tried again (five times), a refusal is not.
  for (let attempt = 1;; attempt++) {
    try {
      return await ensureStreamOnce(jsm, name, subject, options);
    } catch (err) {
      const cause = err instanceof FsbusError ? err.cause : err;
      if (attempt >= 5 || reason(cause) !== "timed out") throw err;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

async function ensureStreamOnce(
  jsm: JetStreamManager,
  name: string,
  subject: string,
  options: StreamOptions,
): Promise<void> {
  try {
    const info = await jsm.streams.info(name);
    if (!info.config.subjects?.some((pattern) => subjectCovers(pattern, subject))) {
      const subjects = [...(info.config.subjects ?? []), subject];
      await jsm.streams.update(name, { ...info.config, subjects });
    }
    return;
  } catch (err) {
    if ((err as { api_error?: { err_code?: number } }).api_error?.err_code !== 10059) {
      if (!String((err as Error).message).includes("stream not found")) {
        throw new FsbusError("invalid", `Cannot use JetStream stream "${name}": ${reason(err)}`, {
          cause: err,
        });
      }
    }
  }
  const { nanos, StorageType } = await loadNats();
  const base = {
    name,
    subjects: [subject],
    storage: options.memory ? StorageType.Memory : StorageType.File,
    duplicate_window: nanos(options.duplicateWindowMs ?? 120_000),
  };
  const replicas = options.replicas ?? 3;
  try {
    await jsm.streams.add({ ...base, num_replicas: replicas });
  } catch (err) {
    // Another client may have made it meanwhile.
    if (await jsm.streams.info(name).then(() => true, () => false)) {
      return await ensureStreamOnce(jsm, name, subject, options);
    }
    let last = err;
    // One replica for a server that is not clustered; not after a timeout (tried again).
    if (options.replicas === undefined && replicas > 1 && reason(err) !== "timed out") {
      try {
        await jsm.streams.add({ ...base, num_replicas: 1 });
        return;
      } catch (err2) {
        last = err2;
      }
    }
    throw new FsbusError("invalid", `Cannot create JetStream stream "${name}": ${reason(last)}`, {
      cause: last,
    });
  }
}

/**
 * Whether subject pattern `pattern` (with `*` and a final `>`) matches every subject that
 * `subject` (itself possibly a pattern) matches.
 *
 * @param pattern The wider pattern.
 * @param subject The subject or pattern it must cover.
 * @returns True when covered.
 *
 * @example
 * ```ts
 * import { subjectCovers } from "./_nats.ts";
 * console.log(subjectCovers("app.>", "app.events")); // true
 * console.log(subjectCovers("app.*", "app.a.b")); // false
 * ```
 */
export function subjectCovers(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] === "*") {
      if (s[i] === ">") return false;
      continue;
    }
    if (p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/**
 * Publishes to JetStream with a message id (`Nats-Msg-Id`), so that the stream keeps one
 * copy however often it is sent within the duplicate window; waits for the stream's ack.
 *
 * @param js A JetStream client.
 * @param subject The subject.
 * @param data The payload.
 * @param id The message id.
 * @param hdrs Headers to send with it.
 * @returns The ack (its `duplicate` is true for a resend).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, ensureStream, publishOnce } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const nc = await connectNats(`127.0.0.1:${port}`);
 * await ensureStream(await nc.jetstreamManager(), "APP", "app.>");
 * const js = nc.jetstream();
 * assert.equal((await publishOnce(js, "app.x", new Uint8Array([1]), "origin:1")).duplicate, false);
 * assert.equal((await publishOnce(js, "app.x", new Uint8Array([1]), "origin:1")).duplicate, true);
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function publishOnce(
  js: JetStreamClient,
  subject: string,
  data: Uint8Array,
  id: string,
  hdrs?: MsgHdrs,
): Promise<PubAck> {
  return js.publish(subject, data, hdrs ? { msgID: id, headers: hdrs } : { msgID: id });
}

/**
 * Makes a durable pull consumer of `stream`, acked cumulatively (an ack covers every earlier
 * message), filtered to `subject`, that
 * starts right after `after` (the last stream sequence the caller has already handled).
 * An existing consumer of that name is replaced, so that messages a dead reader left
 * unacknowledged come again at once and in order; without `after`, the new consumer starts
 * after the old one's ack floor (or at the stream's first message when there was none).
 *
 * @param nc The connection.
 * @param stream The stream.
 * @param durable The consumer's durable name (one per reader that must resume).
 * @param subject The filter subject.
 * @param after The last stream sequence already handled, when the caller keeps it.
 * @returns The consumer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectNats, durableConsumer, ensureStream, publishOnce } from "./_nats.ts";
 * // A nats-server with JetStream on a free loopback port (Debian's), its store in a temp dir.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", dir],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 * const nc = await connectNats(`127.0.0.1:${port}`);
 * await ensureStream(await nc.jetstreamManager(), "APP", "app.>");
 * await publishOnce(nc.jetstream(), "app.x", new TextEncoder().encode("one"), "origin:1");
 * const c = await durableConsumer(nc, "APP", "host-b", "app.>");
 * const messages = await c.consume();
 * for await (const m of messages) {
 *   assert.equal(new TextDecoder().decode(m.data), "one");
 *   m.ack();
 *   break; // stops consuming
 * }
 * await nc.close();
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function durableConsumer(
  nc: NatsConnection,
  stream: string,
  durable: string,
  subject: string,
  after?: number,
): Promise<Consumer> {
  if (!/^[^\s.*>/\\]+$/.test(durable)) {
    throw new FsbusError("invalid", `Cannot use JetStream consumer "${durable}": not a valid name`);
  }
  const { AckPolicy, DeliverPolicy, nanos } = await loadNats();
  const jsm = await nc.jetstreamManager();
  let start = after === undefined ? undefined : after + 1;
  try {
    const info = await jsm.consumers.info(stream, durable);
    start ??= info.ack_floor.stream_seq + 1;
    await jsm.consumers.delete(stream, durable);
  } catch (err) {
    if (!/consumer not found/i.test(String((err as Error).message))) {
      throw new FsbusError("io", `Cannot read JetStream consumer "${durable}": ${reason(err)}`, {
        cause: err,
      });
    }
  }
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.All,
    ...(start === undefined || start <= 1
      ? { deliver_policy: DeliverPolicy.All }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }),
    filter_subject: subject,
    max_ack_pending: 10_000,
    ack_wait: nanos(60_000),
  });
  return await nc.jetstream().consumers.get(stream, durable);
}
