/**
 * Local buses as bridge sources and sinks, through the base transports' public modules:
 * directory bus, mq group or stream, fanout topic, filebus file.
 *
 * @module
 */

import * as msgfs from "../msgfs/mod.ts";
import * as mq from "../mq/mod.ts";
import * as fanout from "../fanout/mod.ts";
import * as filebus from "../filebus/mod.ts";
import { FsbusError } from "../../types.ts";
import { type Context, type Envelope, equal, type Sink, type Source } from "./_envelope.ts";
import type { Endpoint } from "./endpoint.ts";
import { PinWatch, writeMirror } from "./_pin.ts";

type Local = Extract<Endpoint, { kind: "dir" | "mq" | "fanout" | "filebus" }>;

/** How far back a restarted directory-bus source looks (ids already sent are skipped). */
const RESUME_SLACK_MS = 60_000;

/**
 * How the ids of the messages a directory-bus sink writes end: a new id's last four (random)
 * hex digits replaced. A directory-bus source looks an id up in the shared list of written
 * ids (taking its lock, to wait for a bridge that is writing) only when it ends so; an id that
 * does not was not written by a bridge of this version: its own memory of the list is
 * enough (ids recorded before it caught up last, ids of an earlier version taken over). So a
 * message published on the bus (all but 1 in 65,536 of them) costs no lock, and whether an
 * id is looked up does not depend on when it was recorded (a bridge killed between writing a
 * message and recording it changes nothing here).
 */
const WRITTEN_MARK = "b71d";

/** A new message id with the mark of a message written by a bridge. */
function writtenId(): string {
  return msgfs.newId().slice(0, 32) + WRITTEN_MARK;
}

function checkDir(path: string, what: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch {
    throw new FsbusError("not_found", `Cannot bridge ${what} "${path}": no such bus`);
  }
  if (!st.isDirectory) {
    throw new FsbusError("not_a_directory", `Cannot bridge ${what} "${path}": not a directory`);
  }
}

function source(
  iterate: () => AsyncGenerator<Envelope>,
  close: () => Promise<void>,
): Source {
  return {
    [Symbol.asyncIterator]: iterate,
    lag: () => 0,
    close,
  };
}

/**
 * Opens a local bus as a source.
 *
 * @param e The endpoint.
 * @param ctx The bridge's shared context.
 * @returns The source.
 */
export function localSource(e: Local, ctx: Context): Source {
  switch (e.kind) {
    case "dir":
      return dirSource(e, ctx);
    case "mq":
      return mqSource(e, ctx);
    case "fanout":
      return fanoutSource(e, ctx);
    case "filebus":
      return filebusSource(e, ctx);
  }
}

function dirSource(e: Extract<Endpoint, { kind: "dir" }>, ctx: Context): Source {
  checkDir(e.path, "directory bus");
  const last = ctx.position === undefined ? undefined : Number(ctx.position);
  const since = last !== undefined && Number.isFinite(last)
    ? new Date(last - RESUME_SLACK_MS)
    : ctx.history
    ? "all" as const
    : undefined;
  const sub = msgfs.subscribe(e.path, {
    ...(e.topic === undefined ? { recursive: true } : { topic: e.topic }),
    ...(since === undefined ? {} : { since }),
    ...(ctx.blockMs > 0 ? { blockMs: ctx.blockMs } : {}),
    signal: ctx.signal,
  });
  let high = last ?? 0;
  // A plain iterator over the subscription's (not an async generator around a `for await`):
  // a message reaches the pump a few turns of the microtask queue sooner.
  const it = sub[Symbol.asyncIterator]();
  const done = { done: true, value: undefined } as const;
  const next = async (): Promise<IteratorResult<Envelope>> => {
    for (;;) {
      const r = await it.next();
      if (r.done) return done;
      const m = r.value;
      if (ctx.sent.has(m.id)) continue;
      // Written by a bridge: never back where it came from; elsewhere with its origin.
      const w = m.id.endsWith(WRITTEN_MARK)
        ? await ctx.written.lookup(m.id)
        : ctx.written.recorded(m.id);
      if (w === null || w?.from === ctx.peer) continue;
      high = Math.max(high, m.time.getTime());
      return {
        done: false,
        value: {
          data: m.data,
          id: w ? w.id : m.id,
          topic: e.topic === undefined ? m.topic : "",
          time: m.time,
          origin: w ? w.origin : ctx.origin,
          host: w ? w.host : ctx.host,
          position: String(high),
          seenId: m.id,
        },
      };
    }
  };
  const iterator: AsyncIterator<Envelope> = {
    next,
    // The pump stopped early (a failed write): the subscription ends too.
    async return() {
      await it.return?.();
      return done;
    },
  };
  return {
    [Symbol.asyncIterator]: () => iterator,
    lag: () => 0,
    close: () => sub.close(),
  };
}

