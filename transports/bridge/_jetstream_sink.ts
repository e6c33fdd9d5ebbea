/**
 * A JetStream stream as a bridge sink: publishes pipelined (a bounded window of messages
 * waiting for the stream's ack), each with a message id (`Nats-Msg-Id`) so that a resend is
 * stored once, and keeps the publisher's order across a stream leader's failure.
 *
 * Order: the stream stores what reaches its leader in the order it arrives. When a message is
 * lost on its way (the leader died with it), any message sent after it that reaches the next
 * leader is stored before the lost one's resend. So the sink never lets one through while an
 * earlier one may be lost:
 * - at the first failed publish (no leader: "no responders", an error, a timeout) or a lost
 *   connection, it stops sending, waits until no publish is in flight (so that none sent
 *   before can land after a resend), then resends the unacknowledged ones in order (the
 *   stream drops copies it already holds), and sends new ones only once those are stored;
 * - while the oldest message has waited for its ack longer than {@linkcode STALL_MS} (far
 *   above a normal ack, far below the time a cluster takes to elect a new leader), it sends
 *   nothing new: a lost message is noticed before a later one can reach a new leader.
 * Acks come in the order messages were stored; one that shows a message stored before an
 * earlier one (which these rules make unlikely, not impossible) is reported as a notice.
 *
 * @module
 */

import { checkPayload, loadNats, type Msg, type MsgHdrs, type NatsConnection } from "../_nats.ts";
import { FsbusError } from "../../types.ts";
import { type Context, type Envelope, HEADER, type Sink } from "./_envelope.ts";

/** Messages sent and not yet acknowledged, at most. */
const WINDOW = 512;
/** An ack slower than this stops new sends until it comes (see the module's comment). */
export const STALL_MS = 500;
/** An ack not come after this long counts as a failed publish (it is sent again). */
const ACK_TIMEOUT_MS = 10_000;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A header value on one line. */
function clean(v: string): string {
  return /[\r\n]/.test(v) ? v.replace(/[\r\n]/g, " ") : v;
}

const SLAB = 64 * 1024;
let slab = new Uint8Array(0);
let slabAt = 0;

/** The second `isoTime` made last: its first ms, and its ISO text up to the dot. */
let isoSecond = { from: 0, text: "" };

/** `time.toISOString()`, the text down to the second made once per second. */
function isoTime(time: Date): string {
  const ms = time.getTime();
  const inSecond = ms - isoSecond.from;
  if (!(inSecond >= 0 && inSecond < 1000)) {
    const text = time.toISOString();
    // Years 0000-9999 only (the others' form is longer): made in full each time.
    if (text.length !== 24) return text;
    isoSecond = { from: ms - Number(text.slice(20, 23)), text: text.slice(0, 20) };
    return text;
  }
  return `${isoSecond.text}${inSecond < 10 ? "00" : inSecond < 100 ? "0" : ""}${inSecond}Z`;
}

/** The lines of a header block that stay the same from message to message, encoded. */
let fixed: { origin: string; host: string; topic: string; pin: boolean; bytes: Uint8Array } = {
  origin: "",
  host: "",
  topic: "",
  pin: false,
  bytes: new Uint8Array(0),
};

/**
 * The NATS header block of a message (what `MsgHdrs.encode()` would make, without building
 * the object): the fsbus metadata, and the message id when given. The lines that rarely
 * change (origin, host, topic, pin state) are encoded once and kept while they stay the same;
 * only the id, the time and the message id are encoded for each message.
 *
 * @param e The message.
 * @param msgId Its JetStream message id, if any.
 * @returns Headers the client sends as they are, and their size in bytes.
 */
