/**
 * Benchmarks for mq groups (see ../shared/BENCHMARKS.md):
 *
 * - live write-to-reader latency, 1 KiB, at 1k and 10k msgs/s: a writer process and a
 *   reader process (replay off), one clock (stamp/readStamp), first 1,000 not counted;
 *   NATS core beside it (a nats-server on loopback, publisher and subscriber processes as
 *   in bench/msgfs.ts), run for run alternated with it;
 * - replay-all rate: 100k × 1 KiB messages already in a group, read by a fresh process
 *   from the first to the last, with each message's CRC checked (as readers do) and, in the
 *   same run and interleaved, without (`verify: false`): what the check costs per message;
 * - the cost of the `order` bookkeeping per write: the same writes with and without it;
 * - mounted (FUSE, `fsbus mq mount`): one writer process doing one write(2) per 1 KiB message
 *   through the mount (unpaced rate, timed after 30,000 untimed messages), alone (subscribers
 *   0: the issue's "one writer"; the mount and the C floor) and with a read(2) blocked in
 *   another process, and live latency from write(2) to a read(2) blocked in another process
 *   at 1k msgs/s; the same writer and reader through the C FUSE floor (bench/floor/fuse.c: the least any FUSE server does per message), the same floor
 *   spinning up to 50 µs before it blocks (`floor-spin`: the mount spins so by default, its
 *   `--spin-us`) and over a FIFO (one kernel hop), alternated in the same run;
 *   the mount with `--write-behind` (`mq-fuse-wb`: each write(2) answered before its commit,
 *   the opt-in mode) gets the same three points.
 *
 * Run: `deno run -A bench/mq.ts [--quick] [--fuse-only | --replay-only] [--spin-us N]`.
 * Prints a table; writes bench/results/mq.json (mq-fuse.json, mq-replay.json for the partial
 * runs). `--ab floor,floor-spin [--reps 5] [--count 5000] [--no-alone] [--no-latency]`
 * alternates mounted transports (mq-fuse, mq-fuse-wb, floor, floor-spin, fifo, and mq-fuse-nospin:
 * the mount with `--spin-us 0`) for a quick A/B and writes nothing. The mounts spin as the
 * spinning floor does (`--spin-us N`, default 50 µs, the mount's own default).
 *
 * @module
 */

import { cpuUsage } from "node:process";
import { MqGroup, MqReader } from "../transports/mq/mod.ts";
import { addRatios, floorBinary, repeatFloor } from "./_floor.ts";
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
  roleArg,
  roleArgs,
  spawnRole,
  stamp,
  waitFor,
} from "./_lib.ts";
import { runPoint as natsPoint, startNats } from "./msgfs.ts";

const SELF = new URL(import.meta.url).pathname;
const WARMUP = 1000;

/** Reads lines from a child's stdout. */
function lines(child: Deno.ChildProcess): AsyncIterator<string> {
  return child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
    new TransformStream<string, string>(
      {
        buf: "",
        transform(chunk, ctl) {
          // deno-lint-ignore no-explicit-any
          const self = this as any;
          self.buf += chunk;
          let i: number;
          while ((i = self.buf.indexOf("\n")) >= 0) {
            ctl.enqueue(self.buf.slice(0, i));
            self.buf = self.buf.slice(i + 1);
          }
        },
      } as Transformer<string, string> & { buf: string },
    ),
  )[Symbol.asyncIterator]();
}

// ---- roles (separate processes) -----------------------------------------------------------

async function latencyReader(): Promise<void> {
  const group = roleArg("group");
  const count = Number(roleArg("count"));
  const r = MqReader.open(group, ["s"], { replay: "off", blockMs: 250 });
  console.log("ready");
  const lat = new Float64Array(count);
  const seqs: number[] = [];
  let n = 0;
  const t0 = monotonicNs();
  for await (const batch of r.batches()) {
    const now = monotonicNs();
    for (const m of batch) {
      const { sentNs, seq } = readStamp(m.data);
      if (n < count) lat[n] = Number(now - sentNs) / 1000;
      seqs.push(seq);
      n++;
    }
  }
  const secs = Number(monotonicNs() - t0) / 1e9;
  const check = checkSequence(seqs);
  console.log(JSON.stringify({
    delivered: n,
    duplicates: check.duplicates,
    order: check.order,
    samples: Array.from(lat.subarray(WARMUP, Math.min(n, count))),
    cpuMs: cpuTimeMs(),
    rate: n / secs,
  }));
}

