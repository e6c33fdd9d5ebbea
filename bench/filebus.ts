/**
 * Benchmark of filebus (../shared/BENCHMARKS.md): separate producer and consumer processes,
 * one clock (CLOCK_MONOTONIC stamped into each chunk), order and duplicates checked.
 *
 * - lossless: chunks/s and MB/s, 4 KiB and 64 KiB chunks, unpaced, through the library and
 *   (64 KiB) through the CLI pipeline `... | fsbus filebus --lossless producer`;
 * - lossy: latency (p50/p99, scheduled send time to receipt) and the fraction of chunks
 *   seen, at 100 and 1,000 chunks/s, 1 KiB, with 1 and 4 consumers, and the last chunk's
 *   latency (the "latest chunk" figure: the producer keeps time for 100 ms after it, and no
 *   consumer reports before every consumer has it, so the bench's teardown is not counted);
 * - each on tmpfs (/dev/shm) and ext4 (/tmp).
 *
 *   deno run -A bench/filebus.ts            # the full matrix (about three minutes)
 *   deno run -A bench/filebus.ts --quick    # a smoke run (about half a minute; four consumers
 *                                           # on tmpfs only)
 *   deno run -A bench/filebus.ts --only lossy-1024-1000   # scenarios whose name contains this
 *
 * Results are printed as a table and written to bench/results/filebus.json.
 *
 * @module
 */

import { consumer, producer } from "../transports/filebus/mod.ts";
import { addRatios, repeatFloor } from "./_floor.ts";
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
const CLI = new URL("../cli.ts", import.meta.url).pathname;

interface ConsumerReport {
  seqs: number[];
  latenciesUs: number[];
  lastLatencyUs: number | null;
  firstAtMs: number;
  lastAtMs: number;
  bytes: number;
  cpuMs: number;
}

interface ProducerReport {
  elapsedMs: number;
  cpuMs: number;
}

// ---------------------------------------------------------------------------------------------
// Roles, run in child processes.

