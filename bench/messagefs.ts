/**
 * Benchmarks for messagefs (see ../shared/BENCHMARKS.md), 1 KiB, separate processes, each
 * beside its reference in the same run:
 *
 * - local direct messages (registry + msgfs inbox) against the msgfs directory bus itself
 *   (publisher → subscriber): latency at 1k msgs/s and unpaced throughput;
 * - direct messages over one NATS server against NATS core publish → subscribe on the same
 *   server: latency at 1k msgs/s and unpaced throughput;
 * - `.all` of a group with 8 member processes (local and NATS), latency at 200 broadcasts/s,
 *   every member counted.
 *
 * Every receiver checks delivered = expected, duplicates and per-sender order. The first
 * 1,000 messages of a latency point are not counted.
 *
 * Run: `deno run -A bench/messagefs.ts [--quick] [--only messagefs,msgfs,messagefs-nats,nats,messagefs-all,messagefs-nats-all]`. Prints a table; writes
 * bench/results/messagefs.json.
 *
 * @module
 */

import { connect } from "nats";
import { join } from "../transports/messagefs/mod.ts";
import * as msgfs from "../transports/msgfs/mod.ts";
import {
  checkBenchFlags,
  checkSequence,
  cpuTimeMs,
  loadAverage,
  median,
  monotonicNs,
  paced,
  percentiles,
  readStamp,
  type Result,
  roleArgs,
  row,
  spawnRole,
  stamp,
} from "./_lib.ts";

const SELF = new URL(import.meta.url).pathname;
const WARMUP = 1000;

type Kind = "messagefs" | "msgfs" | "nats-core";

// ---- roles (separate processes) -----------------------------------------------------------

/** Receives `count` messages, then reports latencies, order, duplicates and its rate. */
async function recvRole(a: Record<string, string>): Promise<void> {
  const count = Number(a.count);
  const lat: number[] = [];
  const seqs: number[] = [];
  let first = 0n;
  let last = 0n;
  const onData = (data: Uint8Array) => {
    const now = monotonicNs();
    if (seqs.length === 0) first = now;
    last = now;
    const { sentNs, seq } = readStamp(data);
    if (seqs.length >= WARMUP) lat.push(Number(now - sentNs) / 1000);
    seqs.push(seq);
  };
  const kind = a.kind as Kind;
  let finish: () => void = () => {};
  const finished = new Promise<void>((r) => (finish = r));
  const deadline = setTimeout(() => finish(), 120_000);
  if (kind === "messagefs") {
    const node = await join({
      name: a.name!,
      groups: a.group ? [a.group] : [],
      ...(a.nats ? { nats: a.nats } : { root: a.root! }),
    });
    console.log("ready");
    const sub = node.messages();
    finished.then(() => sub.close());
    for await (const m of sub) {
      onData(m.data);
      if (seqs.length >= count) break;
    }
    await node.leave();
  } else if (kind === "msgfs") {
    const sub = msgfs.subscribe(a.dir!);
    const it = sub[Symbol.asyncIterator]();
    let next = it.next(); // starts watching
    await new Promise((r) => setTimeout(r, 200));
    console.log("ready");
    for (;;) {
      const r = await Promise.race([next, finished.then(() => ({ done: true as const }))]);
      if (r.done) break;
      onData(r.value.data);
      if (seqs.length >= count) break;
      next = it.next();
    }
    await sub.close();
  } else {
    const nc = await connect({ servers: a.nats! });
    nc.subscribe("bench", {
      callback: (_e, m) => {
        onData(m.data);
        if (seqs.length >= count) finish();
      },
    });
    await nc.flush();
    console.log("ready");
    await finished;
    await nc.close();
  }
  clearTimeout(deadline);
  const check = checkSequence(seqs);
  console.log(JSON.stringify({
    delivered: seqs.length,
    duplicates: check.duplicates,
    order: check.order,
    samples: lat,
    rate: seqs.length > 1 ? (seqs.length - 1) / (Number(last - first) / 1e9) : 0,
    cpuMs: cpuTimeMs(),
  }));
}

