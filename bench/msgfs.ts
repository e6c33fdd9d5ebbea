/**
 * Benchmark of the directory bus (msgfs) against NATS core, a FIFO hop and inotifywait,
 * following ../shared/BENCHMARKS.md: one clock (CLOCK_MONOTONIC stamped into each payload),
 * separate processes, open-loop pacing, warm-up excluded, delivered/duplicates/order checked.
 *
 *   deno run -A bench/msgfs.ts            # the full matrix (about ten minutes)
 *   deno run -A bench/msgfs.ts --quick    # a smoke run
 *   deno run -A bench/msgfs.ts --only msgfs,floor   # only these transports (msgfs, floor,
 *                                                   # nats, fifo, inotifywait)
 *
 * Results are printed as a table and written to bench/results/msgfs.json.
 *
 * @module
 */

import { connect, type NatsConnection } from "nats";
import * as msgfs from "../transports/msgfs/mod.ts";
import { addRatios, type FloorPoint, medianFloor, runFloor } from "./_floor.ts";
import {
  checkBenchFlags,
  checkSequence,
  cpuTimeMs,
  loadAverage,
  median,
  monotonicNs,
  paced,
  percentiles,
  readLine,
  readStamp,
  type Result,
  roleArgs,
  row,
  spawnRole,
  stamp,
} from "./_lib.ts";

const SELF = new URL(import.meta.url).pathname;
const WARMUP = 1000;

type Transport = "msgfs" | "nats" | "fifo" | "inotifywait" | "floor";

interface SubReport {
  latencies: number[];
  seqs: number[];
  received: number;
  cpuMs: number;
  elapsedMs: number;
  /** The directory bus's listings after a lost event (its inotify queue overflowed). */
  rescans?: number;
}

// ---------------------------------------------------------------------------------------------
// Roles run in child processes.

async function subRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  const latencies: number[] = [];
  const seqs: number[] = [];
  let received = 0;
  let firstAt = 0;
  const onMessage = (data: Uint8Array) => {
    const now = monotonicNs();
    const { sentNs, seq } = readStamp(data);
    if (received === 0) firstAt = performance.now();
    received++;
    seqs.push(seq);
    if (seq >= WARMUP) latencies.push(Number(now - sentNs) / 1000);
  };
  const cpu0 = cpuTimeMs();
  let rescans: number | undefined;
  const done = async () => {
    const report: SubReport = {
      latencies,
      seqs,
      received,
      cpuMs: cpuTimeMs() - cpu0,
      elapsedMs: performance.now() - firstAt,
      ...(rescans === undefined ? {} : { rescans }),
    };
    await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(report) + "\n"));
  };
  const idleMs = Number(args.idle ?? 10_000);
  if (args.transport === "msgfs") {
    // As `fsbus sub` does: block in poll(2) between event-loop turns.
    const sub = msgfs.subscribe(args.dir!, { blockMs: Number(args.block ?? 250) });
    const it = sub[Symbol.asyncIterator]();
    let next = it.next(); // sets up the watch
    console.log("ready");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => void sub.close(), idleMs);
    };
    idle();
    for (;;) {
      const r = await next;
      if (r.done) break;
      onMessage(r.value.data);
      if (received % 256 === 0) idle();
      if (received >= count) break;
      next = it.next();
    }
    clearTimeout(timer);
    await sub.close();
    rescans = sub.stats.rescans;
  } else if (args.transport === "nats") {
    const nc = await connect({ servers: args.server! });
    let resolve!: () => void;
    const finished = new Promise<void>((r) => (resolve = r));
    let timer = setTimeout(resolve, 60_000);
    nc.subscribe("bench", {
      callback: (_err, msg) => {
        onMessage(msg.data);
        if (received % 256 === 0) {
          clearTimeout(timer);
          timer = setTimeout(resolve, idleMs);
        }
        if (received >= count) resolve();
      },
    });
    await nc.flush();
    console.log("ready");
    await finished;
    clearTimeout(timer);
    await nc.close();
  } else if (args.transport === "fifo") {
    console.log("ready"); // the open below waits for the writer
    const f = Deno.openSync(args.fifo!, { read: true });
    const size = Number(args.size);
    const buf = new Uint8Array(size * 64);
    let have = 0;
    while (received < count) {
      const n = f.readSync(buf.subarray(have));
      if (n === null) break;
      have += n;
      let off = 0;
      while (have - off >= size) {
        onMessage(buf.subarray(off, off + size));
        off += size;
      }
      buf.copyWithin(0, off, have);
      have -= off;
    }
    f.close();
  } else if (args.transport === "inotifywait") {
    // The plain-shell subscriber: inotifywait prints each name; we read the file it names.
    const child = new Deno.Command("inotifywait", {
      args: ["-m", "-q", "-e", "close_write", "--format", "%f", args.dir!],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    await new Promise((r) => setTimeout(r, 300));
    console.log("ready");
    const decoder = new TextDecoder();
    let pending = "";
    const reader = child.stdout.getReader();
    let timer = setTimeout(() => child.kill(), 60_000);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const name of lines) {
        try {
          onMessage(Deno.readFileSync(`${args.dir}/${name}`));
        } catch {
          // removed meanwhile
        }
      }
      clearTimeout(timer);
      timer = setTimeout(() => child.kill(), idleMs);
      if (received >= count) break;
    }
    clearTimeout(timer);
    try {
      child.kill();
    } catch {
      // gone
    }
    await child.status;
  }
  await done();
}