async function latencyWriter(): Promise<void> {
  const g = MqGroup.open(roleArg("group"));
  const count = Number(roleArg("count"));
  const rate = Number(roleArg("rate"));
  const size = Number(roleArg("size"));
  const payload = new Uint8Array(size);
  const t0 = monotonicNs();
  await paced(rate, count, (seq, when) => {
    stamp(payload, seq, when);
    g.write("s", payload);
  });
  const secs = Number(monotonicNs() - t0) / 1e9;
  g.write("s", new Uint8Array());
  g.close();
  console.log(JSON.stringify({ cpuMs: cpuTimeMs(), rate: count / secs }));
}

async function replayReader(): Promise<void> {
  const group = roleArg("group");
  const verify = roleArg("verify") === "true";
  const t0 = monotonicNs();
  const cpu0 = cpuUsage();
  const r = MqReader.open(group, ["s"], { replay: "all", blockMs: 250, verify });
  const seqs: number[] = [];
  let bytes = 0;
  for await (const batch of r.batches()) {
    for (const m of batch) {
      seqs.push(readStamp(m.data).seq);
      bytes += m.data.length;
    }
  }
  const secs = Number(monotonicNs() - t0) / 1e9;
  const cpu1 = cpuUsage(cpu0);
  const check = checkSequence(seqs);
  console.log(JSON.stringify({
    loopCpuUs: cpu1.user + cpu1.system,
    delivered: seqs.length,
    duplicates: check.duplicates,
    order: check.order,
    rate: seqs.length / secs,
    mbps: bytes / secs / 1e6,
    cpuMs: cpuTimeMs(),
  }));
  await Promise.resolve();
}

/** Writes `count` stamped messages to a file (a stream on the mount, or a FIFO), one
 * write(2) each, paced or not; on the mount, ends with an end of file (`: > stream`). */
async function fileWriter(): Promise<void> {
  const path = roleArg("path");
  const count = Number(roleArg("count"));
  const rate = Number(roleArg("rate"));
  const size = Number(roleArg("size"));
  const warmup = Number(roleArgs().warmup ?? 0);
  const f = Deno.openSync(path, { write: true });
  const payload = new Uint8Array(size);
  // Untimed first messages (unpaced points): the server's and this writer's JIT warm-up.
  for (let seq = 0; seq < warmup; seq++) {
    stamp(payload, seq, monotonicNs());
    if (f.writeSync(payload) !== size) throw new Error("short write");
  }
  console.log("timed"); // the bench samples the server's CPU time from here
  const cpu0 = cpuTimeMs();
  const t0 = monotonicNs();
  await paced(rate, count, (seq, when) => {
    stamp(payload, warmup + seq, rate > 0 ? when : monotonicNs());
    if (f.writeSync(payload) !== size) throw new Error("short write");
  });
  const secs = Number(monotonicNs() - t0) / 1e9;
  const cpuMs = cpuTimeMs() - cpu0;
  f.close();
  if (roleArgs().eof === "true") Deno.openSync(path, { write: true, truncate: true }).close();
  console.log(JSON.stringify({ cpuMs, rate: count / secs }));
}

/** Reads `count` messages from a file with blocking read(2)s (`exact`: `size` bytes make a
 * message, for a FIFO; otherwise one read is one message); its rate and CPU time are taken
 * after the first `warmup`. */