/** Sends `count` stamped messages, paced or not, to one node, a group, a bus or a subject. */
async function sendRole(a: Record<string, string>): Promise<void> {
  const count = Number(a.count);
  const rate = Number(a.rate);
  const payload = new Uint8Array(Number(a.size));
  const kind = a.kind as Kind;
  let t0 = 0;
  let elapsed = 0;
  if (kind === "messagefs") {
    const node = await join({
      name: "bench-sender",
      ...(a.nats ? { nats: a.nats } : { root: a.root! }),
    });
    const want = Number(a.peers);
    while (node.peers().length < want) await new Promise((r) => setTimeout(r, 20));
    t0 = performance.now();
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      if (a.group !== undefined) void node.broadcast(a.group, payload);
      else void node.send(a.to!, payload);
    });
    elapsed = performance.now() - t0;
    await node.flush(60_000);
    await node.leave();
  } else if (kind === "msgfs") {
    const pub = new msgfs.Publisher(a.dir!, { sweep: false });
    t0 = performance.now();
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      pub.publish(payload);
    });
    elapsed = performance.now() - t0;
  } else {
    const nc = await connect({ servers: a.nats! });
    t0 = performance.now();
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      nc.publish("bench", payload.slice());
    });
    elapsed = performance.now() - t0;
    await nc.flush();
    await nc.close();
  }
  console.log(JSON.stringify({ rate: count / (elapsed / 1000), cpuMs: cpuTimeMs() }));
}

// ---- the orchestrator ---------------------------------------------------------------------

interface LineReader {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  buf: string;
}

async function nextLine(r: LineReader): Promise<string> {
  const dec = new TextDecoder();
  for (;;) {
    const nl = r.buf.indexOf("\n");
    if (nl >= 0) {
      const line = r.buf.slice(0, nl);
      r.buf = r.buf.slice(nl + 1);
      return line;
    }
    const { value, done } = await r.reader.read();
    if (done) {
      const rest = r.buf;
      r.buf = "";
      return rest;
    }
    r.buf += dec.decode(value);
  }
}

interface Point {
  transport: string;
  kind: Kind;
  scenario: "latency" | "throughput";
  rate: number;
  count: number;
  members: number;
  nats?: string;
}