async function pubRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  const rate = Number(args.rate);
  const payload = new Uint8Array(Number(args.size));
  const cpu0 = cpuTimeMs();
  const t0 = performance.now();
  if (args.transport === "msgfs" || args.transport === "inotifywait") {
    const pub = new msgfs.Publisher(args.dir!, { sweep: false });
    // A publish is synchronous: no event-loop turn is needed between sends (a turn costs a
    // MessageChannel), so the pacer yields only every 1,000, as the C floor never does.
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      pub.publish(payload);
    }, { yieldEvery: 1000 });
  } else if (args.transport === "nats") {
    const nc: NatsConnection = await connect({ servers: args.server! });
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      nc.publish("bench", payload.slice()); // the client keeps the buffer until it flushes
    });
    await nc.flush();
    await nc.close();
  } else if (args.transport === "fifo") {
    const f = Deno.openSync(args.fifo!, { write: true });
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      let off = 0;
      while (off < payload.length) off += f.writeSync(payload.subarray(off));
    });
    f.close();
  }
  const elapsed = performance.now() - t0;
  console.log(JSON.stringify({ pubRate: count / (elapsed / 1000), cpuMs: cpuTimeMs() - cpu0 }));
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

/** One point of the directory-bus bench. */
export interface Point {
  /** "burst": the subscriber is stopped (SIGSTOP) while the publisher writes, so that the
   * kernel's inotify queue overflows, then continued. */
  scenario?: "burst";
  transport: Transport;
  size: number;
  rate: number;
  subscribers: number;
  count: number;
  fs: "tmpfs" | "ext4";
}

/**
 * Runs one point: subscribers in their own processes, then the publisher; checks delivery.
 *
 * @param p The point (a NATS point needs `server`).
 * @param server The nats-server's address.
 * @returns The result.
 */