function fileReader(): void {
  const path = roleArg("path");
  const count = Number(roleArg("count"));
  const warmup = Number(roleArgs().warmup ?? 0);
  const size = Number(roleArg("size"));
  const exact = roleArgs().exact === "true";
  const lat = new Float64Array(count);
  const seqs: number[] = [];
  const buf = new Uint8Array(65536);
  if (exact) console.log("ready"); // a FIFO's open waits for the writer
  const f = Deno.openSync(path, { read: true });
  if (!exact) console.log("ready");
  let n = 0;
  let have = 0;
  let t0 = monotonicNs();
  let cpu0 = cpuTimeMs();
  while (n < count) {
    if (n === warmup && warmup > 0 && have === 0) {
      t0 = monotonicNs();
      cpu0 = cpuTimeMs();
    }
    const got = f.readSync(exact ? buf.subarray(have, size) : buf);
    if (got === null || got === 0) break;
    have += got;
    if (exact && have < size) continue;
    const now = monotonicNs();
    const { sentNs, seq } = readStamp(buf);
    lat[n++] = Number(now - sentNs) / 1000;
    seqs.push(seq);
    have = 0;
  }
  const secs = Number(monotonicNs() - t0) / 1e9;
  f.close();
  const check = checkSequence(seqs);
  console.log(JSON.stringify({
    delivered: n,
    duplicates: check.duplicates,
    order: check.order,
    samples: Array.from(lat.subarray(Math.min(WARMUP, n >> 2), n)),
    cpuMs: cpuTimeMs() - cpu0,
    rate: (n - warmup) / secs,
  }));
}

// ---- scenarios ----------------------------------------------------------------------------

function freshGroup(): { path: string; dispose(): void } {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-mq-" });
  const path = `${dir}/g`;
  MqGroup.create(path).close();
  return { path, dispose: () => Deno.removeSync(dir, { recursive: true }) };
}

async function latencyPoint(rate: number, count: number, size: number): Promise<Result> {
  const g = freshGroup();
  try {
    const setup = MqGroup.open(g.path);
    setup.createStream("s");
    setup.close();
    const reader = spawnRole(SELF, "latency-reader", { group: g.path, count });
    const rl = lines(reader);
    const ready = await rl.next();
    if (ready.value !== "ready") throw new Error("reader did not start");
    const writer = spawnRole(SELF, "latency-writer", { group: g.path, count, rate, size });
    const wl = lines(writer);
    const w = JSON.parse((await wl.next()).value as string);
    const r = JSON.parse((await rl.next()).value as string);
    await writer.status;
    await reader.status;
    return {
      transport: "mq",
      scenario: "latency",
      size,
      rate,
      subscribers: 1,
      fs: "tmpfs",
      ...percentiles(r.samples),
      delivered: r.delivered,
      expected: count,
      duplicates: r.duplicates,
      order_violations: r.order,
      pub_rate: Math.round(w.rate),
      ...(r.rate === undefined ? {} : { sub_rate: Math.round(r.rate) }),
      cpu_us_per_msg: Math.round(((w.cpuMs + r.cpuMs) * 1000 / count) * 10) / 10,
      notes: `writer and reader processes; replay off; first ${WARMUP} not counted`,
    };
  } finally {
    g.dispose();
  }
}

/**
 * Replays `count` messages of `size` bytes in a fresh process, checking each message's CRC
 * (`verify`, the default) or not (to measure what the check costs, in the same run).
 */
async function replayPoint(count: number, size: number, verify: boolean): Promise<Result> {
  const g = freshGroup();
  try {
    const w = MqGroup.open(g.path);
    const payload = new Uint8Array(size);
    for (let i = 0; i < count; i++) {
      stamp(payload, i, 0n);
      w.write("s", payload);
    }
    w.write("s", new Uint8Array());
    w.close();
    const reader = spawnRole(SELF, "replay-reader", { group: g.path, verify: String(verify) });
    const r = JSON.parse((await lines(reader).next()).value as string);
    await reader.status;
    return {
      transport: "mq",
      scenario: verify ? "replay-all" : "replay-all-unverified",
      size,
      rate: 0,
      subscribers: 1,
      fs: "tmpfs",
      delivered: r.delivered,
      expected: count,
      duplicates: r.duplicates,
      order_violations: r.order,
      sub_rate: Math.round(r.rate),
      cpu_us_per_msg: Math.round((r.cpuMs * 1000 / count) * 100) / 100,
      notes: `fresh process, open to last message; ${Math.round(r.mbps)} MB/s; read loop ${
        (r.loopCpuUs / count).toFixed(2)
      } us/msg CPU; ${verify ? "each message's CRC checked" : "no CRC check (for comparison)"}`,
    };
  } finally {
    g.dispose();
  }
}