function mqSource(e: Extract<Endpoint, { kind: "mq" }>, ctx: Context): Source {
  checkDir(e.group, "mq group");
  const g = mq.openGroup(e.group);
  const resume = ctx.position === undefined ? undefined : Number(ctx.position);
  const floor = resume ?? -1;
  // The order stream drives: one entry per write, zero-length ones (EOF) included, in the
  // group's order. Each entry's data comes from a reader of its stream (reopened after EOF).
  const order = mq.read(g, ["order"], {
    replay: resume !== undefined || ctx.history ? "all" : "off",
    signal: ctx.signal,
  });
  const streams = new Map<string, { reader: mq.MqReader; buf: mq.MqMessage[] }>();
  const dec = new TextDecoder();
  // A whole group that is a pin session also carries its state (see _pin.ts).
  const pin = e.stream === undefined ? PinWatch.open(e.group, g) : undefined;
  const pinEnvelope = (): Envelope | undefined => {
    const c = pin?.changed();
    return c && {
      data: c.data,
      id: c.id,
      topic: "",
      time: new Date(),
      origin: ctx.origin,
      host: ctx.host,
      pinState: true,
    };
  };
  return source(async function* () {
    const it = order[Symbol.asyncIterator]();
    let next = it.next();
    let checked = 0;
    for (;;) {
      if (pin && Date.now() - checked >= 250) {
        const state = pinEnvelope();
        if (state) yield state;
        checked = Date.now();
      }
      // While the group is quiet, look at the state twice a second.
      const got = pin ? await within(next, 500) : await next;
      if (got === undefined) continue;
      if (got.done) break;
      next = it.next();
      const entry = got.value;
      const seq = entry.seq;
      const name = dec.decode(entry.data).replace(/\0$/, "");
      if (e.stream !== undefined && name !== e.stream) continue;
      if (seq <= floor) continue;
      let st = streams.get(name);
      if (!st) {
        st = { reader: mq.read(g, [name], { replay: "all", data: "message" }), buf: [] };
        streams.set(name, st);
      }
      st.buf.push(...st.reader.poll());
      while (st.buf.length > 0 && st.buf[0]!.seq < seq) st.buf.shift();
      let data: Uint8Array;
      if (st.buf[0]?.seq === seq) {
        data = st.buf.shift()!.data;
      } else {
        data = new Uint8Array(0); // EOF: the stream's reader stops here; reopen next time
        await st.reader.close();
        streams.delete(name);
      }
      const w = await ctx.written.lookup(`mq:${seq}`);
      if (w === null || w?.from === ctx.peer) continue;
      // A session records how it ended before its EOFs: the state goes first.
      if (pin && data.length === 0) {
        const s2 = pinEnvelope();
        if (s2) yield s2;
        checked = Date.now();
      }
      yield {
        data,
        id: w ? w.id : String(seq),
        topic: e.stream === undefined ? name : "",
        time: entry.time ?? new Date(),
        origin: w ? w.origin : ctx.origin,
        host: w ? w.host : ctx.host,
        position: String(seq),
      };
    }
  }, async () => {
    await order.close();
    for (const st of streams.values()) await st.reader.close();
    g.close();
  });
}

/** `p`'s result, or undefined when it takes longer than `ms` (`p` runs on). */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function fanoutSource(e: Extract<Endpoint, { kind: "fanout" }>, ctx: Context): Source {
  const sub = fanout.subscribe(e.topic, {
    ...(e.root === undefined ? {} : { root: e.root }),
    signal: ctx.signal,
  });
  const start = Date.now().toString(36);
  let n = 0;
  return source(async function* () {
    for await (const m of sub) {
      if (ctx.echo.consume(m.data)) continue;
      yield {
        data: m.data,
        id: `${start}-${n++}`,
        topic: "",
        time: new Date(),
        origin: ctx.origin,
        host: ctx.host,
      };
    }
  }, () => sub.close());
}