export async function runPoint(p: Point, server: string): Promise<Result> {
  const base = p.fs === "tmpfs" ? "/dev/shm" : "/tmp";
  const dir = Deno.makeTempDirSync({ dir: base, prefix: "fsbus-bench-" });
  const fifo = `${dir}/fifo`;
  if (p.transport === "fifo") new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
  const common = { transport: p.transport, dir, server, fifo, count: p.count, size: p.size };
  try {
    const subs = Array.from({ length: p.subscribers }, () => spawnRole(SELF, "sub", common));
    const readers = subs.map((s) => ({ r: s.stdout.getReader(), state: { buf: "" } }));
    for (const { r, state } of readers) {
      const line = await readLine(r, state);
      if (line !== "ready") throw new Error(`subscriber said "${line}"`);
    }
    const stopped = p.scenario === "burst";
    if (stopped) { for (const s of subs) Deno.kill(s.pid, "SIGSTOP"); }
    const pub = spawnRole(SELF, "pub", { ...common, rate: p.rate });
    const pubReader = pub.stdout.getReader();
    const pubOut = JSON.parse(await readLine(pubReader, { buf: "" }));
    await pub.status;
    if (stopped) { for (const s of subs) Deno.kill(s.pid, "SIGCONT"); }
    const reports: SubReport[] = [];
    for (const { r, state } of readers) reports.push(JSON.parse(await readLine(r, state)));
    await Promise.all(subs.map((s) => s.status));
    const all: number[] = [];
    let duplicates = 0;
    let order = 0;
    let delivered = 0;
    let cpuMs = pubOut.cpuMs;
    let rescans = 0;
    const subRates: number[] = [];
    for (const rep of reports) {
      rescans += rep.rescans ?? 0;
      all.push(...rep.latencies);
      const c = checkSequence(rep.seqs);
      duplicates += c.duplicates;
      order += c.order;
      delivered += c.distinct;
      cpuMs += rep.cpuMs;
      subRates.push(rep.received / (rep.elapsedMs / 1000));
    }
    const expected = p.count * p.subscribers;
    return {
      transport: p.transport,
      scenario: p.scenario ?? (p.rate ? "latency" : "throughput"),
      size: p.size,
      rate: p.rate,
      subscribers: p.subscribers,
      fs: p.transport === "nats" || p.transport === "fifo" ? "" : p.fs,
      ...(all.length ? percentiles(all) : {}),
      delivered,
      expected,
      duplicates,
      order_violations: order,
      pub_rate: Math.round(pubOut.pubRate),
      sub_rate: Math.round(median(subRates)),
      cpu_us_per_msg: Math.round((cpuMs * 1000 / p.count) * 10) / 10,
      ...(p.scenario === "burst"
        ? { notes: `subscriber stopped during the burst; ${rescans} rescan(s) after overflow` }
        : {}),
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * Publish rate alone: this process writing as fast as it can into a new bus on tmpfs, no
 * subscriber (the bench's publish-only point; also run by bench/floor/experiments).
 *
 * @param count How many messages.
 * @param size Their size in bytes.
 * @returns The point's result: `pub_rate` and `cpu_us_per_msg`.
 *
 * @example
 * ```ts ignore
 * const r = publishRate(20_000, 1024);
 * console.log(r.pub_rate, r.cpu_us_per_msg);
 * ```
 */
export function publishRate(count: number, size: number): Result {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-" });
  try {
    const pub = new msgfs.Publisher(dir, { sweep: false });
    const payload = new Uint8Array(size);
    const cpu0 = cpuTimeMs();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      stamp(payload, i, 0n);
      pub.publish(payload);
    }
    const rate = count / ((performance.now() - t0) / 1000);
    const cpuMs = cpuTimeMs() - cpu0;
    void pub.close(); // no sweep to wait for: releases the bus's descriptor
    return {
      transport: "msgfs",
      scenario: "publish-only",
      size,
      rate: 0,
      subscribers: 0,
      fs: "tmpfs",
      delivered: count,
      expected: count,
      duplicates: 0,
      order_violations: 0,
      pub_rate: Math.round(rate),
      cpu_us_per_msg: Math.round((cpuMs * 1000 / count) * 10) / 10,
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** CPU used by an idle subscriber over a few seconds (goal: none). */
async function idleCpu(seconds: number): Promise<Result> {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-" });
  try {
    const sub = spawnRole(SELF, "sub", {
      transport: "msgfs",
      dir,
      count: 1,
      size: 64,
      idle: seconds * 1000 + 5000,
      block: 60_000, // as `fsbus sub` waits
    });
    const reader = sub.stdout.getReader();
    await readLine(reader, { buf: "" });
    await new Promise((r) => setTimeout(r, 500));
    const before = cpuTimeMs(sub.pid);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const used = cpuTimeMs(sub.pid) - before;
    sub.kill();
    await sub.status;
    reader.releaseLock();
    await sub.stdout.cancel().catch(() => {});
    return {
      transport: "msgfs",
      scenario: "idle-cpu",
      size: 0,
      rate: 0,
      subscribers: 1,
      fs: "tmpfs",
      delivered: 0,
      expected: 0,
      duplicates: 0,
      order_violations: 0,
      notes: `${used} ms CPU in ${seconds} s idle`,
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * Starts a nats-server on a free loopback port, for a bench's NATS points.
 *
 * @returns Its address and how to stop it.
 */
export async function startNats(): Promise<{ server: string; stop: () => Promise<void> }> {
  const port = 14222 + Math.floor(Math.random() * 1000);
  const child = new Deno.Command("nats-server", {
    args: ["-a", "127.0.0.1", "-p", String(port)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const server = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    server,
    stop: async () => {
      child.kill();
      await child.status;
    },
  };
}

/** Median of several runs of one point: latency percentiles and rates take their medians. */
function combine(runs: Result[]): Result {
  const first = runs[0]!;
  const med = (k: keyof Result) => {
    const xs = runs.map((r) => r[k]).filter((x): x is number => typeof x === "number");
    return xs.length ? Math.round(median(xs) * 10) / 10 : undefined;
  };
  const out: Result = { ...first };
  for (
    const k of [
      "p50_us",
      "p90_us",
      "p99_us",
      "p999_us",
      "max_us",
      "pub_rate",
      "sub_rate",
      "cpu_us_per_msg",
    ] as const
  ) {
    const v = med(k);
    if (v !== undefined) out[k] = v;
  }
  out.delivered = runs.reduce((a, r) => a + r.delivered, 0);
  out.expected = runs.reduce((a, r) => a + r.expected, 0);
  out.duplicates = runs.reduce((a, r) => a + r.duplicates, 0);
  out.order_violations = runs.reduce((a, r) => a + r.order_violations, 0);
  if (runs.length > 1) {
    const p50s = runs.map((r) => r.p50_us).filter((x): x is number => x !== undefined);
    const rates = runs.map((r) => r.sub_rate ?? r.pub_rate).filter((x): x is number =>
      x !== undefined
    );
    if (first.rate > 0 && p50s.length) {
      out.notes = `${runs.length} runs; p50 range ${Math.min(...p50s)}–${Math.max(...p50s)} µs`;
    } else if (rates.length) {
      out.notes = `${runs.length} runs; rate ${Math.min(...rates)}–${Math.max(...rates)}`;
    }
  }
  return out;
}

/**
 * Runs the directory-bus benchmark.
 *
 * @param opts `quick` for a smoke run small enough for CI; `only` to run only some transports.
 * @returns One result per point.
 */
export async function run(opts: { quick: boolean; only?: string[] }): Promise<Result[]> {
  const repeats = opts.quick ? 1 : 3;
  const nats = await startNats();
  const results: Result[] = [];
  const size = 1024;
  const points: Point[] = [];
  const latencyCount = (rate: number) => opts.quick ? 3000 : rate >= 10_000 ? 21_000 : 6000;
  for (const rate of [1000, 10_000]) {
    for (const subscribers of opts.quick ? [1, 4] : [1, 4, 8]) {
      if (opts.quick && rate === 10_000) continue;
      for (const transport of ["msgfs", "floor", "nats"] as const) {
        points.push({ transport, size, rate, subscribers, count: latencyCount(rate), fs: "tmpfs" });
      }
    }
    points.push({
      transport: "fifo",
      size,
      rate,
      subscribers: 1,
      count: latencyCount(rate),
      fs: "tmpfs",
    });
    points.push({
      transport: "inotifywait",
      size,
      rate,
      subscribers: 1,
      count: latencyCount(rate),
      fs: "tmpfs",
    });
    if (!opts.quick) {
      for (const transport of ["msgfs", "floor"] as const) {
        points.push({
          transport,
          size,
          rate,
          subscribers: 1,
          count: latencyCount(rate),
          fs: "ext4",
        });
      }
    }
  }
  const burst = opts.quick ? 20_000 : 100_000;
  for (const transport of ["msgfs", "floor", "nats"] as const) {
    points.push({ transport, size, rate: 0, subscribers: 1, count: burst, fs: "tmpfs" });
  }
  // The same burst into a stopped subscriber: more events than the kernel queues
  // (fs.inotify.max_queued_events, 16,384 by default), so it overflows and the bus is listed.
  points.push({
    scenario: "burst",
    transport: "msgfs",
    size,
    rate: 0,
    subscribers: 1,
    count: burst,
    fs: "tmpfs",
  });
  const only = opts.only;
  const floorPoint = (p: Point): FloorPoint => ({
    scenario: p.scenario ?? (p.rate ? "latency" : "throughput"),
    size: p.size,
    rate: p.rate,
    subscribers: p.subscribers,
    count: p.count,
    warmup: WARMUP,
    fs: p.fs,
  });
  // The transports of one point (same scenario, size, rate, subscribers and file system) run
  // round by round, alternated within each round: a change in the machine's load during the
  // run (three engineers share two cores here) then falls on fsbus and its floor alike, and
  // their ratio compares one moment, not two.
  const groups: Point[][] = [];
  const shape = (p: Point) => [p.scenario, p.size, p.rate, p.subscribers, p.fs].join();
  for (const p of points) {
    if (only && !only.includes(p.transport)) continue;
    const last = groups.at(-1);
    if (last && shape(last[0]!) === shape(p)) last.push(p);
    else groups.push([p]);
  }
  try {
    for (const group of groups) {
      const p0 = group[0]!;
      const n = p0.scenario === "burst" ? 1 : p0.fs === "ext4" ? Math.max(repeats, 5) : repeats;
      const runs = group.map((): Result[] => []);
      let noFloor = false;
      for (let i = 0; i < n; i++) {
        for (const [k, p] of group.entries()) {
          if (p.transport !== "floor") {
            runs[k]!.push(await runPoint(p, nats.server));
            continue;
          }
          if (noFloor) continue;
          const r = await runFloor("dirbus", floorPoint(p));
          if (r === undefined) noFloor = true;
          else runs[k]!.push(r);
        }
      }
      for (const [k, p] of group.entries()) {
        if (!runs[k]!.length) continue;
        const r = p.transport === "floor"
          ? medianFloor(runs[k]!, floorPoint(p))
          : combine(runs[k]!);
        results.push(r);
        console.error(row(r));
      }
    }
    if (!only || only.includes("msgfs")) {
      // Publish only, fsbus (in this process) and the floor (its own process) alternated.
      const count = opts.quick ? 20_000 : 100_000;
      const pubRuns: Result[] = [];
      const floorRuns: Result[] = [];
      const floorPub: FloorPoint = {
        scenario: "publish-only",
        size,
        rate: 0,
        subscribers: 0,
        count,
        warmup: 0,
      };
      for (let i = 0; i < repeats; i++) {
        pubRuns.push(publishRate(count, size));
        const f = await runFloor("dirbus", floorPub);
        if (f) floorRuns.push(f);
      }
      results.push(combine(pubRuns));
      console.error(row(results[results.length - 1]!));
      if (floorRuns.length) {
        results.push(medianFloor(floorRuns, floorPub));
        console.error(row(results[results.length - 1]!));
      }
      results.push(await idleCpu(opts.quick ? 1 : 3));
      console.error(row(results[results.length - 1]!));
    }
  } finally {
    await nats.stop();
  }
  addRatios(results, "msgfs", "nats");
  return results;
}

if (import.meta.main) {
  const args = roleArgs();
  if (args.role === "sub") await subRole(args);
  else if (args.role === "pub") await pubRole(args);
  else {
    checkBenchFlags(import.meta.url, ["--quick", "--only"]);
    const quick = Deno.args.includes("--quick");
    const onlyAt = Deno.args.indexOf("--only");
    const only = onlyAt >= 0 ? Deno.args[onlyAt + 1]?.split(",") : undefined;
    const before = loadAverage();
    const results = await run(only ? { quick, only } : { quick });
    const load = `${before}–${loadAverage()}`;
    Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(
      new URL(`./results/msgfs${quick ? "-quick" : ""}.json`, import.meta.url),
      JSON.stringify({ date: new Date().toISOString(), load, results }, null, 2) + "\n",
    );
  }
}
