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
  type Msg,
  type NatsConnection,
  subjectToken,
} from "../_nats.ts";
import { type Context, type Envelope, HEADER, type Sink, type Source } from "./_envelope.ts";
import { type Fields, HeaderReader, parseTime, SubjectReader } from "./_headers.ts";
import { headerBlock, jetstreamSink } from "./_jetstream_sink.ts";
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

/**
 * The fsbus headers of a message, read straight from its raw header block when the client
 * keeps it (see {@linkcode HeaderReader}), else through the client's `MsgHdrs`: the same
 * values, without building the client's header object for every message.
 */
function fieldsOf(msg: Msg | JsMsg, reader: HeaderReader): Fields | undefined {
  const impl = ((msg as { msg?: unknown }).msg ?? msg) as {
    _msg?: { hdr?: unknown };
    _rdata?: unknown;
  };
  const hdr = impl._msg?.hdr;
  const raw = impl._rdata;
  if (typeof hdr === "number" && raw instanceof Uint8Array) {
    if (hdr < 0) return undefined;
    return reader.read(raw.subarray(0, hdr));
  }
  const h = msg.headers;
  if (!h) return undefined;
  const out: Record<string, string> = {};
  for (const k of Object.values(HEADER)) {
    if (h.has(k)) out[k] = h.get(k);
  }
  return out as Fields;
}

/** A message's subject, through `reader` when the client keeps its bytes. */
function subjectOfMsg(msg: Msg | JsMsg, reader: SubjectReader): string {
  const impl = ((msg as { msg?: unknown }).msg ?? msg) as { _msg?: { subject?: unknown } };
  const raw = impl._msg?.subject;
  return raw instanceof Uint8Array ? reader.read(raw) : msg.subject;
}

/**
 * The envelope of a message. `subject` is asked for only when the topic is not in the
 * headers (the client decodes it on first use).
 */
function fromMsg(
  data: Uint8Array,
  subject: () => string,
  h: Fields | undefined,
  base: string,
  fallbackId: string,
): Envelope {
  const topicHeader = h?.[HEADER.topic];
  let topic = "";
  if (topicHeader) {
    try {
      topic = decodeURIComponent(topicHeader);
    } catch {
      topic = "";
    }
  } else {
    const s = subject();
    if (s.startsWith(base + ".")) {
      const rest = s.slice(base.length + 1);
      topic = rest === "_" ? "" : rest.split(".").join("/");
    }
  }
  const t = parseTime(h?.[HEADER.time] ?? "");
  const env: Envelope = {
    data,
    id: h?.[HEADER.id] || fallbackId,
    topic,
    time: Number.isFinite(t) ? new Date(t) : new Date(),
    origin: h?.[HEADER.origin] ?? "",
    host: h?.[HEADER.host] ?? "",
  };
  if (h?.[HEADER.pin]) env.pinState = true;
  return env;
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
  if (e.kind === "nats") {
    return {
      write(m, delivered) {
        const subject = subjectOf(e.subject, ctx.wide, m.topic);
        const { headers, size } = headerBlock(m);
        checkPayload(nc, subject, m.data.length + size);
        nc.publish(subject, m.data, { headers });
        delivered();
      },
      flush: () => nc.flush(),
      pending: () => 0,
      close: () => nc.isClosed() ? Promise.resolve() : nc.flush(),
      pinStates: ctx.wide,
    };
  }
  await ensureStream(await nc.jetstreamManager(), e.stream, filterOf(e.subject, ctx.wide));
  return await jetstreamSink(nc, e.stream, ctx, (m) => subjectOf(e.subject, ctx.wide, m.topic));
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
  const reader = new HeaderReader();
  const subjects = new SubjectReader();
  if (e.kind === "nats") {
    // A callback subscription handing each message straight to the pump's pending `next()`
    // when it waits (else into one queue): no iterator of the client's in between.
    const queue: Envelope[] = [];
    let head = 0;
    let ended = false;
    let waiter: ((r: IteratorResult<Envelope>) => void) | undefined;
    let last: Envelope | undefined;
    let n = 0;
    const sub = nc.subscribe(filter, {
      callback: (_err, msg) => {
        if (!msg) return;
        const h = fieldsOf(msg, reader);
        const env = fromMsg(
          msg.data,
          () => subjectOfMsg(msg, subjects),
          h,
          e.subject,
          `nats-${n++}`,
        );
        if (env.origin === ctx.origin) return;
        // The one before has another behind it (the sink reads this when it writes it).
        if (last) last.more = true;
        last = env;
        const w = waiter;
        if (w) {
          waiter = undefined;
          w({ done: false, value: env });
        } else {
          queue.push(env);
        }
      },
    });
    // The subscription ends with the connection (or an unsubscribe): so does the source.
    const end = () => {
      ended = true;
      const w = waiter;
      waiter = undefined;
      w?.({ done: true, value: undefined });
    };
    sub.closed.then(end, end);
    const next = (): Promise<IteratorResult<Envelope>> => {
      if (head >= queue.length) {
        if (ended) return Promise.resolve({ done: true, value: undefined });
        return new Promise((r) => (waiter = r));
      }
      const value = queue[head]!;
      queue[head++] = undefined as unknown as Envelope;
      if (head === queue.length) {
        queue.length = 0;
        head = 0;
      } else if (head >= 1024) {
        queue.splice(0, head);
        head = 0;
      }
      return Promise.resolve({ done: false, value });
    };
    return {
      [Symbol.asyncIterator]: () => ({ next }),
      lag: () => queue.length - head,
      close: () => {
        sub.unsubscribe();
        end();
        return Promise.resolve();
      },
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
            const h = fieldsOf(m, reader);
            const env = fromMsg(
              m.data,
              () => subjectOfMsg(m, subjects),
              h,
              e.subject,
              `${e.stream}-${seq}`,
            );
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