function filebusSource(e: Extract<Endpoint, { kind: "filebus" }>, ctx: Context): Source {
  const dir = e.path.includes("/") ? e.path.slice(0, e.path.lastIndexOf("/")) || "/" : ".";
  checkDir(dir, "filebus file in");
  const c = filebus.consumer(e.path, { lossless: ctx.lossless, signal: ctx.signal });
  const start = Date.now().toString(36);
  let n = 0;
  return source(async function* () {
    for await (const chunk of c) {
      if (ctx.echo.consume(chunk)) continue;
      yield {
        data: chunk,
        id: `${start}-${n++}`,
        topic: "",
        time: new Date(),
        origin: ctx.origin,
        host: ctx.host,
      };
    }
  }, () => c.close());
}

/**
 * Opens a local bus as a sink.
 *
 * @param e The endpoint.
 * @param ctx The bridge's shared context.
 * @returns The sink.
 */
export function localSink(e: Local, ctx: Context): Sink {
  const from = (m: Envelope) => ({ from: ctx.peer, origin: m.origin, id: m.id, host: m.host });
  let write: (m: Envelope) => Promise<void> | void;
  let close: () => Promise<void> | void = () => {};
  let has: ((m: Envelope, since: number) => boolean | Promise<boolean>) | undefined;
  switch (e.kind) {
    case "dir": {
      checkDir(e.path, "directory bus");
      // A spare file kept ready: a message is a write, a close and a rename (see Publisher).
      const pub = new msgfs.Publisher(e.path, { atomic: true, spare: true });
      // Under the shared list's lock: no bridge reads the message before its id is there.
      // The id is recorded after the message appears: a bridge killed in between writes the
      // message again when it is delivered again, unless `has` finds it (a restart), where
      // recording it first would lose the message for good.
      write = (m) =>
        ctx.written.guard(() => {
          // Already in the bus (it came by another way): once is enough.
          if (ctx.written.hasOrigin(m.origin, m.id)) return;
          const topic = e.topic ?? m.topic;
          const id = writtenId();
          const p = pub.publish(m.data, topic === "" ? { id } : { topic, id });
          ctx.written.add(p.id, from(m));
        }, m.more);
      has = (m, since) => {
        const topic = e.topic ?? m.topic;
        const dir = topic === "" ? e.path : `${e.path}/${topic}`;
        try {
          for (const entry of Deno.readDirSync(dir)) {
            const t = entry.isFile ? msgfs.idTime(entry.name) : undefined;
            if (t === undefined || t < since - 1) continue;
            if (equal(Deno.readFileSync(`${dir}/${entry.name}`), m.data)) return true;
          }
        } catch {
          return false;
        }
        return false;
      };
      close = () => pub.close();
      break;
    }
    case "mq": {
      checkDir(e.group, "mq group");
      const g = mq.openGroup(e.group);
      write = (m) => {
        if (m.pinState) return writeMirror(e.group, g, m.data, m.host);
        const stream = e.stream ?? (m.topic === "" ? "_" : m.topic);
        return ctx.written.guard(() => {
          if (ctx.written.hasOrigin(m.origin, m.id)) return;
          const r = g.write(stream, m.data, {});
          ctx.written.add(`mq:${r.seq}`, from(m));
        }, m.more);
      };
      has = async (m) => {
        const stream = e.stream ?? (m.topic === "" ? "_" : m.topic);
        if (g.stream(stream) === undefined) return false;
        const r = mq.read(g, [stream], { replay: "last" });
        try {
          const last = r.poll().at(-1);
          return last !== undefined && equal(last.data, m.data);
        } finally {
          await r.close();
        }
      };
      close = () => g.close();
      break;
    }
    case "fanout": {
      const w = fanout.openWriter(e.topic, e.root === undefined ? {} : { root: e.root });
      write = (m) => {
        ctx.echo.expect(m.data);
        w.write(m.data);
      };
      close = () => w.close();
      break;
    }
    case "filebus": {
      const p = filebus.producer(e.path, { lossless: ctx.lossless });
      write = async (m) => {
        ctx.echo.expect(m.data);
        await p.write(m.data);
      };
      close = () => p.abort();
      break;
    }
  }
  return {
    write(m, delivered) {
      const r = write(m);
      // A lock kept for this message, which was written without it (a pin session's state):
      // let go (a no-op when nothing is kept, or when the write took and gave up the lock).
      if (!m.more) ctx.written.release();
      // Written at once (the common case): no promise made for it (the pump awaits anyway).
      if (!(r instanceof Promise)) return void delivered();
      return r.then(delivered);
    },
    flush: () => Promise.resolve(),
    pending: () => 0,
    ...(has ? { has } : {}),
    idle: () => ctx.written.release(),
    pinStates: e.kind === "mq" && e.stream === undefined,
    async close() {
      await close();
    },
  };
}
