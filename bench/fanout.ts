/**
 * Benchmarks of the fanout ring against ZeroMQ ipc PUB/SUB (pyzmq) and a FIFO hop, following
 * ../shared/BENCHMARKS.md: separate processes, one clock (CLOCK_MONOTONIC stamps), warm-up
 * messages not counted, delivered/duplicates/order checked on every point.
 *
 *   deno run -A bench/fanout.ts           # the full matrix (a few minutes)
 *   deno run -A bench/fanout.ts --quick   # a smoke run
 *
 * Points: throughput (unpaced, with batching) for 64 B and 1 KiB, 1 -> 1 and 1 -> 8;
 * latency at 10k msgs/s (64 B and 1 KiB, 1 -> 1 and 1 -> 8); the writer's rate with stalled
 * (SIGSTOPped) readers. Results are printed as a table and written to
 * bench/results/fanout.json.
 *
 * Latency is measured from the time stamped at the actual send (the publishers pace
 * precisely with sub-millisecond sleeps; their largest lag behind schedule is in `notes`).
 *
 * @module
 */

import {
  checkBenchFlags,
  cpuTimeMs,
  loadAverage,
  median,
  monotonicNs,
  percentiles,
  type Result,
  roleArg,
  waitFor,
} from "./_lib.ts";
import { createTopic, openReader, openWriter } from "../transports/fanout/mod.ts";
import { futexWait } from "../sys/futex.ts";
import { addRatios, repeatFloor } from "./_floor.ts";

