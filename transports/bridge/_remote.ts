/**
 * NATS core subjects and JetStream streams as bridge sources and sinks. Metadata travels in
 * headers, payload bytes unchanged; JetStream sinks publish with `Nats-Msg-Id` (pipelined,
 * acks taken in order) and JetStream sources read a durable consumer, skipping what the
 * persisted position says was already written.
 *
 * @module
 */

import {
  checkPayload,
  type Consumer,
  type ConsumerMessages,
  durableConsumer,
  ensureStream,
  type JsMsg,
  loadNats,
  type MsgHdrs,
  type NatsConnection,
  type NatsLib,
  publishOnce,
  subjectToken,
} from "../_nats.ts";
import {
  type Context,
  type Envelope,
  HEADER,
  headerSize,
  type Sink,
  type Source,
} from "./_envelope.ts";
import type { Endpoint } from "./endpoint.ts";

type Remote = Extract<Endpoint, { kind: "nats" | "jetstream" }>;

/** The subject a message of `topic` goes to. */
function subjectOf(base: string, wide: boolean, topic: string): string {
  if (!wide) return base;
  if (topic === "") return `${base}._`;
  return `${base}.${topic.split("/").map(subjectToken).join(".")}`;
}

/** The subject filter a source of `base` reads. */
function filterOf(base: string, wide: boolean): string {
  return wide ? `${base}.>` : base;
}

function toHeaders(headers: NatsLib["headers"], e: Envelope): MsgHdrs {
  const h = headers();
  h.set(HEADER.origin, e.origin);
  h.set(HEADER.id, e.id);
  h.set(HEADER.topic, encodeURIComponent(e.topic));
  h.set(HEADER.time, e.time.toISOString());
  h.set(HEADER.host, e.host);
  if (e.pinState) h.set(HEADER.pin, "1");
  return h;
}

function fromMsg(
  data: Uint8Array,
  subject: string,
  h: MsgHdrs | undefined,
  base: string,
  fallbackId: string,
): Envelope {
  const topicHeader = h?.get(HEADER.topic);
  let topic = "";
  if (topicHeader) {
    try {
      topic = decodeURIComponent(topicHeader);
    } catch {
      topic = "";
    }
  } else if (subject.startsWith(base + ".")) {
    const rest = subject.slice(base.length + 1);
    topic = rest === "_" ? "" : rest.split(".").join("/");
  }
  const t = Date.parse(h?.get(HEADER.time) ?? "");
  return {
    ...(h?.get(HEADER.pin) ? { pinState: true } : {}),
    data,
    id: h?.get(HEADER.id) || fallbackId,
    topic,
    time: Number.isFinite(t) ? new Date(t) : new Date(),
    origin: h?.get(HEADER.origin) ?? "",
    host: h?.get(HEADER.host) ?? "",
  };
}

/**
 * Opens a NATS subject or JetStream stream as a sink.
 *
 * @param e The endpoint.
 * @param nc The connection.
 * @param ctx The bridge's shared context.
 * @returns The sink.
 */
export async function remoteSink(e: Remote, nc: NatsConnection, ctx: Context): Promise<Sink> {
  const { headers } = await loadNats();
  if (e.kind === "nats") {
    return {
      write(m, delivered) {
        const subject = subjectOf(e.subject, ctx.wide, m.topic);
        checkPayload(nc, subject, m.data.length + headerSize(m));
        nc.publish(subject, m.data, { headers: toHeaders(headers, m) });
        delivered();
      },
      flush: () => nc.flush(),
      pending: () => 0,
      close: () => nc.isClosed() ? Promise.resolve() : nc.flush(),
      pinStates: ctx.wide,
    };
  }
  await ensureStream(await nc.jetstreamManager(), e.stream, filterOf(e.subject, ctx.wide));
  const js = nc.jetstream();
  const window = 512;
  const queue: {
    m: Envelope;
    subject: string;
    ack: Promise<unknown> | undefined;
    delivered: () => void;
  }[] = [];
  const send = (m: Envelope, subject: string) =>
    publishOnce(js, subject, m.data, `${m.origin}:${m.id}`, toHeaders(headers, m));
  // Acks are taken in order as they come. A failed publish (a server down, a stream leader
  // moving, a timeout) sends it and everything after it again, in order and with the same
  // ids, so the stream keeps one copy of each; repeated until the stream has them.
  // While a failed publish waits to be sent again, later messages wait too (not sent): the
  // stream must not store them before it.
  let recovering = false;
  let failure: unknown;
  let draining: Promise<void> | undefined;
  let room: (() => void) | undefined;
  const settleOldest = async () => {
    const q = queue[0]!;
    for (let attempt = 0;; attempt++) {
      try {
        q.ack ??= send(q.m, q.subject);
        await q.ack;
        break;
      } catch (err) {
        if (nc.isClosed()) throw err;
        recovering = true;
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
        recovering = false;
        for (const p of queue) {
          p.ack = send(p.m, p.subject);
          p.ack.catch(() => {});
        }
      }
    }
    queue.shift();
    q.delivered();
    room?.();
  };
  const drain = () => {
    draining ??= (async () => {
      try {
        while (queue.length > 0) await settleOldest();
      } catch (err) {
        failure = err;
      } finally {
        draining = undefined;
        room?.();
      }
    })();
  };
  const flush = async () => {
    while (queue.length > 0 && !failure) {
      drain();
      await draining;
    }
    if (failure) throw failure;
  };
  return {
    async write(m, delivered) {
      if (failure) throw failure;
      const subject = subjectOf(e.subject, ctx.wide, m.topic);
      checkPayload(nc, subject, m.data.length + headerSize(m));
      const ack = recovering ? undefined : send(m, subject);
      ack?.catch(() => {});
      queue.push({ m, subject, ack, delivered });
      drain();
      while (queue.length >= window && !failure) {
        await new Promise<void>((r) => (room = r));
      }
      room = undefined;
    },
    flush,
    pending: () => queue.length,
    pinStates: ctx.wide,
    async close() {
      if (!nc.isClosed()) await flush().catch(() => {});
    },
  };
}

