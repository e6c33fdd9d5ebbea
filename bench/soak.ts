/**
 * Soak of the directory bus: one publisher at a steady rate with the bus's default TTL (so
 * messages pile up and sweeps run), N subscribers in their own processes, and every few
 * seconds the resident memory (VmRSS) and open descriptors of each subscriber (and of the
 * publisher). A subscriber whose memory or descriptors grow with the bus fails the point.
 *
 *   deno run -A bench/soak.ts                          # 10 minutes at 5k msgs/s, 2 subscribers
 *   deno run -A bench/soak.ts --duration 2m --rate 5000 --subscribers 2
 *   deno run -A bench/soak.ts --quick                  # 20 s at 2k msgs/s
 *
 * Other flags: --size BYTES (64), --interval SECONDS between samples (5), --ttl DURATION (the
 * bus's TTL; default: none set, so the default of one hour), --dir PARENT (/dev/shm).
 * tmpfs keeps each message in a page of RAM: 10 minutes at 5k msgs/s holds 3 M files (about
 * 12 GiB); the bus is removed at the end.
 *
 * Results are printed and written to bench/results/soak.json (soak-quick.json with --quick):
 * the usual result record plus `samples` (seconds, RSS in KiB and fds per subscriber).
 *
 * @module
 */

import * as msgfs from "../transports/msgfs/mod.ts";
import {
  checkBenchFlags,
  cpuTimeMs,
  monotonicNs,
  paced,
  readLine,
  readStamp,
  type Result,
  roleArgs,
  row,
  spawnRole,
  stamp,
} from "./_lib.ts";

const SELF = new URL(import.meta.url).pathname;

/** One sample of the processes' resources. */
interface Sample {
  /** Seconds since the publisher started. */
  t_s: number;
  /** VmRSS of each subscriber, KiB. */
  sub_rss_kib: number[];
  /** Open descriptors of each subscriber. */
  sub_fds: number[];
  /** Messages each subscriber had delivered. */
  sub_delivered: number[];
  /** Messages (files) in the bus. */
  in_bus: number;
  /** VmRSS and descriptors of the publisher. */
  pub_rss_kib: number;
  pub_fds: number;
}

function rssKiB(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function openFds(pid: number): number {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
    return n;
  } catch {
    return NaN;
  }
}

function parseSeconds(raw: string): number {
  const m = raw.match(/^(\d+(?:\.\d+)?)(ms|s|m|h)?$/);
  if (!m) throw new Error(`bad duration "${raw}" (use 30s, 2m, 1h)`);
  const n = Number(m[1]);
  return m[2] === "ms" ? n / 1000 : m[2] === "m" ? n * 60 : m[2] === "h" ? n * 3600 : n;
}

// ---------------------------------------------------------------------------------------------
// Roles run in child processes.

/** A subscriber that keeps only counters: what it delivered goes to a file every second. */
async function subRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  let received = 0;
  let duplicates = 0;
  let violations = 0;
  let last = -1;
  // Waits in poll(2) on its own thread as `fsbus sub` does, so the first next() blocks: say
  // "ready" first, and replay what came before the watch (the bus starts empty).
  const sub = msgfs.subscribe(args.dir!, { blockMs: 60_000, since: "all" });
  const it = sub[Symbol.asyncIterator]();
  console.log("ready");
  let next = it.next();
  const progress = args.progress!;
  let reported = 0;
  let timer = setTimeout(() => void sub.close(), 120_000);
  for (;;) {
    const r = await next;
    if (r.done) break;
    const { seq } = readStamp(r.value.data);
    received++;
    if (seq === last) duplicates++;
    else if (seq < last) violations++;
    last = Math.max(last, seq);
    if (received >= count) break;
    if (performance.now() - reported > 1000) {
      reported = performance.now();
      Deno.writeTextFileSync(progress, `${received}\n`);
      clearTimeout(timer);
      timer = setTimeout(() => void sub.close(), 30_000);
    }
    next = it.next();
  }
  clearTimeout(timer);
  Deno.writeTextFileSync(progress, `${received}\n`);
  const stats = sub.stats;
  await sub.close();
  console.log(JSON.stringify({
    received,
    duplicates,
    violations,
    remembered: stats.remembered,
    rescans: stats.rescans,
    cpuMs: cpuTimeMs(),
  }));
}