const SELF = new URL(import.meta.url).pathname;
const PEERS = new URL("./peers/", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";
const WARMUP = 1000;
const END = 0xffffffff;
const enc = new TextEncoder();
const dec = new TextDecoder();

// ---- shared pieces --------------------------------------------------------------------------

/** A sleep of `us` microseconds without the event loop: a futex wait on a private word. */
const sleepWord = new Int32Array(1024);
const sleepAddr = Deno.UnsafePointer.of(sleepWord) as Deno.PointerObject;
function sleepUs(us: number): void {
  futexWait(sleepAddr, 0, us / 1000);
}

/**
 * Sends `total` messages at `rate` per second with precise pacing: sleeps below a millisecond,
 * sends every message due. `send(seq)` stamps the actual send time itself.
 */
function pacePrecise(rate: number, total: number, send: (seq: number) => void): number {
  const interval = 1e9 / rate;
  const t0 = Number(monotonicNs());
  let maxLag = 0;
  for (let i = 0; i < total;) {
    const now = Number(monotonicNs());
    const due = t0 + i * interval;
    if (due > now) {
      const left = due - now;
      if (left > 60_000) sleepUs((left - 50_000) / 1000);
      continue;
    }
    maxLag = Math.max(maxLag, now - due);
    send(i++);
  }
  return maxLag / 1000;
}

/** Stamps a record in place: actual send time, then the sequence number (u64, LE). */
function stampAt(view: DataView, offset: number, seq: number, ns: bigint): void {
  view.setBigUint64(offset, ns, true);
  view.setUint32(offset + 8, seq, true);
  view.setUint32(offset + 12, 0, true);
}

/** Counts fixed-size records as they arrive: delivered, duplicates, order, latency. */
class Tally {
  readonly #seen: Uint8Array;
  readonly #last: number;
  delivered = 0;
  duplicates = 0;
  order = 0;
  lastSeq = -1;
  firstNs = 0n;
  lastNs = 0n;
  lat: number[] = [];
  done = false;
  constructor(readonly warmup: number, readonly count: number, readonly latency: boolean) {
    this.#seen = new Uint8Array(warmup + count);
    this.#last = warmup + count - 1;
  }
  add(seq: number, sentNs: bigint, now: bigint): void {
    if (seq === END) {
      this.done = true;
      return;
    }
    if (seq < this.lastSeq) this.order++;
    this.lastSeq = seq;
    if (this.#seen[seq]) {
      this.duplicates++;
      return;
    }
    this.#seen[seq] = 1;
    if (seq === this.#last) this.done = true;
    if (seq < this.warmup) return;
    if (this.delivered === 0) this.firstNs = now;
    this.lastNs = now;
    this.delivered++;
    if (this.latency) this.lat.push(Number(now - sentNs) / 1000);
  }
  cpu0 = cpuTimeMs();
  summary(): Record<string, unknown> {
    const secs = Number(this.lastNs - this.firstNs) / 1e9;
    return {
      delivered: this.delivered,
      duplicates: this.duplicates,
      order: this.order,
      sub_rate: secs > 0 ? this.delivered / secs : 0,
      cpu_ms: cpuTimeMs() - this.cpu0,
      lat: this.lat,
    };
  }
}

/** Feeds every whole record of a chunk to the tally, keeping a partial one for later. */
class RecordSplitter {
  #carry = new Uint8Array(0);
  constructor(readonly size: number, readonly tally: Tally) {}
  push(chunk: Uint8Array, now: bigint): void {
    let data = chunk;
    if (this.#carry.length > 0) {
      data = new Uint8Array(this.#carry.length + chunk.length);
      data.set(this.#carry);
      data.set(chunk, this.#carry.length);
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const whole = data.length - (data.length % this.size);
    const latency = this.tally.latency;
    for (let off = 0; off < whole; off += this.size) {
      const seq = view.getUint32(off + 8, true);
      this.tally.add(seq, latency ? view.getBigUint64(off, true) : 0n, now);
    }
    this.#carry = whole === data.length ? new Uint8Array(0) : data.slice(whole);
  }
  reset(): void {
    this.#carry = new Uint8Array(0);
  }
}

// ---- roles (run as separate processes) --------------------------------------------------------

function say(line: string): void {
  Deno.stdout.writeSync(enc.encode(line + "\n"));
}

async function fanoutReader(): Promise<void> {
  const root = roleArg("root");
  const size = Number(roleArg("size"));
  const count = Number(roleArg("count"));
  const latency = roleArg("latency") === "1";
  const mode = roleArg("mode");
  const r = openReader("bench", { root });
  const tally = new Tally(WARMUP, count, latency);
  const split = new RecordSplitter(size, tally);
  let overruns = 0;
  tally.cpu0 = cpuTimeMs();
  say("ready");
  while (!tally.done) {
    let chunks: Uint8Array[];
    try {
      chunks = r.take(1 << 20);
    } catch {
      overruns++;
      r.resync();
      split.reset();
      continue;
    }
    if (chunks.length === 0) {
      if (mode === "async") await r.wait();
      else if (!r.waitSync(10_000) && tally.delivered > 0) break; // the end markers were lost
      continue;
    }
    const now = monotonicNs();
    for (const c of chunks) split.push(c, now);
  }
  say(JSON.stringify({ ...tally.summary(), overruns }));
  r.close();
}

async function fanoutWriter(): Promise<void> {
  const root = roleArg("root");
  const size = Number(roleArg("size"));
  const count = Number(roleArg("count"));
  const rate = Number(roleArg("rate"));
  const batch = Number(roleArg("batch"));
  const seconds = Number(roleArg("seconds"));
  const w = openWriter("bench", { root });
  const total = WARMUP + count;
  let maxLag = 0;
  const cpu0 = cpuTimeMs();
  const t0 = monotonicNs();
  let sent = 0;
  if (rate > 0 && batch > 1) {
    // Paced with batching: each round sends every message now due, as one write.
    const buf = new Uint8Array(size * batch);
    const view = new DataView(buf.buffer);
    const interval = 1e9 / rate;
    const start = Number(t0);
    while (sent < total) {
      const now = monotonicNs();
      const due = Math.min(total, Math.floor((Number(now) - start) / interval) + 1);
      const n = Math.min(batch, due - sent);
      if (n <= 0) {
        sleepUs(Math.max(20, (start + sent * interval - Number(now)) / 1000 - 50));
        continue;
      }
      maxLag = Math.max(maxLag, (Number(now) - (start + sent * interval)) / 1000);
      for (let k = 0; k < n; k++) stampAt(view, k * size, sent + k, now);
      w.write(n === batch ? buf : buf.subarray(0, n * size));
      sent += n;
    }
  } else if (rate > 0) {
    const rec = new Uint8Array(size);
    const view = new DataView(rec.buffer);
    maxLag = pacePrecise(rate, total, (seq) => {
      stampAt(view, 0, seq, monotonicNs());
      w.write(rec);
    });
    sent = total;
  } else {
    const buf = new Uint8Array(size * batch);
    const view = new DataView(buf.buffer);
    const deadline = seconds > 0 ? Number(t0) + seconds * 1e9 : Infinity;
    for (let seq = 0; seconds > 0 || seq < total;) {
      const n = seconds > 0 ? batch : Math.min(batch, total - seq);
      const ns = monotonicNs();
      for (let k = 0; k < n; k++) stampAt(view, k * size, (seq + k) % total, ns);
      w.write(n === batch ? buf : buf.subarray(0, n * size));
      seq += n;
      sent = seq;
      if (seconds > 0 && seq % (batch * 64) === 0 && Number(monotonicNs()) > deadline) break;
    }
  }
  const secs = Number(monotonicNs() - t0) / 1e9;
  const cpu = cpuTimeMs() - cpu0;
  // End markers, spread out so that a reader resynchronising after an overrun sees one.
  const end = new Uint8Array(size);
  stampAt(new DataView(end.buffer), 0, END, 0n);
  for (let i = 0; i < 20 && seconds === 0; i++) {
    w.write(end);
    await new Promise((r) => setTimeout(r, 25));
  }
  say(JSON.stringify({ pub_rate: sent / secs, cpu_ms: cpu, max_lag_us: maxLag, sent }));
  w.close();
}

function fifoReader(): void {
  const path = roleArg("path");
  const size = Number(roleArg("size"));
  const count = Number(roleArg("count"));
  const latency = roleArg("latency") === "1";
  const f = Deno.openSync(path, { read: true });
  const tally = new Tally(WARMUP, count, latency);
  const split = new RecordSplitter(size, tally);
  const buf = new Uint8Array(1 << 20);
  tally.cpu0 = cpuTimeMs();
  say("ready");
  while (!tally.done) {
    const n = f.readSync(buf);
    if (n === null) break;
    split.push(buf.subarray(0, n), monotonicNs());
  }
  say(JSON.stringify(tally.summary()));
  f.close();
}

function fifoWriter(): void {
  const path = roleArg("path");
  const size = Number(roleArg("size"));
  const count = Number(roleArg("count"));
  const rate = Number(roleArg("rate"));
  const batch = Number(roleArg("batch"));
  const f = Deno.openSync(path, { write: true });
  const total = WARMUP + count;
  const writeAll = (b: Uint8Array) => {
    for (let off = 0; off < b.length;) off += f.writeSync(b.subarray(off));
  };
  let maxLag = 0;
  const cpu0 = cpuTimeMs();
  const t0 = monotonicNs();
  if (rate > 0) {
    const rec = new Uint8Array(size);
    const view = new DataView(rec.buffer);
    maxLag = pacePrecise(rate, total, (seq) => {
      stampAt(view, 0, seq, monotonicNs());
      writeAll(rec);
    });
  } else {
    const buf = new Uint8Array(size * batch);
    const view = new DataView(buf.buffer);
    for (let seq = 0; seq < total; seq += batch) {
      const n = Math.min(batch, total - seq);
      const ns = monotonicNs();
      for (let k = 0; k < n; k++) stampAt(view, k * size, seq + k, ns);
      writeAll(n === batch ? buf : buf.subarray(0, n * size));
    }
  }
  const secs = Number(monotonicNs() - t0) / 1e9;
  say(
    JSON.stringify({
      pub_rate: total / secs,
      cpu_ms: cpuTimeMs() - cpu0,
      max_lag_us: maxLag,
    }),
  );
  f.close();
}

// ---- harness --------------------------------------------------------------------------------

interface Proc {
  child: Deno.ChildProcess;
  lines: string[];
  done: Promise<void>;
  writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
}

function spawn(cmd: string, args: string[], stdin = false): Proc {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    let carry = "";
    for await (const chunk of child.stdout) {
      carry += dec.decode(chunk, { stream: true });
      const parts = carry.split("\n");
      carry = parts.pop()!;
      lines.push(...parts);
    }
  })();
  return { child, lines, done, writer: stdin ? child.stdin.getWriter() : undefined };
}

function role(name: string, args: Record<string, string | number>): Proc {
  const flat = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return spawn(Deno.execPath(), ["run", "-A", "--quiet", SELF, "--role", name, ...flat]);
}

async function finish(p: Proc, timeoutMs = 300_000): Promise<Record<string, unknown>> {
  const timer = setTimeout(() => {
    try {
      p.child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, timeoutMs);
  try {
    await p.child.status;
    await p.done;
  } finally {
    clearTimeout(timer);
  }
  const last = p.lines.filter((l) => l.startsWith("{")).pop();
  if (!last) throw new Error("a benchmark process ended without a result");
  return JSON.parse(last);
}

async function kill(p: Proc): Promise<void> {
  for (const sig of ["SIGCONT", "SIGKILL"] as const) {
    try {
      p.child.kill(sig);
    } catch {
      // gone
    }
  }
  await p.child.status;
  await p.done.catch(() => {});
}

interface Point {
  transport: string;
  scenario: "throughput" | "latency";
  size: number;
  rate: number;
  subscribers: number;
  count: number;
  batch?: number;
  mode?: "sync" | "async";
}

function summarise(
  pt: Point,
  pub: Record<string, unknown>,
  subs: Record<string, unknown>[],
  notes: string,
): Result {
  const lat: number[] = [];
  let delivered = 0;
  let duplicates = 0;
  let order = 0;
  let cpu = Number(pub.cpu_ms);
  const rates: number[] = [];
  for (const s of subs) {
    delivered += Number(s.delivered);
    duplicates += Number(s.duplicates);
    order += Number(s.order);
    cpu += Number(s.cpu_ms);
    rates.push(Number(s.sub_rate));
    if (Array.isArray(s.lat)) { for (const x of s.lat as number[]) lat.push(x); }
  }
  const overruns = subs.reduce((n, s) => n + Number(s.overruns ?? 0), 0);
  const r: Result = {
    transport: pt.transport,
    scenario: pt.scenario,
    size: pt.size,
    rate: pt.rate,
    subscribers: pt.subscribers,
    fs: "tmpfs",
    delivered,
    expected: pt.count * pt.subscribers,
    duplicates,
    order_violations: order,
    pub_rate: Math.round(Number(pub.pub_rate)),
    sub_rate: Math.round(Math.min(...rates)),
    cpu_us_per_msg: Math.round((cpu * 1000) / ((pt.count + WARMUP) * 1) * 100) / 100,
    notes: [
      notes,
      pt.batch ? `batch ${pt.batch}` : "",
      pt.mode ? `${pt.mode} reader` : "",
      overruns ? `${overruns} overruns` : "",
      pub.max_lag_us !== undefined && Number(pub.max_lag_us) > 0
        ? `pacer max lag ${Math.round(Number(pub.max_lag_us))} us`
        : "",
      `sub_rate is the slowest subscriber; median ${Math.round(median(rates))}`,
    ].filter(Boolean).join("; "),
  };
  if (pt.scenario === "latency" && lat.length > 0) Object.assign(r, percentiles(lat));
  return r;
}

async function fanoutPoint(pt: Point): Promise<Result> {
  const root = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-" });
  // A ring that holds the whole run, so the figures are lossless whatever the scheduling: a
  // reader that falls behind (a loaded machine) shows as latency, not as records overwritten
  // under it (a 4 MiB ring lost 1 KiB × 8 latency records to overruns under load).
  let ringSize = pt.scenario === "throughput" ? 64 << 20 : 4 << 20;
  while (ringSize < (pt.count + WARMUP) * pt.size * 1.25 && ringSize < 1 << 30) ringSize *= 2;
  createTopic("bench", { root, size: ringSize });
  const readers: Proc[] = [];
  let writer: Proc | undefined;
  try {
    for (let i = 0; i < pt.subscribers; i++) {
      readers.push(role("fanout-reader", {
        root,
        size: pt.size,
        count: pt.count,
        latency: pt.scenario === "latency" ? 1 : 0,
        mode: pt.mode ?? "sync",
      }));
    }
    await waitFor(() => readers.every((r) => r.lines.includes("ready")), 30_000, "readers");
    writer = role("fanout-writer", {
      root,
      size: pt.size,
      count: pt.count,
      rate: pt.rate,
      batch: pt.batch ?? 1,
      seconds: 0,
    });
    const subs = await Promise.all(readers.map((r) => finish(r)));
    const pub = await finish(writer);
    return summarise(
      pt,
      pub,
      subs,
      `fanout ring of ${ringSize >> 20} MiB, byte mode, fixed-size records`,
    );
  } finally {
    for (const p of [...readers, ...(writer ? [writer] : [])]) await kill(p);
    Deno.removeSync(root, { recursive: true });
  }
}

/** Whether pyzmq (the ZeroMQ peer) imports here; checked once. */
let zmqFound: boolean | undefined;

/**
 * Whether the ZeroMQ peer can run (Debian's python3-zmq), saying once on stderr that its points
 * are skipped when it cannot, instead of a publisher that never binds.
 */
async function zmqAvailable(): Promise<boolean> {
  if (zmqFound === undefined) {
    const out = await new Deno.Command(PYTHON, {
      args: ["-c", "import zmq"],
      stdout: "null",
      stderr: "null",
    }).output().catch(() => ({ success: false }));
    zmqFound = out.success;
    if (!zmqFound) {
      console.error(
        "bench: python3-zmq is not installed (apt-get install python3-zmq): the ZeroMQ points are skipped",
      );
    }
  }
  return zmqFound;
}

async function zmqPoint(pt: Point): Promise<Result> {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-zmq-" });
  const endpoint = `ipc://${dir}/pub.sock`;
  const pub = spawn(PYTHON, [
    `${PEERS}zmq_pub.py`,
    endpoint,
    String(pt.size),
    String(WARMUP),
    String(pt.count),
    String(pt.rate),
    "1",
  ], true);
  const subs: Proc[] = [];
  try {
    await waitFor(() => pub.lines.includes("bound"), 30_000, "zmq publisher");
    for (let i = 0; i < pt.subscribers; i++) {
      subs.push(spawn(PYTHON, [
        `${PEERS}zmq_sub.py`,
        endpoint,
        String(WARMUP),
        String(pt.count),
        pt.scenario === "latency" ? "1" : "0",
      ]));
    }
    await waitFor(() => subs.every((s) => s.lines.includes("ready")), 30_000, "zmq subscribers");
    // Subscriptions travel to the publisher asynchronously (the "slow joiner"): the warm-up
    // messages absorb the rest.
    await new Promise((r) => setTimeout(r, 200));
    await pub.writer!.write(enc.encode("go\n"));
    await pub.writer!.close();
    const results = await Promise.all(subs.map((s) => finish(s)));
    const p = await finish(pub);
    return summarise(pt, p, results, "pyzmq ipc PUB/SUB, unlimited HWM");
  } finally {
    for (const p of [pub, ...subs]) await kill(p);
    Deno.removeSync(dir, { recursive: true });
  }
}

async function fifoPoint(pt: Point): Promise<Result> {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-fifo-" });
  const path = `${dir}/fifo`;
  const mk = new Deno.Command("mkfifo", { args: [path] }).outputSync();
  if (!mk.success) throw new Error("mkfifo failed");
  let reader: Proc | undefined;
  let writer: Proc | undefined;
  try {
    reader = role("fifo-reader", {
      path,
      size: pt.size,
      count: pt.count,
      latency: pt.scenario === "latency" ? 1 : 0,
    });
    writer = role("fifo-writer", {
      path,
      size: pt.size,
      count: pt.count,
      rate: pt.rate,
      batch: pt.batch ?? 1,
    });
    const sub = await finish(reader);
    const pub = await finish(writer);
    return summarise(pt, pub, [sub], "FIFO hop between two Deno processes");
  } finally {
    for (const p of [reader, writer]) if (p) await kill(p);
    Deno.removeSync(dir, { recursive: true });
  }
}

/** The writer's unpaced rate alone, then with stalled (SIGSTOPped) readers registered. */
async function stalledPoint(stalled: number, seconds: number): Promise<Result> {
  const root = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-stall-" });
  createTopic("bench", { root, size: 1 << 20 });
  const readers: Proc[] = [];
  try {
    for (let i = 0; i < stalled; i++) {
      readers.push(role("fanout-reader", {
        root,
        size: 64,
        count: 1,
        latency: 0,
        mode: "sync",
      }));
    }
    await waitFor(() => readers.every((r) => r.lines.includes("ready")), 30_000, "readers");
    for (const r of readers) r.child.kill("SIGSTOP");
    const w = role("fanout-writer", {
      root,
      size: 64,
      count: 0,
      rate: 0,
      batch: 64,
      seconds,
    });
    const pub = await finish(w);
    return {
      transport: "fanout",
      scenario: "stalled-readers",
      size: 64,
      rate: 0,
      subscribers: stalled,
      fs: "tmpfs",
      delivered: 0,
      expected: 0,
      duplicates: 0,
      order_violations: 0,
      pub_rate: Math.round(Number(pub.pub_rate)),
      cpu_us_per_msg: Math.round((Number(pub.cpu_ms) * 1000 / Number(pub.sent)) * 1000) / 1000,
      notes: `writer alone for ${seconds} s, batch 64, with ${stalled} SIGSTOPped readers`,
    };
  } finally {
    for (const r of readers) await kill(r);
    Deno.removeSync(root, { recursive: true });
  }
}

async function repeat(times: number, f: () => Promise<Result>): Promise<Result> {
  const runs: Result[] = [];
  for (let i = 0; i < times; i++) runs.push(await f());
  if (runs.length === 1) return runs[0]!;
  const key = runs[0]!.scenario === "latency" ? "p50_us" : "sub_rate";
  const sorted = [...runs].sort((a, b) => (a[key] ?? 0) - (b[key] ?? 0));
  const mid = sorted[sorted.length >> 1]!;
  const range = `${key} min-max ${sorted[0]![key]}-${
    sorted[sorted.length - 1]![key]
  } over ${times} runs`;
  return { ...mid, notes: `${mid.notes}; median run; ${range}` };
}

function table(results: Result[]): string {
  const head = [
    "transport",
    "scenario",
    "size",
    "rate",
    "N",
    "p50",
    "p99",
    "delivered",
    "dup",
    "ord",
    "pub/s",
    "sub/s",
    "cpu us/msg",
  ];
  const rows = results.map((r) => [
    r.transport,
    r.scenario,
    String(r.size),
    String(r.rate),
    String(r.subscribers),
    r.p50_us === undefined ? "" : String(r.p50_us),
    r.p99_us === undefined ? "" : String(r.p99_us),
    `${r.delivered}/${r.expected}`,
    String(r.duplicates),
    String(r.order_violations),
    String(r.pub_rate ?? ""),
    String(r.sub_rate ?? ""),
    String(r.cpu_us_per_msg ?? ""),
  ]);
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join("  ")).join("\n") + "\n";
}

/**
 * Runs the fanout benchmarks.
 *
 * @param opts `quick` for a smoke run of a few seconds.
 * @returns One result per point.
 */
export async function run(
  opts: { quick: boolean; only?: "throughput" | "latency" | "stalled" },
): Promise<Result[]> {
  const want = (part: string) => opts.only === undefined || opts.only === part;
  const reps = opts.quick ? 1 : 3;
  const results: Result[] = [];
  const point = async (times: number, f: (pt: Point) => Promise<Result>, pt: Point) => {
    if (f === zmqPoint && !(await zmqAvailable())) return;
    const r = await repeat(times, () => f(pt));
    results.push(r);
    console.error(table([r]).split("\n")[1]);
  };
  // The floors in C: the shared-memory ring with a futex wake, and a FIFO hop.
  const floor = async (times: number, kind: "ring" | "fifo", pt: Point) => {
    const r = await repeatFloor(times, kind, {
      transport: kind === "ring" ? "floor" : "floor-fifo",
      scenario: pt.scenario,
      size: pt.size,
      rate: pt.rate,
      subscribers: pt.subscribers,
      count: pt.count + WARMUP,
      warmup: WARMUP,
      ...(pt.batch ? { batch: pt.batch } : {}),
    });
    if (!r) return;
    results.push(r);
    console.error(table([r]).split("\n")[1]);
  };
  const tp = (transport: string, size: number, subscribers: number, count: number, more = {}) =>
    ({ transport, scenario: "throughput", size, rate: 0, subscribers, count, ...more }) as Point;
  const lp = (transport: string, size: number, subscribers: number, more = {}) =>
    ({
      transport,
      scenario: "latency",
      size,
      rate: 10_000,
      subscribers,
      count: opts.quick ? 3000 : 20_000,
      ...more,
    }) as Point;

  // Throughput with batching (unpaced), and fan-out at a fixed offered load.
  for (const size of want("throughput") ? [64, 1024] : []) {
    const count = size === 64
      ? (opts.quick ? 200_000 : 2_000_000)
      : (opts.quick ? 50_000 : 300_000);
    const batch = size === 64 ? 256 : 16;
    for (const n of opts.quick ? [1] : [1, 8]) {
      await point(reps, fanoutPoint, tp("fanout", size, n, count, { batch }));
      await floor(reps, "ring", tp("fanout", size, n, count, { batch }));
    }
    if (opts.quick) continue;
    if (size === 64) {
      for (const n of [1, 8]) {
        const pt = tp("fanout", size, n, 2_000_000, { batch: 1024, rate: 1_000_000 });
        await point(reps, fanoutPoint, pt);
      }
    }
    await point(1, fanoutPoint, tp("fanout", size, 1, count / 4, { batch: 1 }));
    for (const n of [1, 8]) {
      await point(1, zmqPoint, tp("zeromq", size, n, size === 64 ? 300_000 : 100_000));
    }
    await point(1, fifoPoint, tp("fifo", size, 1, count, { batch }));
    await floor(1, "fifo", tp("fifo", size, 1, count, { batch }));
  }

  // Latency at 10k msgs/s.
  for (const size of !want("latency") ? [] : opts.quick ? [64] : [64, 1024]) {
    for (const n of opts.quick ? [1] : [1, 8]) {
      await point(reps, fanoutPoint, lp("fanout", size, n, { mode: "sync" }));
      await floor(reps, "ring", lp("fanout", size, n));
      if (n === 1) await point(reps, fanoutPoint, lp("fanout-async", size, n, { mode: "async" }));
      await point(reps, zmqPoint, lp("zeromq", size, n));
      if (n === 1) await point(reps, fifoPoint, lp("fifo", size, 1));
      if (n === 1) await floor(reps, "fifo", lp("fifo", size, 1));
    }
  }

  // A stalled reader never slows the writer.
  const secs = opts.quick ? 1 : 3;
  for (const n of !want("stalled") ? [] : opts.quick ? [0, 1] : [0, 1, 8]) {
    const r = await stalledPoint(n, secs);
    results.push(r);
    console.error(table([r]).split("\n")[1]);
  }
  addRatios(results, "fanout", "zeromq", (r) => r.notes?.match(/batch (\d+)/)?.[1] ?? "1");
  return results;
}

if (import.meta.main) {
  const r = Deno.args.indexOf("--role");
  if (r >= 0) {
    const name = Deno.args[r + 1];
    if (name === "fanout-reader") await fanoutReader();
    else if (name === "fanout-writer") await fanoutWriter();
    else if (name === "fifo-reader") fifoReader();
    else if (name === "fifo-writer") fifoWriter();
    else throw new Error(`unknown role ${name}`);
  } else {
    checkBenchFlags(import.meta.url, ["--quick", "--only"]);
    const quick = Deno.args.includes("--quick");
    const o = Deno.args.indexOf("--only");
    const only = o >= 0 ? Deno.args[o + 1] as "throughput" | "latency" | "stalled" : undefined;
    const before = loadAverage();
    const results = await run({ quick, ...(only ? { only } : {}) });
    const load = `${before}–${loadAverage()}`;
    console.log(table(results));
    Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(
      new URL(
        `./results/fanout${quick ? "-quick" : ""}${only ? `-${only}` : ""}.json`,
        import.meta.url,
      ),
      // As bench/run.ts writes it, so that `deno task bench --report` shows when and how loaded.
      JSON.stringify({ date: new Date().toISOString(), load, results }, null, 2) + "\n",
    );
  }
}