async function consumerRole(args: Record<string, string>): Promise<void> {
  const lossless = args.mode === "lossless";
  const count = Number(args.count);
  const warmup = Number(args.warmup);
  const ac = new AbortController();
  let stopped = false;
  // The orchestrator closes our stdin to stop a lossy consumer that missed the last chunk.
  (async () => {
    const buf = new Uint8Array(16);
    while ((await Deno.stdin.read(buf)) !== null) { /* ignore */ }
    stopped = true;
    ac.abort();
  })();
  // As the CLI consumer does: block in poll(2) between event-loop turns.
  const sub = consumer(args.file!, { lossless, signal: ac.signal, blockMs: 250 });
  Deno.writeTextFileSync(args.ready!, "ready");
  const report: ConsumerReport = {
    seqs: [],
    latenciesUs: [],
    lastLatencyUs: null,
    firstAtMs: 0,
    lastAtMs: 0,
    bytes: 0,
    cpuMs: 0,
  };
  const cpu0 = cpuTimeMs();
  for await (const chunk of sub) {
    const now = monotonicNs();
    const { sentNs, seq } = readStamp(chunk);
    if (report.seqs.length === 0) report.firstAtMs = performance.now();
    report.lastAtMs = performance.now();
    report.seqs.push(seq);
    report.bytes += chunk.length;
    const us = Number(now - sentNs) / 1000;
    if (seq >= warmup) report.latenciesUs.push(us);
    if (!lossless && seq === count - 1) {
      report.lastLatencyUs = us;
      break;
    }
  }
  report.cpuMs = cpuTimeMs() - cpu0;
  if (!lossless && args.consumers !== undefined) {
    // Report (a JSON of some 20,000 numbers, then the process's exit: milliseconds of CPU)
    // only once every consumer has the last chunk, or after 2 s: on 2 cores, a consumer's
    // report would otherwise take the CPU from those still taking the last chunk, and the
    // "latest chunk" figure would measure the bench's teardown.
    const dir = args.ready!.slice(0, args.ready!.lastIndexOf("/"));
    Deno.writeTextFileSync(`${args.ready}.done`, "");
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && !stopped) {
      let done = 0;
      for (const e of Deno.readDirSync(dir)) if (e.name.endsWith(".done")) done++;
      if (done >= Number(args.consumers)) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  console.log(JSON.stringify(report));
  Deno.exit(0);
}

async function producerRole(args: Record<string, string>): Promise<void> {
  const lossless = args.mode === "lossless";
  const count = Number(args.count);
  const size = Number(args.size);
  const rate = Number(args.rate);
  const out = producer(args.file!, { lossless });
  const payload = new Uint8Array(size);
  const cpu0 = cpuTimeMs();
  const t0 = performance.now();
  let idleMs = 0;
  if (rate > 0) {
    // Lossy writes never wait: send synchronously from the pacing loop.
    const pending: Promise<void>[] = [];
    // FILEBUS_BENCH_STAMP=sent stamps the actual send time, leaving out timer lateness.
    const stampSent = Deno.env.get("FILEBUS_BENCH_STAMP") === "sent";
    await paced(rate, count, (seq, scheduled) => {
      stamp(payload, seq, stampSent ? monotonicNs() : scheduled);
      pending.push(out.write(payload.slice()));
      if (pending.length > 64) pending.splice(0, 32);
    });
    await Promise.all(pending);
    if (!lossless) {
      // The last chunk stays FILE. For 100 ms this process keeps time as it did between
      // chunks (sending nothing), then closes and exits: the last chunk is then taken as every
      // other one was, and the "latest chunk" figure measures neither this process's teardown
      // (on 2 cores it takes the CPU from the consumers) nor a machine gone idle. (On this VM,
      // with the producer asleep after the last chunk, a consumer woke 1.2-23 ms after the
      // rename, against 0.3-0.5 ms with the producer still keeping time: see the README.)
      const idle0 = performance.now();
      await paced(rate, Math.ceil(rate / 10), () => {});
      idleMs = performance.now() - idle0;
    }
  } else {
    for (let seq = 0; seq < count; seq++) {
      stamp(payload, seq, monotonicNs());
      await out.write(payload);
    }
  }
  await out.close();
  const report: ProducerReport = {
    elapsedMs: performance.now() - t0 - idleMs,
    cpuMs: cpuTimeMs() - cpu0,
  };
  console.log(JSON.stringify(report));
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function readJson<T>(child: Deno.ChildProcess): Promise<T> {
  const text = await new Response(child.stdout).text();
  await child.status;
  return JSON.parse(text.trim().split("\n").at(-1)!) as T;
}

interface Scenario {
  mode: "lossless" | "lossy";
  size: number;
  rate: number;
  count: number;
  warmup: number;
  consumers: number;
  fs: "tmpfs" | "ext4";
}

async function runOnce(s: Scenario): Promise<Result> {
  const base = s.fs === "tmpfs" ? "/dev/shm" : "/tmp";
  const dir = Deno.makeTempDirSync({ dir: base, prefix: "fsbus-bench-filebus-" });
  const file = `${dir}/bus`;
  const children: Deno.ChildProcess[] = [];
  try {
    const subs = Array.from({ length: s.consumers }, (_, i) => {
      const c = spawnRole(SELF, "consumer", {
        file,
        mode: s.mode,
        count: s.count,
        warmup: s.warmup,
        consumers: s.consumers,
        ready: `${dir}/ready-${i}`,
      }, "piped");
      children.push(c);
      return c;
    });
    await waitUntil(
      () => subs.every((_, i) => exists(`${dir}/ready-${i}`)),
      30_000,
      "consumers to be ready",
    );
    const pub = spawnRole(SELF, "producer", {
      file,
      mode: s.mode,
      count: s.count,
      size: s.size,
      rate: s.rate,
    }, "piped");
    children.push(pub);
    await pub.stdin.close();
    const pubReport = await readJson<ProducerReport>(pub);
    // Lossless: the EOF marker ends one consumer; lossy: each stops at the last chunk. Give
    // stragglers a moment, then close their stdin so they report what they saw.
    const reportsP = subs.map((c) => readJson<ConsumerReport>(c));
    const grace = setTimeout(() => {
      for (const c of subs) c.stdin.close().catch(() => {});
    }, s.mode === "lossless" ? 500 : 2000);
    const reports = await Promise.all(reportsP);
    clearTimeout(grace);
    for (const c of subs) await c.stdin.close().catch(() => {});
    return summarise(s, pubReport, reports);
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // done
      }
      await c.status;
    }
    Deno.removeSync(dir, { recursive: true });
  }
}