function orderCostPoint(count: number, size: number, reps: number): Result {
  const g = freshGroup();
  try {
    const w = MqGroup.open(g.path);
    const payload = new Uint8Array(size);
    for (const s of ["0", "1", "2", "3"]) w.createStream(s);
    const per = (order: boolean) => {
      const t0 = monotonicNs();
      for (let i = 0; i < count; i++) w.write(String(i & 3), payload, { order });
      return Number(monotonicNs() - t0) / 1000 / count;
    };
    per(true); // warm up
    const withOrder: number[] = [];
    const without: number[] = [];
    for (let i = 0; i < reps; i++) {
      withOrder.push(per(true));
      without.push(per(false));
    }
    w.close();
    const a = median(withOrder);
    const b = median(without);
    return {
      transport: "mq",
      scenario: "order-cost",
      size,
      rate: 0,
      subscribers: 0,
      fs: "tmpfs",
      delivered: count * reps * 2,
      expected: count * reps * 2,
      duplicates: 0,
      order_violations: 0,
      pub_rate: Math.round(1e6 / a),
      notes: `write ${a.toFixed(2)} us with order, ${b.toFixed(2)} us without: +${
        ((a / b - 1) * 100).toFixed(1)
      }% (median of ${reps}; 4 streams)`,
    };
  } finally {
    g.dispose();
  }
}

/** A mounted group (`fsbus mq mount` in its own process) for the FUSE points. */
async function mountedGroup(writeBehind = false, spinUs?: number): Promise<
  { stream: string; server: Deno.ChildProcess; dispose(): Promise<void> }