/**
 * Opens a NATS subject or JetStream stream as a source. Messages this bridge published
 * itself (its own origin) are acknowledged and skipped.
 *
 * @param e The endpoint.
 * @param nc The connection.
 * @param ctx The bridge's shared context.
 * @param durable The durable consumer's name (JetStream).
 * @returns The source.
 */
export async function remoteSource(
  e: Remote,
  nc: NatsConnection,
  ctx: Context,
  durable: string,
): Promise<Source> {
  const filter = filterOf(e.subject, ctx.wide);
  const { ConsumerEvents } = await loadNats();
  if (e.kind === "nats") {
    const sub = nc.subscribe(filter);
    let n = 0;
    return {
      async *[Symbol.asyncIterator]() {
        for await (const msg of sub) {
          const env = fromMsg(msg.data, msg.subject, msg.headers, e.subject, `nats-${n++}`);
          if (env.origin === ctx.origin) continue;
          yield env;
        }
      },
      lag: () => sub.getPending(),
      close: () => Promise.resolve(sub.unsubscribe()),
    };
  }
  await ensureStream(await nc.jetstreamManager(), e.stream, filter);
  const known = ctx.position === undefined ? undefined : Number(ctx.position);
  // Made here so that a stream or consumer that cannot be made fails the start.
  let consumer: Consumer | undefined = await durableConsumer(nc, e.stream, durable, filter, known);
  // Redeliveries (an ack lost in a failover) of what was already written are skipped.
  let last = known ?? 0;
  let pending = 0;
  let messages: ConsumerMessages | undefined;
  let closed = false;
  let unacked: JsMsg | undefined;
  let handled = 0;
  let ackTimer: ReturnType<typeof setTimeout> | undefined;
  const ackNow = () => {
    clearTimeout(ackTimer);
    ackTimer = undefined;
    unacked?.ack();
    unacked = undefined;
  };
  // After a reconnect (to another server), pull again from a consumer made anew.
  (async () => {
    for await (const st of nc.status()) if (st.type === "reconnect") messages?.stop();
  })().catch(() => {});
  return {
    async *[Symbol.asyncIterator]() {
      while (!closed && !ctx.signal.aborted) {
        try {
          // Every message up to `last` was handled: a consumer remade after a stall (a
          // server gone, the consumer's leader moved) starts right after it, in order.
          consumer ??= await durableConsumer(nc, e.stream, durable, filter, last);
          messages = await consumer.consume({
            max_messages: 1000,
            expires: 10_000,
            idle_heartbeat: 2_000,
          });
          const current = messages;
          (async () => {
            for await (const st of await current.status()) {
              const stalled = (st.type === ConsumerEvents.HeartbeatsMissed &&
                (st.data as number) >= 2) ||
                st.type === ConsumerEvents.ConsumerDeleted ||
                st.type === ConsumerEvents.ConsumerNotFound ||
                st.type === ConsumerEvents.StreamNotFound ||
                st.type === ConsumerEvents.NoResponders;
              if (stalled) current.stop();
            }
          })().catch(() => {});

          for await (const m of messages as AsyncIterable<JsMsg>) {
            pending = m.info.pending;
            const seq = m.seq;
            if (seq <= last) {
              m.ack();
              continue;
            }
            last = seq;
            const env = fromMsg(m.data, m.subject, m.headers, e.subject, `${e.stream}-${seq}`);
            env.position = String(seq);
            // Acks are cumulative: one every 64 messages, and the last one within 100 ms.
            env.done = () => {
              unacked = m;
              if (++handled % 64 === 0) ackNow();
              else ackTimer ??= setTimeout(ackNow, 100);
            };
            if (env.origin === ctx.origin) env.skip = true;
            yield env;
          }
        } catch (err) {
          if (closed || ctx.signal.aborted || nc.isClosed()) break;
          const why = err instanceof Error ? err.message : String(err);
          ctx.onNotice(`Reading JetStream stream "${e.stream}" again: ${why}`);
          await new Promise((r) => setTimeout(r, 500));
        }
        consumer = undefined;
      }
    },
    lag: () => pending,
    async close() {
      closed = true;
      ackNow();
      await messages?.close();
    },
  };
}
