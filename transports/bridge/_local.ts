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
import type { Context, Envelope, Sink, Source } from "./_envelope.ts";
import type { Endpoint } from "./endpoint.ts";

type Local = Extract<Endpoint, { kind: "dir" | "mq" | "fanout" | "filebus" }>;

/** How far back a restarted directory-bus source looks (ids already sent are skipped). */
const RESUME_SLACK_MS = 60_000;

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
    signal: ctx.signal,
  });
  let high = last ?? 0;
  return source(async function* () {
    for await (const m of sub) {
      if (ctx.seen.has(m.id)) continue;
      high = Math.max(high, m.time.getTime());
      yield {
        data: m.data,
        id: m.id,
        topic: e.topic === undefined ? m.topic : "",
        time: m.time,
        origin: ctx.identity,
        host: ctx.host,
        position: String(high),
        seenId: m.id,
      };
    }
  }, () => sub.close());
}

function mqSource(e: Extract<Endpoint, { kind: "mq" }>, ctx: Context): Source {
  checkDir(e.group, "mq group");
  const g = mq.openGroup(e.group);
  const resume = ctx.position === undefined ? undefined : Number(ctx.position);
  let replay: mq.ReplayMode = resume !== undefined || ctx.history ? "all" : "off";
  let floor = resume ?? -1;
  let readers: mq.MqReader[] = [];
  let closed = false;
  const sentThisRun = new Set<number>();
  return source(async function* () {
    while (!closed && !ctx.signal.aborted) {
      const names = e.stream === undefined
        ? g.streamNames().filter((n) => n !== "order" && n !== "ctl")
        : [e.stream];
      // A whole group: a stream made later restarts the reader (the order stream says so).
      const restart = new AbortController();
      const stop = AbortSignal.any([ctx.signal, restart.signal]);
      let newStreamAt = -1;
      if (e.stream === undefined) {
        const order = mq.read(g, ["order"], { replay: "off", signal: stop });
        readers.push(order);
        (async () => {
          for await (const m of order) {
            const name = new TextDecoder().decode(m.data).replace(/\0$/, "");
            if (!names.includes(name)) {
              newStreamAt = m.seq;
              restart.abort();
              return;
            }
          }
        })().catch(() => {});
      }
      if (names.length === 0) {
        await new Promise<void>((r) => stop.addEventListener("abort", () => r(), { once: true }));
      } else {
        const reader = mq.read(g, names, { replay, data: "message", signal: stop });
        readers.push(reader);
        for await (const m of reader) {
          if (m.seq <= floor || sentThisRun.has(m.seq)) continue;
          if (ctx.seen.has(`mq:${m.seq}`)) continue;
          sentThisRun.add(m.seq);
          yield {
            data: m.data,
            id: String(m.seq),
            topic: e.stream === undefined ? m.stream : "",
            time: m.time ?? new Date(),
            origin: ctx.identity,
            host: ctx.host,
            position: String(m.seq),
          };
        }
        if (!restart.signal.aborted) {
          restart.abort();
          return; // every stream reached EOF
        }
      }
      for (const r of readers) await r.close();
      readers = [];
      if (newStreamAt >= 0) floor = Math.max(floor, newStreamAt - 1);
      replay = "all";
    }
  }, async () => {
    closed = true;
    for (const r of readers) await r.close();
    g.close();
  });
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
        origin: ctx.identity,
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
        origin: ctx.identity,
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
  let write: (m: Envelope) => Promise<void> | void;
  let close: () => Promise<void> | void = () => {};
  switch (e.kind) {
    case "dir": {
      checkDir(e.path, "directory bus");
      const pub = new msgfs.Publisher(e.path, { atomic: true });
      write = (m) => {
        const topic = e.topic ?? m.topic;
        const p = pub.publish(m.data, topic === "" ? {} : { topic });
        ctx.seen.add(p.id);
      };
      break;
    }
    case "mq": {
      checkDir(e.group, "mq group");
      const g = mq.openGroup(e.group);
      write = (m) => {
        const stream = e.stream ?? (m.topic === "" ? "_" : m.topic);
        const r = g.write(stream, m.data, {});
        ctx.seen.add(`mq:${r.seq}`);
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
    async write(m, delivered) {
      await write(m);
      delivered();
    },
    flush: () => Promise.resolve(),
    pending: () => 0,
    async close() {
      await close();
    },
  };
}