function summarise(s: Scenario, pub: ProducerReport, subs: ConsumerReport[]): Result {
  const counted = s.count - s.warmup;
  let duplicates = 0;
  let order = 0;
  let delivered = 0;
  const latencies: number[] = [];
  for (const r of subs) {
    const chk = checkSequence(r.seqs);
    duplicates += chk.duplicates;
    order += chk.order;
    delivered += r.seqs.filter((q) => q >= s.warmup).length - 0;
    latencies.push(...r.latenciesUs);
  }
  const cpuMs = pub.cpuMs + subs.reduce((n, r) => n + r.cpuMs, 0);
  const result: Result = {
    transport: "filebus",
    scenario: s.mode === "lossless" ? "lossless" : "lossy",
    size: s.size,
    rate: s.rate,
    subscribers: s.consumers,
    fs: s.fs,
    delivered,
    expected: s.mode === "lossless" ? counted : counted * s.consumers,
    duplicates,
    order_violations: order,
    pub_rate: Math.round(s.count / (pub.elapsedMs / 1000)),
    cpu_us_per_msg: Math.round((cpuMs * 1000 / s.count) * 10) / 10,
  };
  if (s.mode === "lossless") {
    // Across consumers: from the first chunk taken to the last.
    const first = Math.min(...subs.filter((r) => r.seqs.length).map((r) => r.firstAtMs));
    const last = Math.max(...subs.map((r) => r.lastAtMs));
    const all = subs.flatMap((r) => r.seqs);
    const distinct = new Set(all).size;
    const rate = (all.length - 1) / ((last - first) / 1000);
    result.sub_rate = Math.round(rate);
    result.delivered = distinct;
    result.expected = s.count;
    result.notes = `${(rate * s.size / 1e6).toFixed(0)} MB/s`;
  } else {
    Object.assign(result, percentiles(latencies));
    const seen = result.delivered / result.expected;
    const lasts = subs.map((r) => r.lastLatencyUs);
    const lastSeen = lasts.filter((x) => x !== null) as number[];
    result.notes = `seen ${(seen * 100).toFixed(1)}%, last chunk seen by ${lastSeen.length}/` +
      `${subs.length} after ${lastSeen.length ? Math.round(median(lastSeen)) : "-"} µs`;
  }
  return result;
}

