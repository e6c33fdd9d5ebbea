/**
 * The physical floor beside each transport: small C programs (bench/floor/*.c) doing the same
 * system calls as the transport, built here with gcc and run under the bench's own protocol
 * (CLOCK_MONOTONIC stamp and sequence number in each payload, "ready" before the publisher
 * starts, the same open-loop pacing, the first messages not counted, delivered / duplicates /
 * order checked). Their results sit in the same JSON as fsbus's, as transport "floor" (the
 * transport's own floor) or "floor-fifo" (one kernel hop through a FIFO).
 *
 * Where gcc is missing, the floor points are skipped with one notice on stderr.
 *
 * @module
 */

import { median, type Ratios, type Result, waitFor } from "./_lib.ts";

/** The floors: one C program each. */
export type FloorKind = "dirbus" | "filebus" | "mq" | "ring" | "fifo" | "fuse";

const SOURCES = new URL("./floor/", import.meta.url);
const built = new Map<FloorKind, string | null>();
let warned = false;

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME");
  if (xdg) return `${xdg}/fsbus-bench-floor`;
  if (home) return `${home}/.cache/fsbus-bench-floor`;
  return `${Deno.makeTempDirSync({ prefix: "fsbus-bench-floor-" })}`;
}

/**
 * Builds one floor program with gcc (once per source version, cached under
 * `$XDG_CACHE_HOME/fsbus-bench-floor/`), or says once that gcc is missing.
 *
 * @param kind The floor.
 * @returns The executable's path, or undefined when it cannot be built.
 */