export function headerBlock(e: Envelope, msgId?: string): { headers: MsgHdrs; size: number } {
  const pin = e.pinState === true;
  if (
    fixed.origin !== e.origin || fixed.host !== e.host || fixed.topic !== e.topic ||
    fixed.pin !== pin
  ) {
    let s = `NATS/1.0\r\n${HEADER.origin}: ${clean(e.origin)}\r\n` +
      `${HEADER.topic}: ${encodeURIComponent(e.topic)}\r\n${HEADER.host}: ${clean(e.host)}\r\n`;
    if (pin) s += `${HEADER.pin}: 1\r\n`;
    fixed = { origin: e.origin, host: e.host, topic: e.topic, pin, bytes: enc.encode(s) };
  }
  let v = `${HEADER.id}: ${clean(e.id)}\r\n${HEADER.time}: ${isoTime(e.time)}\r\n`;
  if (msgId !== undefined) v += `Nats-Msg-Id: ${clean(msgId)}\r\n`;
  v += "\r\n";
  const head = fixed.bytes;
  // At most 3 bytes of UTF-8 per UTF-16 unit. Blocks are cut from a slab, never reused (the
  // client may hold a block until it writes): a new typed array per message costs more.
  const room = head.length + v.length * 3;
  if (slabAt + room > slab.length) {
    slab = new Uint8Array(Math.max(SLAB, room));
    slabAt = 0;
  }
  const bytes = slab.subarray(slabAt);
  bytes.set(head);
  const n = head.length + enc.encodeInto(v, bytes.subarray(head.length)).written;
  const out = slab.subarray(slabAt, slabAt + n);
  slabAt += n;
  // The client only asks headers to encode themselves when it publishes.
  return { headers: { encode: () => out } as unknown as MsgHdrs, size: n };
}

const UNSENT = 0;
const IN_FLIGHT = 1;
const ACKED = 2;
const FAILED = 3;

interface Pub {
  m: Envelope;
  subject: string;
  headers: MsgHdrs;
  size: number;
  delivered: () => void;
  state: number;
  token: number;
  sentAt: number;
  seq: number;
}

/**
 * Opens the pipelined JetStream sink.
 *
 * @param nc The connection.
 * @param stream The stream's name (it exists and captures the subjects).
 * @param ctx The bridge's shared context.
 * @param subjectOf The subject of a message.
 * @returns The sink.
 */