async function runPoint(p: Point, size: number): Promise<Result> {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-mfs-" });
  try {
    const common: Record<string, string | number> = { kind: p.kind, count: p.count, size };
    if (p.nats) common.nats = p.nats;
    else if (p.kind === "messagefs") common.root = dir;
    else common.dir = dir;
    const group = p.members > 1 ? "team" : undefined;
    const receivers = [];
    for (let i = 0; i < p.members; i++) {
      const child = spawnRole(SELF, "recv", {
        ...common,
        name: `r${i}`,
        ...(group ? { group } : {}),
      });
      const lines: LineReader = { reader: child.stdout.getReader(), buf: "" };
      const ready = await nextLine(lines);
      if (ready !== "ready") throw new Error(`receiver did not start: ${ready}`);
      receivers.push({ child, lines });
    }
    const sender = spawnRole(SELF, "send", {
      ...common,
      rate: p.rate,
      peers: p.members,
      ...(group ? { group } : { to: "r0" }),
    });
    const s = JSON.parse(await nextLine({ reader: sender.stdout.getReader(), buf: "" }));
    await sender.status;
    const rs = [];
    for (const r of receivers) {
      rs.push(JSON.parse(await nextLine(r.lines)));
      await r.child.status;
    }
    const samples = rs.flatMap((r) => r.samples as number[]);
    const delivered = rs.reduce((n, r) => n + r.delivered, 0);
    const cpu = s.cpuMs + rs.reduce((n, r) => n + r.cpuMs, 0);
    const result: Result = {
      transport: p.transport,
      scenario: p.scenario,
      size,
      rate: p.rate,
      subscribers: p.members,
      fs: p.nats ? "" : "tmpfs",
      delivered,
      expected: p.count * p.members,
      duplicates: rs.reduce((n, r) => n + r.duplicates, 0),
      order_violations: rs.reduce((n, r) => n + r.order, 0),
      pub_rate: Math.round(s.rate),
      sub_rate: Math.round(median(rs.map((r) => r.rate))),
      cpu_us_per_msg: Math.round((cpu * 1000 / p.count) * 10) / 10,
      notes: p.members > 1 ? `.all of a group of ${p.members} member processes` : "",
    };
    if (p.scenario === "latency") Object.assign(result, percentiles(samples));
    return result;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

async function startNatsServer(): Promise<{ server: string; stop: () => Promise<void> }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const child = new Deno.Command("nats-server", {
    args: ["-a", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    server: `127.0.0.1:${port}`,
    stop: async () => {
      child.kill();
      await child.status;
    },
  };
}

function combine(runs: Result[]): Result {
  const out: Result = { ...runs[0]! };
  const med = (k: keyof Result) => {
    const xs = runs.map((r) => r[k]).filter((x): x is number => typeof x === "number");
    return xs.length ? Math.round(median(xs) * 10) / 10 : undefined;
  };
  const keys = [
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "pub_rate",
    "sub_rate",
    "cpu_us_per_msg",
  ] as const;
  for (const k of keys) {
    const v = med(k);
    if (v !== undefined) out[k] = v;
  }
  out.delivered = Math.min(...runs.map((r) => r.delivered));
  out.duplicates = Math.max(...runs.map((r) => r.duplicates));
  out.order_violations = Math.max(...runs.map((r) => r.order_violations));
  if (runs.length > 1) out.notes = `${out.notes ? out.notes + "; " : ""}median of ${runs.length}`;
  return out;
}

/**
 * Runs the messagefs benchmarks.
 *
 * @param opts `quick` for a smoke run.
 * @returns One result per point; the messagefs points carry their ratios in `notes`.
 *
 * @example
 * ```ts ignore
 * import { run } from "./messagefs.ts";
 * const results = await run({ quick: true });
 * ```
 */
export async function run(opts: { quick: boolean; only?: string[] }): Promise<Result[]> {
  const reps = opts.quick ? 1 : 3;
  const lat = opts.quick ? 3000 : 11_000;
  const burst = opts.quick ? 5000 : 30_000;
  const fan = opts.quick ? 2000 : 6000;
  const nats = await startNatsServer();
  const results: Result[] = [];
  try {
    const n = nats.server;
    const points: Point[] = [];
    const pair = (transport: string, kind: Kind, natsUrl?: string) => {
      const at = natsUrl ? { nats: natsUrl } : {};
      points.push({
        transport,
        kind,
        scenario: "latency",
        rate: 1000,
        count: lat,
        members: 1,
        ...at,
      });
      points.push({
        transport,
        kind,
        scenario: "throughput",
        rate: 0,
        count: burst,
        members: 1,
        ...at,
      });
    };
    pair("messagefs", "messagefs");
    pair("msgfs", "msgfs");
    pair("messagefs-nats", "messagefs", n);
    pair("nats", "nats-core", n);
    // 8 receiving processes and a sender on 2 cores: 200 broadcasts/s (1,600 deliveries/s)
    // keeps up here, so the latency is the path's and not a growing backlog's.
    const all = { kind: "messagefs" as const, scenario: "latency" as const, rate: 200 };
    points.push({ transport: "messagefs", ...all, count: fan, members: 8 });
    points.push({ transport: "messagefs-nats", ...all, count: fan, members: 8, nats: n });
    for (const p of points) {
      const label = p.members > 1 ? `${p.transport}-all` : p.transport;
      if (opts.only && !opts.only.includes(label)) continue;
      const runs: Result[] = [];
      for (let i = 0; i < reps; i++) runs.push(await runPoint(p, 1024));
      const r = combine(runs);
      results.push(r);
      console.error(row(r));
    }
  } finally {
    await nats.stop();
  }
  const find = (t: string, s: string, m = 1) =>
    results.find((r) => r.transport === t && r.scenario === s && r.subscribers === m);
  const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) : "?");
  const note = (r: Result | undefined, text: string) => {
    if (r) r.notes = r.notes ? `${r.notes}; ${text}` : text;
  };
  const ml = find("messagefs", "latency");
  const fl = find("msgfs", "latency");
  if (ml && fl) {
    const diff = (ml.p50_us ?? 0) - (fl.p50_us ?? 0);
    note(
      ml,
      `p50 ${diff >= 0 ? "+" : ""}${diff.toFixed(1)} us vs msgfs (${ratio(ml.p50_us, fl.p50_us)}x)`,
    );
  }
  note(
    find("messagefs", "throughput"),
    `${
      ratio(find("messagefs", "throughput")?.sub_rate, find("msgfs", "throughput")?.sub_rate)
    }x msgfs`,
  );
  note(
    find("messagefs-nats", "latency"),
    `p50 ${
      ratio(find("messagefs-nats", "latency")?.p50_us, find("nats", "latency")?.p50_us)
    }x NATS core`,
  );
  note(
    find("messagefs-nats", "throughput"),
    `${
      ratio(find("messagefs-nats", "throughput")?.sub_rate, find("nats", "throughput")?.sub_rate)
    }x NATS core`,
  );
  return results;
}

if (import.meta.main) {
  const args = roleArgs();
  if (args.role === "recv") await recvRole(args);
  else if (args.role === "send") await sendRole(args);
  else {
    checkBenchFlags(import.meta.url, ["--quick", "--only"]);
    const quick = Deno.args.includes("--quick");
    const only = args.only?.split(",");
    const load0 = loadAverage();
    const results = await run(only ? { quick, only } : { quick });
    console.log("");
    for (const r of results) console.log(row(r));
    Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(
      new URL(
        `./results/messagefs${quick ? "-quick" : ""}${only ? "-part" : ""}.json`,
        import.meta.url,
      ),
      JSON.stringify(
        { date: new Date().toISOString(), load: `${load0}–${loadAverage()}`, results },
        null,
        2,
      ) + "\n",
    );
  }
}