export async function floorBinary(kind: FloorKind): Promise<string | undefined> {
  if (built.has(kind)) return built.get(kind) ?? undefined;
  const src = Deno.readTextFileSync(new URL(`${kind}.c`, SOURCES));
  const header = Deno.readTextFileSync(new URL("floor.h", SOURCES));
  const hash = (await sha256(header + src)).slice(0, 16);
  const dir = `${cacheRoot()}/${hash}`;
  const exe = `${dir}/${kind}`;
  try {
    Deno.statSync(exe);
    built.set(kind, exe);
    return exe;
  } catch {
    // not built yet
  }
  Deno.mkdirSync(dir, { recursive: true });
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("gcc", {
      args: ["-O2", "-Wall", "-o", `${exe}.tmp`, new URL(`${kind}.c`, SOURCES).pathname],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    if (!warned) {
      console.error("bench: gcc is not installed: the C floor points are skipped");
      warned = true;
    }
    built.set(kind, null);
    return undefined;
  }
  if (!out.success) throw new Error(`gcc failed on bench/floor/${kind}.c`);
  Deno.renameSync(`${exe}.tmp`, exe);
  built.set(kind, exe);
  return exe;
}

/** One floor point: the load shape, as the transport's own point. */
export interface FloorPoint {
  /** The transport name recorded ("floor" unless given). */
  transport?: string;
  /** The scenario name recorded, as the transport's ("latency", "throughput", ...). */
  scenario: string;
  size: number;
  /** Messages per second, 0 for unpaced. */
  rate: number;
  /** Subscriber processes; 0 for the publisher alone. */
  subscribers: number;
  /** Messages sent, warm-up included. */
  count: number;
  /** Messages at the start not counted in latency. */
  warmup: number;
  fs?: "tmpfs" | "ext4";
  /** Records per write when unpaced (fifo, ring). */
  batch?: number;
  /** Lossy (filebus): each subscriber sees only some messages; count those after warm-up. */
  lossy?: boolean;
  /** Ring size in records (ring). */
  slots?: number;
}

/** A floor reader's own summary (floor.h sub_report): counts, checks and a histogram. */
interface SubOut {
  received: number;
  /** Distinct sequence numbers seen. */
  distinct: number;
  /** Sequence numbers seen before (or never sent). */
  duplicates: number;
  /** Arrivals below the one before. */
  order: number;
  /** Arrivals with seq >= warmup. */
  counted: number;
  overflows: number;
  cpu_ms: number;
  first_ns: number;
  last_ns: number;
  /** Latency (seq >= warmup): sorted [tenths of a µs, count] pairs. */
  lat_hist: [number, number][];
}

/**
 * Latency percentiles from floor readers' histograms, merged: the same ranks as
 * `percentiles()` takes from the samples (exact below 1 ms, four significant digits above).
 *
 * @param hists One histogram per reader: [tenths of a µs, count] pairs.
 * @returns p50, p90, p99, p99.9 and max in µs; empty when there are no samples.
 */
export function histPercentiles(
  hists: [number, number][][],
): Pick<Result, "p50_us" | "p90_us" | "p99_us" | "p999_us" | "max_us"> {
  const merged = new Map<number, number>();
  for (const h of hists) for (const [v, n] of h) merged.set(v, (merged.get(v) ?? 0) + n);
  const bins = [...merged].sort((a, b) => a[0] - b[0]);
  const total = bins.reduce((t, [, n]) => t + n, 0);
  if (total === 0) return {};
  const at = (rank: number) => {
    let seen = 0;
    for (const [v, n] of bins) {
      seen += n;
      if (rank < seen) return v / 10;
    }
    return bins.at(-1)![0] / 10;
  };
  const q = (x: number) => at(Math.min(total - 1, Math.floor(x * total)));
  return {
    p50_us: q(0.5),
    p90_us: q(0.9),
    p99_us: q(0.99),
    p999_us: q(0.999),
    max_us: at(total - 1),
  };
}

interface PubOut {
  sent: number;
  elapsed_ns: number;
  cpu_ms: number;
  max_lag_us: number;
}

function start(exe: string, args: Record<string, string | number>) {
  const flat = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const child = new Deno.Command(exe, {
    args: flat,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    const dec = new TextDecoder();
    let carry = "";
    for await (const chunk of child.stdout) {
      carry += dec.decode(chunk, { stream: true });
      const parts = carry.split("\n");
      carry = parts.pop()!;
      lines.push(...parts);
    }
    if (carry) lines.push(carry);
  })();
  return { child, lines, done };
}

async function result<T>(p: ReturnType<typeof start>, timeoutMs = 120_000): Promise<T> {
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
  if (!last) throw new Error("a floor program ended without a result");
  return JSON.parse(last) as T;
}

/**
 * Runs one floor point: makes a temp dir (tmpfs unless `fs` is "ext4"), starts the
 * subscribers, waits for each to say "ready", runs the publisher, and checks what came.
 *
 * @param kind The floor.
 * @param p The load shape.
 * @returns The result, or undefined when the floor cannot be built (no gcc).
 */
export async function runFloor(kind: FloorKind, p: FloorPoint): Promise<Result | undefined> {
  const exe = await floorBinary(kind);
  if (exe === undefined) return undefined;
  const fs = p.fs ?? "tmpfs";
  const dir = Deno.makeTempDirSync({
    dir: fs === "tmpfs" ? "/dev/shm" : "/tmp",
    prefix: "fsbus-bench-floor-",
  });
  let path = dir;
  if (kind === "filebus") path = `${dir}/bus`;
  if (kind === "fifo") {
    path = `${dir}/fifo`;
    const mk = new Deno.Command("mkfifo", { args: [path] }).outputSync();
    if (!mk.success) throw new Error("mkfifo failed");
  }
  if (kind === "ring") {
    path = `${dir}/ring`;
    const slots = p.slots ?? Math.max(4096, p.count + 16);
    const init = new Deno.Command(exe, {
      args: ["--role", "init", "--path", path, "--count", String(slots), "--size", String(p.size)],
    }).outputSync();
    if (!init.success) throw new Error("cannot make the floor ring");
  }
  const common = { path, count: p.count, size: p.size, warmup: p.warmup, "idle-ms": 3000 };
  const procs: ReturnType<typeof start>[] = [];
  try {
    const subs = Array.from({ length: p.subscribers }, () => {
      const s = start(exe, { role: "sub", ...common });
      procs.push(s);
      return s;
    });
    if (kind !== "fifo") {
      await waitFor(() => subs.every((s) => s.lines.includes("ready")), 30_000, "floor readers");
    }
    const pub = start(exe, { role: "pub", ...common, rate: p.rate, batch: p.batch ?? 1 });
    procs.push(pub);
    const pubOut = await result<PubOut>(pub);
    const subOuts = await Promise.all(subs.map((s) => result<SubOut>(s)));
    return summarise(p, pubOut, subOuts);
  } finally {
    for (const s of procs) {
      try {
        s.child.kill("SIGKILL");
      } catch {
        // ended
      }
      await s.child.status;
    }
    Deno.removeSync(dir, { recursive: true });
  }
}

function summarise(p: FloorPoint, pub: PubOut, subs: SubOut[]): Result {
  let duplicates = 0;
  let order = 0;
  let delivered = 0;
  let cpu = pub.cpu_ms;
  const rates: number[] = [];
  let overflows = 0;
  for (const s of subs) {
    duplicates += s.duplicates;
    order += s.order;
    delivered += p.lossy ? s.counted : s.distinct;
    cpu += s.cpu_ms;
    overflows += s.overflows;
    const secs = (s.last_ns - s.first_ns) / 1e9;
    if (secs > 0) rates.push((s.received - 1) / secs);
  }
  const expected = p.lossy ? (p.count - p.warmup) * p.subscribers : p.count * p.subscribers;
  const r: Result = {
    transport: p.transport ?? "floor",
    scenario: p.scenario,
    size: p.size,
    rate: p.rate,
    subscribers: p.subscribers,
    fs: p.fs ?? "tmpfs",
    ...(p.rate > 0 ? histPercentiles(subs.map((s) => s.lat_hist)) : {}),
    delivered: p.subscribers === 0 ? pub.sent : delivered,
    expected: p.subscribers === 0 ? p.count : expected,
    duplicates,
    order_violations: order,
    pub_rate: Math.round(pub.sent / (pub.elapsed_ns / 1e9)),
    ...(rates.length ? { sub_rate: Math.round(median(rates)) } : {}),
    cpu_us_per_msg: Math.round((cpu * 1000 / p.count) * 10) / 10,
    notes: [
      "C floor (bench/floor)",
      p.batch && p.batch > 1 && p.rate === 0 ? `batch ${p.batch}` : "",
      overflows ? `${overflows} queue overflows, recovered` : "",
      pub.max_lag_us > 1000 ? `pacer max lag ${Math.round(pub.max_lag_us)} µs` : "",
    ].filter(Boolean).join("; "),
  };
  if (p.lossy && subs.length) {
    r.notes += `; seen ${(100 * delivered / expected).toFixed(1)}%`;
  }
  return r;
}

/**
 * Runs a floor point several times and keeps the median (latency: by p50; otherwise by the
 * subscribers' rate, or the publisher's when there are none).
 *
 * @param times Repetitions.
 * @param kind The floor.
 * @param p The load shape.
 * @returns The median run, with the range in `notes`; undefined without gcc.
 */
export async function repeatFloor(
  times: number,
  kind: FloorKind,
  p: FloorPoint,
): Promise<Result | undefined> {
  const runs: Result[] = [];
  for (let i = 0; i < times; i++) {
    const r = await runFloor(kind, p);
    if (r === undefined) return undefined;
    runs.push(r);
  }
  return medianFloor(runs, p);
}

/**
 * The median of several runs of one floor point, as {@linkcode repeatFloor} keeps it: for a
 * caller that runs them one by one, alternated with other transports' runs of the same point.
 *
 * @param runs The runs (at least one).
 * @param p The load shape they ran.
 * @returns The median run, with the range in `notes` and the checks summed over all runs.
 */
export function medianFloor(runs: Result[], p: FloorPoint): Result {
  if (runs.length === 1) return runs[0]!;
  const key = (r: Result) => (p.rate > 0 ? r.p50_us : r.sub_rate ?? r.pub_rate) ?? 0;
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  const mid = { ...sorted[sorted.length >> 1]! };
  mid.delivered = runs.reduce((n, r) => n + r.delivered, 0);
  mid.expected = runs.reduce((n, r) => n + r.expected, 0);
  mid.duplicates = runs.reduce((n, r) => n + r.duplicates, 0);
  mid.order_violations = runs.reduce((n, r) => n + r.order_violations, 0);
  mid.notes = `${mid.notes}; median of ${runs.length}, ${p.rate > 0 ? "p50" : "rate"} ${
    key(sorted[0]!)
  }–${key(sorted.at(-1)!)}`;
  return mid;
}

/** a ÷ b to three decimals: enough that a goal is never judged on a figure rounded up. */
function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || !(b > 0) || !Number.isFinite(a)) return undefined;
  return Math.round((a / b) * 1000) / 1000;
}