async function pubRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  const rate = Number(args.rate);
  const payload = new Uint8Array(Number(args.size));
  const t0 = performance.now();
  const cpu0 = cpuTimeMs();
  // Sweeping as fsbus pub does (the bus's TTL; the default is one hour).
  await using pub = new msgfs.Publisher(args.dir!);
  console.log("ready");
  await paced(rate, count, (seq, at) => {
    stamp(payload, seq, at);
    pub.publish(payload);
  });
  const secs = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ pubRate: count / secs, cpuMs: cpuTimeMs() - cpu0 }));
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

/** Options of one soak point. */
export interface SoakOptions {
  /** Seconds to publish. */
  durationS: number;
  /** Messages per second. */
  rate: number;
  /** Subscriber processes. */
  subscribers: number;
  /** Payload bytes (at least 16). */
  size: number;
  /** Seconds between samples. */
  intervalS: number;
  /** The bus's TTL in milliseconds (undefined: the default). */
  ttlMs?: number;
  /** Where the bus is made. */
  parent: string;
}

/**
 * Runs one soak point.
 *
 * @param o The point.
 * @returns The result and the samples.
 */
export async function soak(o: SoakOptions): Promise<{ result: Result; samples: Sample[] }> {
  const dir = Deno.makeTempDirSync({ dir: o.parent, prefix: "fsbus-soak-" });
  const bus = `${dir}/bus`;
  msgfs.init(bus, o.ttlMs === undefined ? {} : { ttlMs: o.ttlMs });
  const count = Math.round(o.rate * o.durationS);
  const subs = Array.from({ length: o.subscribers }, (_, i) => {
    const progress = `${dir}/progress-${i}`;
    const child = spawnRole(SELF, "sub", { dir: bus, count, progress });
    return { child, progress, reader: child.stdout.getReader(), state: { buf: "" } };
  });
  const samples: Sample[] = [];
  try {
    for (const s of subs) await readLine(s.reader, s.state);
    const pub = spawnRole(SELF, "pub", { dir: bus, count, rate: o.rate, size: o.size });
    const pubReader = pub.stdout.getReader();
    const pubState = { buf: "" };
    await readLine(pubReader, pubState);
    const t0 = monotonicNs();
    const pubDone = readLine(pubReader, pubState);
    let finished = false;
    void pubDone.then(() => (finished = true), () => (finished = true));
    const delivered = (p: string) => {
      try {
        return Number(Deno.readTextFileSync(p).trim()) || 0;
      } catch {
        return 0;
      }
    };
    const inBus = () => {
      let n = 0;
      for (const e of Deno.readDirSync(bus)) if (!e.name.startsWith(".")) n++;
      return n;
    };
    const sample = () => {
      if (subs.some((s) => isNaN(rssKiB(s.child.pid)))) return; // done already
      const s: Sample = {
        t_s: Math.round(Number(monotonicNs() - t0) / 1e8) / 10,
        sub_rss_kib: subs.map((s) => rssKiB(s.child.pid)),
        sub_fds: subs.map((s) => openFds(s.child.pid)),
        sub_delivered: subs.map((s) => delivered(s.progress)),
        in_bus: inBus(),
        pub_rss_kib: rssKiB(pub.pid),
        pub_fds: openFds(pub.pid),
      };
      samples.push(s);
      console.error(
        `soak: ${s.t_s}s in bus ${s.in_bus} delivered ${s.sub_delivered.join("/")} ` +
          `rss ${s.sub_rss_kib.map((k) => Math.round(k / 1024)).join("/")} MiB ` +
          `fds ${s.sub_fds.join("/")} (publisher ${Math.round(s.pub_rss_kib / 1024)} MiB, ` +
          `${s.pub_fds} fds)`,
      );
    };
    while (!finished) {
      await Promise.race([pubDone, new Promise((r) => setTimeout(r, o.intervalS * 1000))]);
      if (!finished) sample();
    }
    const pubOut = JSON.parse(await pubDone) as { pubRate: number; cpuMs: number };
    await pub.status;
    pubReader.releaseLock();
    const reports = [];
    for (const s of subs) {
      reports.push(
        JSON.parse(await readLine(s.reader, s.state)) as {
          received: number;
          duplicates: number;
          violations: number;
          remembered: number;
          rescans: number;
        },
      );
      await s.child.status;
    }
    // Growth: the mean of the last third of the samples against the mean of the second third
    // (the first third is warm-up).
    const third = Math.max(1, Math.floor(samples.length / 3));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const rssMiB = (from: number, to: number) =>
      mean(samples.slice(from, to).flatMap((s) => s.sub_rss_kib)) / 1024;
    const mid = rssMiB(third, 2 * third);
    const end = rssMiB(2 * third, samples.length);
    const fdsAll = samples.flatMap((s) => s.sub_fds);
    const result: Result = {
      transport: "msgfs",
      scenario: "soak",
      size: o.size,
      rate: o.rate,
      subscribers: o.subscribers,
      fs: o.parent.startsWith("/dev/shm") ? "tmpfs" : "",
      delivered: reports.reduce((a, r) => a + r.received, 0),
      expected: count * o.subscribers,
      duplicates: reports.reduce((a, r) => a + r.duplicates, 0),
      order_violations: reports.reduce((a, r) => a + r.violations, 0),
      pub_rate: Math.round(pubOut.pubRate),
      notes: `${o.durationS} s; subscriber RSS ${mid.toFixed(1)} MiB (middle third) → ` +
        `${end.toFixed(1)} MiB (last third), max ${
          (Math.max(...samples.flatMap((s) => s.sub_rss_kib)) / 1024).toFixed(1)
        } MiB; fds ${Math.min(...fdsAll)}–${Math.max(...fdsAll)}; remembered at the end ${
          reports.map((r) => r.remembered).join("/")
        }; rescans ${reports.map((r) => r.rescans).join("/")}; ${
          samples.at(-1)!.in_bus
        } messages in the bus`,
    };
    return { result, samples };
  } finally {
    for (const s of subs) {
      try {
        s.child.kill();
      } catch {
        // ended
      }
      await s.child.status;
      s.reader.releaseLock();
      await s.child.stdout.cancel().catch(() => {});
    }
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * Runs the soak as `bench/run.ts` does for every benchmark: a short one with `quick`.
 *
 * @param opts `quick` for a 20-second smoke run.
 * @returns The results.
 */
export async function run(opts: { quick: boolean }): Promise<Result[]> {
  const o: SoakOptions = opts.quick
    ? { durationS: 20, rate: 2000, subscribers: 2, size: 64, intervalS: 2, parent: "/dev/shm" }
    : { durationS: 600, rate: 5000, subscribers: 2, size: 64, intervalS: 5, parent: "/dev/shm" };
  const { result, samples } = await soak(o);
  save(opts.quick, [result], samples);
  return [result];
}

function save(quick: boolean, results: Result[], samples: Sample[]): void {
  Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  Deno.writeTextFileSync(
    new URL(`./results/soak${quick ? "-quick" : ""}.json`, import.meta.url),
    JSON.stringify({ date: new Date().toISOString(), results, samples }, null, 2) + "\n",
  );
}

if (import.meta.main) {
  const args = roleArgs();
  if (args.role === "sub") await subRole(args);
  else if (args.role === "pub") await pubRole(args);
  else {
    checkBenchFlags(import.meta.url, [
      "--quick",
      "--duration",
      "--rate",
      "--subscribers",
      "--size",
      "--interval",
      "--dir",
      "--ttl",
    ]);
    const quick = args.quick === "true";
    const o: SoakOptions = {
      durationS: parseSeconds(args.duration ?? (quick ? "20s" : "10m")),
      rate: Number(args.rate ?? (quick ? 2000 : 5000)),
      subscribers: Number(args.subscribers ?? 2),
      size: Math.max(16, Number(args.size ?? 64)),
      intervalS: parseSeconds(args.interval ?? (quick ? "2" : "5")),
      parent: args.dir ?? "/dev/shm",
    };
    if (args.ttl !== undefined) o.ttlMs = parseSeconds(args.ttl) * 1000;
    const { result, samples } = await soak(o);
    save(quick, [result], samples);
    console.log(row(result));
  }
}