async function runCliPipeline(fs: "tmpfs" | "ext4", mib: number): Promise<Result> {
  const base = fs === "tmpfs" ? "/dev/shm" : "/tmp";
  const dir = Deno.makeTempDirSync({ dir: base, prefix: "fsbus-bench-filebus-" });
  const file = `${dir}/bus`;
  try {
    const script = `
      deno run -A --quiet "${CLI}" filebus --lossless --block-size 65536 --filename "${file}" consumer | wc -c > "${dir}/count" &
      c=$!
      start=$(date +%s%N)
      head -c ${mib}M /dev/zero | deno run -A --quiet "${CLI}" filebus --lossless --block-size 65536 --filename "${file}" producer
      wait $c
      end=$(date +%s%N)
      echo $(( (end - start) / 1000 ))`;
    const out = await new Deno.Command("bash", { args: ["-c", script], stdout: "piped" }).output();
    const us = Number(new TextDecoder().decode(out.stdout).trim());
    const bytes = Number(Deno.readTextFileSync(`${dir}/count`).trim());
    const mbs = bytes / us; // bytes per µs = MB/s
    return {
      transport: "filebus-cli",
      scenario: "lossless",
      size: 65536,
      rate: 0,
      subscribers: 1,
      fs,
      delivered: bytes,
      expected: mib << 20,
      duplicates: 0,
      order_violations: 0,
      notes: `${mbs.toFixed(0)} MB/s through stdin/stdout, process start included (bytes)`,
    };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

function medianResult(rs: Result[]): Result {
  // The run with the median consumer rate (lossless) or median p50 (lossy), with the range.
  const key = (r: Result) => r.sub_rate ?? r.p50_us ?? 0;
  const sorted = [...rs].sort((a, b) => key(a) - key(b));
  const mid = { ...sorted[sorted.length >> 1]! };
  if (rs.length > 1) {
    const lo = key(sorted[0]!);
    const hi = key(sorted.at(-1)!);
    mid.notes = `${mid.notes ?? ""}; median of ${rs.length}, range ${lo}–${hi}`;
  }
  return mid;
}

/**
 * Runs the filebus benchmark matrix.
 *
 * @param opts `quick` for a smoke run of a few seconds.
 * @returns One result per point (the median of the repetitions).
 */
export async function run(opts: { quick: boolean; only?: string }): Promise<Result[]> {
  const quick = opts.quick;
  const reps = quick ? 1 : 3;
  const scenarios: Scenario[] = [];
  for (const fs of ["tmpfs", "ext4"] as const) {
    scenarios.push(
      {
        mode: "lossless",
        size: 4096,
        rate: 0,
        count: quick ? 2000 : 20_000,
        warmup: 0,
        consumers: 1,
        fs,
      },
      {
        mode: "lossless",
        size: 65536,
        rate: 0,
        count: quick ? 1000 : 10_000,
        warmup: 0,
        consumers: 1,
        fs,
      },
      {
        mode: "lossy",
        size: 1024,
        rate: 100,
        count: quick ? 150 : 1100,
        warmup: quick ? 50 : 100,
        consumers: 1,
        fs,
      },
      {
        mode: "lossy",
        size: 1024,
        rate: 1000,
        count: quick ? 1500 : 11_000,
        warmup: quick ? 500 : 1000,
        consumers: 1,
        fs,
      },
    );
    if (!quick || fs === "tmpfs") {
      scenarios.push({
        mode: "lossy",
        size: 1024,
        rate: 1000,
        count: quick ? 1500 : 11_000,
        warmup: quick ? 500 : 1000,
        consumers: 4,
        fs,
      });
    }
  }
  const results: Result[] = [];
  const only = opts.only ?? "";
  for (const s of scenarios) {
    const name = `${s.mode}-${s.size}-${s.rate}-${s.consumers}-${s.fs}`;
    if (!name.includes(only)) continue;
    const n = s.mode === "lossy" && !quick ? 1 : reps;
    const rs: Result[] = [];
    for (let i = 0; i < n; i++) rs.push(await runOnce(s));
    const r = medianResult(rs);
    console.error(row(r));
    results.push(r);
    if (s.mode === "lossy") {
      // The floor: flock + write + rename over FILE, read by a C inotify reader.
      const f = await repeatFloor(n, "filebus", {
        scenario: "lossy",
        size: s.size,
        rate: s.rate,
        subscribers: s.consumers,
        count: s.count,
        warmup: s.warmup,
        fs: s.fs,
        lossy: true,
      });
      if (f) {
        console.error(row(f));
        results.push(f);
      }
    }
  }
  for (const fs of quick ? ["tmpfs"] as const : ["tmpfs", "ext4"] as const) {
    if (!`cli-lossless-${fs}`.includes(only)) continue;
    const r = await runCliPipeline(fs, quick ? 64 : 512);
    console.error(row(r));
    results.push(r);
  }
  addRatios(results, "filebus");
  return results;
}

if (import.meta.main) {
  const flags = roleArgs();
  if (flags.role === "consumer") await consumerRole(flags);
  else if (flags.role === "producer") await producerRole(flags);
  else {
    checkBenchFlags(import.meta.url, ["--quick", "--only"]);
    const quick = flags.quick === "true";
    // --only SUBSTRING picks scenarios by name, such as "lossy-1024-1000-1-ext4" or "cli".
    const before = loadAverage();
    const results = await run({ quick, ...(flags.only ? { only: flags.only } : {}) });
    const load = `${before}–${loadAverage()}`;
    console.log("");
    for (const r of results) console.log(row(r));
    Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(
      new URL(`./results/filebus${quick ? "-quick" : ""}.json`, import.meta.url),
      JSON.stringify({ date: new Date().toISOString(), load, results }, null, 2) + "\n",
    );
  }
}