/**
 * fsbus ÷ another result of the same point: p50 and p99 latency, rate (the subscribers' when
 * both have one, else the publishers'), and CPU per message.
 *
 * @param mine fsbus's result.
 * @param other The floor's or a peer's result of the same point.
 * @returns The ratios that both results allow.
 */
export function ratios(mine: Result, other: Result): Ratios {
  const out: Ratios = { of: other.transport };
  const p50 = ratio(mine.p50_us, other.p50_us);
  const p99 = ratio(mine.p99_us, other.p99_us);
  const bothSub = mine.sub_rate !== undefined && other.sub_rate !== undefined;
  const rate = mine.rate === 0
    ? ratio(bothSub ? mine.sub_rate : mine.pub_rate, bothSub ? other.sub_rate : other.pub_rate)
    : undefined;
  const cpu = ratio(mine.cpu_us_per_msg, other.cpu_us_per_msg);
  if (p50 !== undefined) out.p50 = p50;
  if (p99 !== undefined) out.p99 = p99;
  if (rate !== undefined) out.rate = rate;
  if (cpu !== undefined) out.cpu = cpu;
  return out;
}

/**
 * Adds `vs_floor` and `vs_peer` to each result of `transport`, from the results of the same
 * point (scenario, size, rate, subscribers; the floor also on the same file system).
 *
 * @param results Every result of one bench run (changed in place).
 * @param transport fsbus's transport name in them ("msgfs", "filebus", ...).
 * @param peer The peer to compare with ("nats", "zeromq", ...), if any.
 * @param key What else must match, such as the batch size.
 */
export function addRatios(
  results: Result[],
  transport: string,
  peer?: string,
  key: (r: Result) => string = () => "",
): void {
  const same = (a: Result, b: Result) =>
    a.scenario === b.scenario && a.size === b.size && a.rate === b.rate &&
    a.subscribers === b.subscribers && key(a) === key(b);
  for (const r of results) {
    if (r.transport !== transport) continue;
    const floor = results.find((f) => f.transport === "floor" && same(f, r) && f.fs === r.fs);
    if (floor) r.vs_floor = ratios(r, floor);
    // A peer with no file system (NATS, ZeroMQ) stands beside fsbus on tmpfs only.
    const other = peer
      ? results.find((f) =>
        f.transport === peer && same(f, r) && (f.fs === r.fs || (f.fs === "" && r.fs === "tmpfs"))
      )
      : undefined;
    if (other) r.vs_peer = ratios(r, other);
  }
}