> {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-mqfs-" });
  MqGroup.create(`${dir}/data/g`).close();
  Deno.mkdirSync(`${dir}/mnt`);
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      cli,
      "mq",
      "mount",
      `${dir}/data`,
      `${dir}/mnt`,
      ...(writeBehind ? ["--write-behind"] : []),
      ...(spinUs !== undefined ? ["--spin-us", String(spinUs)] : []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const mounted = () => Deno.readTextFileSync("/proc/self/mountinfo").includes(` ${dir}/mnt `);
  await waitFor(mounted, 20_000, "the mount");
  const stream = `${dir}/mnt/g/s`;
  await new Deno.Command("touch", { args: [stream] }).output();
  return {
    stream,
    server,
    async dispose() {
      server.kill("SIGTERM");
      await server.status;
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** The C FUSE floor (bench/floor/fuse.c) serving one stream on a fresh mount point. */
async function floorMount(spinUs = 0): Promise<
  { stream: string; server: Deno.ChildProcess; dispose(): Promise<void> } | undefined
> {
  const exe = await floorBinary("fuse");
  if (exe === undefined) return undefined;
  const mp = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-fusefloor-" });
  const server = new Deno.Command(exe, {
    args: ["--role", "serve", "--path", mp, "--spin-us", String(spinUs)],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = lines(server);
  const first = await out.next();
  if (first.value !== "ready") {
    await server.status;
    Deno.removeSync(mp);
    console.error("the C FUSE floor could not mount (it needs root): its points are skipped");
    return undefined;
  }
  return {
    stream: `${mp}/s`,
    server,
    async dispose() {
      server.kill("SIGTERM");
      await server.status;
      Deno.removeSync(mp);
    },
  };
}

/** The mounted points' transports: the mount, the mount with `--write-behind` (writes
 * acknowledged before they are committed: the opt-in mode), the C FUSE floor (plain, and
 * spinning as an extra point) and a FIFO. */
type FileTransport =
  | "mq-fuse"
  | "mq-fuse-wb"
  | "mq-fuse-nospin"
  | "floor"
  | "floor-spin"
  | "fifo";
const FILE_TRANSPORTS: FileTransport[] = ["mq-fuse", "mq-fuse-wb", "floor", "floor-spin", "fifo"];
/** For `--ab` only: the mount with `--spin-us 0` (no spin), against the default `mq-fuse`. */
const AB_TRANSPORTS: FileTransport[] = [...FILE_TRANSPORTS, "mq-fuse-nospin"];
/**
 * Messages written before an unpaced point's clock (and its CPU times) start: a mount is a
 * long-lived server, and a fresh one's JIT takes some 25,000 requests to settle (timed in
 * blocks of 5,000 through the write-behind mount: 18k, 27k, 29k, 22k, 32k, then 34–35k
 * msgs/s). The latency points leave out their first 1,000 samples instead.
 */
const UNPACED_WARMUP = 30_000;
/** The transports that also get a writer-alone point (a FIFO needs a reader). */
const ALONE_TRANSPORTS: FileTransport[] = ["mq-fuse", "mq-fuse-wb", "mq-fuse-nospin", "floor"];
/** How long the spinning floor, and the mounts (but mq-fuse-nospin), keep reading after a
 * request (µs). */
let FLOOR_SPIN_US = 50;

async function fileLatencyPoint(
  transport: FileTransport,
  rate: number,
  count: number,
  size: number,
  withReader = true,
): Promise<Result | undefined> {
  const fuse = transport.startsWith("mq-fuse")
    ? await mountedGroup(
      transport === "mq-fuse-wb",
      transport === "mq-fuse-nospin" ? 0 : FLOOR_SPIN_US,
    )
    : transport === "floor" || transport === "floor-spin"
    ? await floorMount(transport === "floor-spin" ? FLOOR_SPIN_US : 0)
    : undefined;
  if (transport.startsWith("floor") && fuse === undefined) return undefined;
  const fifoDir = fuse ? undefined : Deno.makeTempDirSync({ prefix: "fsbus-bench-fifo-" });
  const path = fuse?.stream ?? `${fifoDir}/fifo`;
  try {
    if (fifoDir) await new Deno.Command("mkfifo", { args: [path] }).output();
    if (!withReader && !fuse) throw new Error("a FIFO needs a reader");
    // Unpaced: the first UNPACED_WARMUP messages are written before the clock starts.
    const warmup = rate > 0 ? 0 : UNPACED_WARMUP;
    const reader = withReader
      ? spawnRole(SELF, "file-reader", {
        path,
        count: count + warmup,
        warmup,
        size,
        ...(fifoDir ? { exact: "true" } : {}),
      })
      : undefined;
    const rl = reader ? lines(reader) : undefined;
    if (rl && (await rl.next()).value !== "ready") throw new Error("reader did not start");
    if (fuse && reader) await waitForOpen(reader.pid, path);
    const writer = spawnRole(SELF, "file-writer", {
      path,
      count,
      rate,
      size,
      warmup,
      ...(fuse ? { eof: "true" } : {}),
    });
    const wl = lines(writer);
    if ((await wl.next()).value !== "timed") throw new Error(`the writer failed on ${transport}`);
    const serverCpu0 = fuse ? cpuTimeMs(fuse.server.pid) : 0;
    const w = JSON.parse((await wl.next()).value as string);
    // Alone, every write(2) acknowledged counts as delivered (the writer checks each one).
    const r = rl
      ? JSON.parse((await rl.next()).value as string)
      : { delivered: count + warmup, duplicates: 0, order: 0, cpuMs: 0, rate: undefined };
    const ws = await writer.status;
    if (!ws.success) throw new Error(`the writer failed on ${transport}`);
    await reader?.status;
    const serverCpu = fuse ? cpuTimeMs(fuse.server.pid) - serverCpu0 : 0;
    return {
      transport,
      scenario: rate > 0 ? "latency" : "throughput",
      size,
      rate,
      subscribers: withReader ? 1 : 0,
      fs: fuse ? "fuse" : "",
      ...(rate > 0 ? percentiles(r.samples) : {}),
      delivered: r.delivered,
      expected: count + warmup,
      duplicates: r.duplicates,
      order_violations: r.order,
      pub_rate: Math.round(w.rate),
      ...(r.rate === undefined ? {} : { sub_rate: Math.round(r.rate) }),
      cpu_us_per_msg: Math.round(((w.cpuMs + r.cpuMs + serverCpu) * 1000 / count) * 10) / 10,
      notes: (transport === "mq-fuse-wb"
        ? "the mount with --write-behind (each write acknowledged before its commit); "
        : "") +
        (!withReader
          ? (transport.startsWith("mq-fuse")
            ? "write(2) per message through the mount, the writer alone (no reader); "
            : "the same writer alone through the C FUSE floor (bench/floor/fuse.c); ") +
            "cpu includes the server"
          : transport.startsWith("mq-fuse")
          ? "write(2) per message through the mount, read(2) blocked in another process; " +
            "cpu includes the server"
          : transport === "floor"
          ? "the same writer and reader through the C FUSE floor (bench/floor/fuse.c); " +
            "cpu includes the server"
          : transport === "floor-spin"
          ? `the C FUSE floor spinning up to ${FLOOR_SPIN_US} µs after a request while requests come ` +
            "fast, before blocking (an extra point, not the floor); cpu includes the server"
          : "the same writer and reader over a FIFO: one kernel hop, the lower bound") +
        (warmup ? `; written rate timed after ${warmup} untimed messages (warm-up)` : ""),
    };
  } finally {
    await fuse?.dispose();
    if (fifoDir) Deno.removeSync(fifoDir, { recursive: true });
  }
}

async function waitForOpen(pid: number, path: string): Promise<void> {
  await waitFor(
    () => {
      for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
        try {
          if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === path) return true;
        } catch {
          // closed meanwhile
        }
      }
      return false;
    },
    20_000,
    "the reader's open",
  );
}

function table(results: Result[]): string {
  const head = [
    "transport",
    "scenario",
    "size",
    "rate",
    "p50",
    "p99",
    "p99.9",
    "delivered",
    "dup",
    "ord",
    "pub/s",
    "sub/s",
    "cpu us/msg",
    "notes",
  ];
  const rows = results.map((r) => [
    r.transport,
    r.scenario,
    String(r.size),
    String(r.rate),
    r.p50_us === undefined ? "" : String(r.p50_us),
    r.p99_us === undefined ? "" : String(r.p99_us),
    r.p999_us === undefined ? "" : String(r.p999_us),
    `${r.delivered}/${r.expected}`,
    String(r.duplicates),
    String(r.order_violations),
    String(r.pub_rate ?? ""),
    String(r.sub_rate ?? ""),
    String(r.cpu_us_per_msg ?? ""),
    r.notes ?? "",
  ]);
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join("  ")).join("\n") + "\n";
}

function medianBy(results: Result[], key: "p50_us" | "sub_rate" | "pub_rate"): Result {
  const sorted = [...results].sort((a, b) => (a[key] ?? 0) - (b[key] ?? 0));
  const mid = sorted[Math.floor(sorted.length / 2)]!;
  if (results.length === 1) return mid;
  return {
    ...mid,
    notes: `${mid.notes ? `${mid.notes}; ` : ""}median of ${results.length} runs, ${key} ${
      sorted[0]![key]
    }-${sorted[sorted.length - 1]![key]}`,
  };
}

/**
 * Runs the mq benchmarks.
 *
 * @param opts `quick` for a smoke run of a few seconds.
 * @returns One result per point.
 *
 * @example
 * ```ts ignore
 * import { run } from "./mq.ts";
 * const results = await run({ quick: true });
 * ```
 */
export async function run(
  opts: { quick: boolean; fuseOnly?: boolean; replayOnly?: boolean },
): Promise<Result[]> {
  const reps = opts.quick ? 1 : 3;
  const results: Result[] = [];
  const push = (r: Result) => {
    results.push(r);
    console.error(table([r]).split("\n")[1]);
  };
  if (opts.replayOnly) {
    await replayPoints(opts, reps, push);
  } else {
    if (!opts.fuseOnly) await directoryPoints(opts, reps, push);
    await fusePoints(opts, reps, push);
  }
  addRatios(results, "mq", "nats");
  addRatios(results, "mq-fuse"); // ÷ the C FUSE floor
  addRatios(results, "mq-fuse-wb");
  return results;
}

async function directoryPoints(
  opts: { quick: boolean },
  reps: number,
  push: (r: Result) => void,
): Promise<void> {
  // NATS core beside it, alternated run by run (the goal: live p50 ≤ NATS core's).
  const nats = await startNats();
  try {
    for (
      const [rate, count] of opts.quick ? [[1000, 3000]] : [[1000, 11_000], [10_000, 21_000]]
    ) {
      const runs: Result[] = [];
      const natsRuns: Result[] = [];
      for (let i = 0; i < reps; i++) {
        runs.push(await latencyPoint(rate!, count!, 1024));
        natsRuns.push(
          await natsPoint({
            transport: "nats",
            size: 1024,
            rate: rate!,
            subscribers: 1,
            count: count!,
            fs: "tmpfs",
          }, nats.server),
        );
      }
      push(medianBy(runs, "p50_us"));
      push(medianBy(natsRuns, "p50_us"));
      // The floor: append to a stream file and write an index record, read by a C reader.
      const f = await repeatFloor(reps, "mq", {
        scenario: "latency",
        size: 1024,
        rate: rate!,
        subscribers: 1,
        count: count!,
        warmup: WARMUP,
      });
      if (f) push(f);
    }
  } finally {
    await nats.stop();
  }
  await replayPoints(opts, reps, push);
  push(orderCostPoint(opts.quick ? 5_000 : 20_000, 1024, opts.quick ? 3 : 5));
}

async function replayPoints(
  opts: { quick: boolean },
  reps: number,
  push: (r: Result) => void,
): Promise<void> {
  // Replay with and without the readers' CRC check, interleaved: what the check costs.
  const replays: Result[] = [];
  const unverified: Result[] = [];
  const loops: [number[], number[]] = [[], []];
  const count = opts.quick ? 20_000 : 100_000;
  for (let i = 0; i < Math.max(reps, 3); i++) {
    for (const verify of [true, false]) {
      const r = await replayPoint(count, 1024, verify);
      (verify ? replays : unverified).push(r);
      loops[verify ? 0 : 1].push(Number(/read loop ([\d.]+)/.exec(r.notes ?? "")?.[1]));
    }
  }
  const on = median(loops[0]);
  const off = median(loops[1]);
  const verified = medianBy(replays, "sub_rate");
  verified.notes += `; the CRC check costs ${(on - off).toFixed(2)} us/msg (read loop, medians ` +
    `${on.toFixed(2)} vs ${off.toFixed(2)})`;
  push(verified);
  push(medianBy(unverified, "sub_rate"));
}

async function fusePoints(
  opts: { quick: boolean },
  reps: number,
  push: (r: Result) => void,
): Promise<void> {
  let fuse = true;
  try {
    Deno.statSync("/dev/fuse");
  } catch {
    fuse = false;
    console.error("mq-fuse points skipped: /dev/fuse is missing");
  }
  if (fuse) {
    // Every transport once per round, so slow phases of a shared machine hit them alike.
    const tput = new Map(FILE_TRANSPORTS.map((t) => [t, [] as Result[]]));
    const lat = new Map(FILE_TRANSPORTS.map((t) => [t, [] as Result[]]));
    const alone = new Map(FILE_TRANSPORTS.map((t) => [t, [] as Result[]]));
    for (let i = 0; i < reps; i++) {
      for (const transport of FILE_TRANSPORTS) {
        // The issue's sentence is about one writer: the writer alone, then with a reader.
        const a = ALONE_TRANSPORTS.includes(transport)
          ? await fileLatencyPoint(transport, 0, opts.quick ? 5_000 : 20_000, 1024, false)
          : undefined;
        if (a) alone.get(transport)!.push(a);
        const t = await fileLatencyPoint(transport, 0, opts.quick ? 5_000 : 20_000, 1024);
        const l = await fileLatencyPoint(transport, 1000, opts.quick ? 3_000 : 6_000, 1024);
        if (t) tput.get(transport)!.push(t);
        if (l) lat.get(transport)!.push(l);
      }
    }
    for (const transport of FILE_TRANSPORTS) {
      const t = tput.get(transport)!;
      const l = lat.get(transport)!;
      const a = alone.get(transport)!;
      if (a.length) push(medianBy(a, "pub_rate"));
      if (t.length) push(medianBy(t, "pub_rate"));
      if (l.length) push(medianBy(l, "p50_us"));
    }
  }
}

async function abRun(list: string, args: string[]): Promise<void> {
  const transports = list.split(",") as FileTransport[];
  for (const t of transports) {
    if (!AB_TRANSPORTS.includes(t)) throw new Error(`--ab: unknown transport ${t}`);
  }
  const opt = (k: string, d: number) => {
    const i = args.indexOf(k);
    return i >= 0 ? Number(args[i + 1]) : d;
  };
  const reps = opt("--reps", 5);
  const noAlone = args.includes("--no-alone");
  const noLatency = args.includes("--no-latency");
  const count = opt("--count", 5000);
  const empty = (): Record<"alone" | "acpu" | "rate" | "cpu" | "p50" | "lcpu", number[]> => ({
    alone: [],
    acpu: [],
    rate: [],
    cpu: [],
    p50: [],
    lcpu: [],
  });
  const rows = new Map(transports.map((t) => [t, empty()]));
  const load0 = loadAverage();
  for (let i = 0; i < reps; i++) {
    for (const t of transports) {
      const w = ALONE_TRANSPORTS.includes(t) && !noAlone
        ? await fileLatencyPoint(t, 0, count, 1024, false)
        : undefined;
      const a = await fileLatencyPoint(t, 0, count, 1024);
      const b = noLatency ? undefined : await fileLatencyPoint(t, 1000, 3000, 1024);
      const row = rows.get(t)!;
      if (w) row.alone.push(w.pub_rate!), row.acpu.push(w.cpu_us_per_msg!);
      if (a) row.rate.push(a.pub_rate!), row.cpu.push(a.cpu_us_per_msg!);
      if (b) row.p50.push(b.p50_us!), row.lcpu.push(b.cpu_us_per_msg!);
      console.error(
        `${t} round ${i + 1}: writer alone ${w?.pub_rate ?? "–"} msgs/s, ` +
          `${w?.cpu_us_per_msg ?? "–"} us/msg; ` +
          `with a reader ${a?.pub_rate} msgs/s, ${a?.cpu_us_per_msg} us/msg; ` +
          (b ? `1k msgs/s p50 ${b.p50_us} us, ${b.cpu_us_per_msg} us/msg` : "no latency point"),
      );
    }
  }
  const span = (x: number[]) =>
    x.length ? `${median(x)} (${Math.min(...x)}-${Math.max(...x)})` : "–";
  for (const [t, r] of rows) {
    console.log(
      `${t}: writer alone ${span(r.alone)} msgs/s, cpu ${median(r.acpu)} us/msg; ` +
        `with a reader ${span(r.rate)} msgs/s, cpu ${median(r.cpu)} us/msg; ` +
        `p50 at 1k msgs/s ${span(r.p50)} us, cpu ${median(r.lcpu)} us/msg`,
    );
  }
  console.log(`load ${load0}–${loadAverage()}, ${reps} rounds`);
}

if (import.meta.main) {
  const r = Deno.args.indexOf("--role");
  if (r >= 0) {
    const name = Deno.args[r + 1];
    if (name === "latency-reader") await latencyReader();
    else if (name === "latency-writer") await latencyWriter();
    else if (name === "replay-reader") await replayReader();
    else if (name === "file-writer") await fileWriter();
    else if (name === "file-reader") fileReader();
    else throw new Error(`unknown role ${name}`);
  } else {
    checkBenchFlags(import.meta.url, [
      "--quick",
      "--fuse-only",
      "--replay-only",
      "--spin-us",
      "--ab",
      "--reps",
      "--count",
      "--no-alone",
      "--no-latency",
    ]);
    const spin = Deno.args.indexOf("--spin-us");
    if (spin >= 0) FLOOR_SPIN_US = Number(Deno.args[spin + 1]);
    const ab = Deno.args.indexOf("--ab");
    if (ab >= 0) {
      await abRun(Deno.args[ab + 1] ?? "", Deno.args);
      Deno.exit(0);
    }
    const quick = Deno.args.includes("--quick");
    const fuseOnly = Deno.args.includes("--fuse-only");
    const replayOnly = Deno.args.includes("--replay-only");
    const load0 = loadAverage();
    const results = await run({ quick, fuseOnly, replayOnly });
    console.log(table(results));
    Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
    Deno.writeTextFileSync(
      new URL(
        `./results/mq${fuseOnly ? "-fuse" : replayOnly ? "-replay" : ""}${
          quick ? "-quick" : ""
        }.json`,
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