export async function jetstreamSink(
  nc: NatsConnection,
  stream: string,
  ctx: Context,
  subjectOf: (m: Envelope) => string,
): Promise<Sink> {
  const { createInbox } = await loadNats();
  const inbox = createInbox();
  const queue: Pub[] = [];
  const byToken = new Map<number, Pub>();
  let tokens = 0;
  /** Entries at the front of `queue` that were sent (every later one is unsent). */
  let sentCount = 0;
  let inFlight = 0;
  let recovering = false;
  let attempts = 0;
  let lastAckAt = 0;
  let backoff: ReturnType<typeof setTimeout> | undefined;
  let lastSeq = 0;
  let failure: Error | undefined;
  let room: (() => void) | undefined;
  /** Waiters for an empty queue (flush). */
  let idle: (() => void)[] = [];
  let ticker: ReturnType<typeof setInterval> | undefined;

  const send = (p: Pub) => {
    p.token = ++tokens;
    byToken.set(p.token, p);
    p.state = IN_FLIGHT;
    p.sentAt = performance.now();
    inFlight++;
    nc.publish(p.subject, p.m.data, { reply: `${inbox}.${p.token}`, headers: p.headers });
    ticker ??= setInterval(tick, 100);
  };

  const settled = (p: Pub, state: number) => {
    byToken.delete(p.token);
    p.state = state;
    inFlight--;
  };

  const wakeIdle = () => {
    const waiting = idle;
    idle = [];
    for (const w of waiting) w();
  };

  /** Delivers the acknowledged messages at the front, in order. */
  const deliverFront = () => {
    while (queue.length > 0 && queue[0]!.state === ACKED) {
      const p = queue.shift()!;
      sentCount--;
      if (p.seq < lastSeq) {
        ctx.onNotice(
          `JetStream stream "${stream}" stored a message out of order (sequence ${p.seq} after ${lastSeq})`,
        );
      }
      lastSeq = Math.max(lastSeq, p.seq);
      p.delivered();
    }
    if (queue.length < WINDOW) room?.();
    if (queue.length === 0) {
      clearInterval(ticker);
      ticker = undefined;
      wakeIdle();
    }
  };

  /** Sends what may go now: nothing while recovering, nor while acks are late and none comes. */
  const sendMore = () => {
    if (recovering || failure) return;
    const now = performance.now();
    if (inFlight > 0 && now - queue[0]!.sentAt > STALL_MS && now - lastAckAt > STALL_MS) return;
    while (sentCount < queue.length && inFlight < WINDOW) send(queue[sentCount++]!);
  };

  /**
   * Once nothing is in flight: sends the failed messages again, in order (pipelined, as the
   * first time), or, when none is left, goes back to sending new ones.
   */
  const recover = () => {
    if (!recovering || inFlight > 0 || backoff !== undefined || failure) return;
    const failed = queue.slice(0, sentCount).filter((q) => q.state === FAILED);
    if (failed.length === 0) {
      recovering = false;
      attempts = 0;
      sendMore();
      return;
    }
    attempts++;
    for (const p of failed) send(p);
  };

  /** Recovers when nothing is in flight; after a round that failed again, a little later. */
  const recoverWhenSettled = () => {
    if (inFlight > 0 || backoff !== undefined) return;
    const again = attempts > 0 && queue.some((q) => q.state === FAILED);
    if (!again) return recover();
    backoff = setTimeout(() => {
      backoff = undefined;
      recover();
    }, Math.min(100 * 2 ** (attempts - 1), 2000));
  };

  const fail = (p: Pub) => {
    settled(p, FAILED);
    recovering = true;
    recoverWhenSettled();
  };

  const tick = () => {
    const now = performance.now();
    for (const p of [...byToken.values()]) {
      if (now - p.sentAt > ACK_TIMEOUT_MS) fail(p);
    }
    sendMore();
  };

  const sub = nc.subscribe(`${inbox}.*`, {
    callback: (_err, msg: Msg) => {
      const p = byToken.get(Number(msg.subject.slice(inbox.length + 1)));
      if (p === undefined) return; // given up on (timed out, or sent again since)
      let seq = 0;
      if (msg.data.length > 0 && !msg.headers?.hasError) {
        try {
          const ack = JSON.parse(dec.decode(msg.data)) as { seq?: unknown; error?: unknown };
          if (ack.error === undefined && typeof ack.seq === "number") seq = ack.seq;
        } catch {
          // not an ack
        }
      }
      if (seq === 0) {
        fail(p);
        return;
      }
      settled(p, ACKED);
      p.seq = seq;
      lastAckAt = performance.now();
      deliverFront();
      if (recovering) recoverWhenSettled();
      else sendMore();
    },
  });

  // A lost connection may have lost what was in flight: stop sending until it is back, then
  // count those as failed (their acks, if they come, are ignored; resends are dropped copies).
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect") recovering = true;
      else if (s.type === "reconnect") {
        recovering = true;
        for (const p of [...byToken.values()]) settled(p, FAILED);
        recoverWhenSettled();
      }
    }
  })().catch(() => {});
  nc.closed().then(() => {
    failure ??= new FsbusError("closed", `Cannot publish to JetStream stream "${stream}": closed`);
    room?.();
    wakeIdle();
  });

  const flush = async () => {
    while (queue.length > 0 && !failure) {
      await new Promise<void>((r) => idle.push(r));
    }
    if (failure && queue.length > 0) throw failure;
  };

  return {
    async write(m, delivered) {
      if (failure) throw failure;
      const subject = subjectOf(m);
      const { headers, size: hsize } = headerBlock(m, `${m.origin}:${m.id}`);
      const size = m.data.length + hsize;
      checkPayload(nc, subject, size);
      queue.push({
        m,
        subject,
        headers,
        size,
        delivered,
        state: UNSENT,
        token: 0,
        sentAt: 0,
        seq: 0,
      });
      sendMore();
      while (queue.length >= WINDOW && !failure) {
        await new Promise<void>((r) => (room = r));
      }
      room = undefined;
    },
    flush,
    pending: () => queue.length,
    pinStates: ctx.wide,
    async close() {
      if (!nc.isClosed()) await flush().catch(() => {});
      clearInterval(ticker);
      clearTimeout(backoff);
      sub.unsubscribe();
    },
  };
}
