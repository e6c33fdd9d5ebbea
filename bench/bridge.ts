/**
 * Benchmark of `fsbus bridge` across "machines" (two bus roots, each bridged to a different
 * server of a 3-server JetStream cluster on loopback), against NATS core alone (publisher on
 * one server, subscriber on another), JetStream alone (publish with ack on one server, a
 * consumer on another) and the local directory bus alone, in the same run: 1 KiB, 1k msgs/s
 * and unpaced. One clock (CLOCK_MONOTONIC stamped into each payload), separate processes,
 * warm-up excluded, delivered/duplicates/order checked. NATS core and JetStream alone use the
 * bridge's own client and transport (fsbus's, on Deno's sockets), and JetStream alone reads as
 * the bridge reads (a durable consumer, cumulative acks) and publishes as it does (at most 512
 * acks waiting), so that each differs from the bridge only by what the bridge adds.
 *
 *   deno run -A bench/bridge.ts            # 1k/s: 6,000 messages; unpaced: 20,000
 *   deno run -A bench/bridge.ts --quick    # a smoke run
 *   deno run -A bench/bridge.ts --quick --only bridge,bridge-nats --runs 3
 *   deno run -A bench/bridge.ts --quick --cli /tmp/old/cli.ts   # the bridges of another tree
 *
 * `--only` takes kinds among msgfs, nats, js, bridge (through JetStream), bridge-nats (through
 * core NATS); `--cli` runs the bridges from another checkout's cli.ts, for A/B runs (old and
 * new alternated) with everything else the same.
 *
 * Results are printed as a table and written to bench/results/bridge.json.
 *
 * @module
 */

import { AckPolicy, connect, DeliverPolicy, type JsMsg, type NatsConnection } from "nats";
import * as msgfs from "../transports/msgfs/mod.ts";
import { connectNats, ensureStream } from "../transports/_nats.ts";
import { startCluster } from "../tests/_nats.ts";
import {
  checkBenchFlags,
  checkSequence,
  cpuTimeMs,
  loadAverage,
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
let cli = new URL("../cli.ts", import.meta.url).pathname;
const WARMUP = 1000;

type Kind = "msgfs" | "nats" | "js" | "bridge" | "bridge-nats";

interface SubReport {
  latencies: number[];
  seqs: number[];
  received: number;
  elapsedMs: number;
  cpuMs: number;
}

async function subRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  const latencies: number[] = [];
  const seqs: number[] = [];
  let received = 0;
  let firstAt = 0;
  let lastAt = 0;
  const cpu0 = cpuTimeMs();
  let resolve!: () => void;
  const finished = new Promise<void>((r) => (resolve = r));
  let idle = setTimeout(resolve, 120_000);
  const onMessage = (data: Uint8Array) => {
    const now = monotonicNs();
    const { sentNs, seq } = readStamp(data);
    if (received === 0) firstAt = performance.now();
    lastAt = performance.now();
    received++;
    seqs.push(seq);
    if (seq >= WARMUP) latencies.push(Number(now - sentNs) / 1000);
    if (received % 256 === 0) {
      clearTimeout(idle);
      idle = setTimeout(resolve, 15_000);
    }
    if (received >= count) resolve();
  };
  let close: (() => Promise<void>) | undefined;
  if (args.kind === "msgfs") {
    const sub = msgfs.subscribe(args.dir!, {});
    const loop = (async () => {
      for await (const m of sub) onMessage(m.data);
    })();
    await new Promise((r) => setTimeout(r, 300));
    close = async () => {
      await sub.close();
      await loop;
    };
  } else {
    // The same client and transport as the bridge's (Deno's sockets, not the package's
    // Node `net` layer), so that NATS alone and the bridge differ only by the bridge.
    const nc = await connectNats(args.server!);
    if (args.kind === "nats") {
      nc.subscribe("bench", { callback: (_e, m) => onMessage(m.data) });
      await nc.flush();
    } else {
      const js = nc.jetstream();
      const jsm = await nc.jetstreamManager();
      // Read as the bridge reads: a durable consumer (replicated as the stream), acks
      // cumulative (one in 64, and the last within 100 ms); removed at the end.
      const info = await jsm.consumers.add("BENCH", {
        durable_name: `bench_${Math.floor(Math.random() * 1e9)}`,
        filter_subject: "bench.js",
        deliver_policy: DeliverPolicy.New,
        ack_policy: AckPolicy.All,
        max_ack_pending: 10_000,
      });
      const c = await js.consumers.get("BENCH", info.name);
      const msgs = await c.consume({ max_messages: 1000, expires: 10_000 });
      close = async () => {
        msgs.stop();
        await jsm.consumers.delete("BENCH", info.name).catch(() => {});
        await nc.close();
      };
      (async () => {
        let n = 0;
        let last: JsMsg | undefined;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const ackNow = () => {
          clearTimeout(timer);
          timer = undefined;
          last?.ack();
          last = undefined;
        };
        for await (const m of msgs as AsyncIterable<JsMsg>) {
          onMessage(m.data);
          last = m;
          if (++n % 64 === 0) ackNow();
          else timer ??= setTimeout(ackNow, 100);
        }
      })();
      await nc.flush();
    }
    close ??= () => nc.close();
  }
  console.log("ready");
  await finished;
  clearTimeout(idle);
  const report: SubReport = {
    latencies,
    seqs,
    received,
    elapsedMs: lastAt - firstAt,
    cpuMs: cpuTimeMs() - cpu0,
  };
  await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(report) + "\n"));
  await Promise.race([close!(), new Promise((r) => setTimeout(r, 2000))]);
  Deno.exit(0);
}

async function pubRole(args: Record<string, string>): Promise<void> {
  const count = Number(args.count);
  const rate = Number(args.rate);
  const payload = new Uint8Array(Number(args.size));
  const t0 = performance.now();
  if (args.kind === "msgfs" || args.kind?.startsWith("bridge")) {
    const pub = new msgfs.Publisher(args.dir!, { sweep: false });
    await paced(rate, count, (seq, at) => {
      stamp(payload, seq, at);
      pub.publish(payload);
    });
  } else {
    const nc: NatsConnection = await connectNats(args.server!);
    if (args.kind === "nats") {
      await paced(rate, count, (seq, at) => {
        stamp(payload, seq, at);
        nc.publish("bench", payload.slice());
      });
      await nc.flush();
    } else {
      // Publish with ack, at most 512 waiting for their ack (as the bridge does): a full
      // window waits for the oldest.
      const js = nc.jetstream();
      const inflight: Promise<unknown>[] = [];
      const send = (seq: number, at: bigint) => {
        stamp(payload, seq, at);
        inflight.push(js.publish("bench.js", payload.slice(), { timeout: 60_000 }));
      };
      if (rate > 0) {
        await paced(rate, count, send);
      } else {
        for (let i = 0; i < count; i++) {
          send(i, monotonicNs());
          if (inflight.length >= 512) await inflight.shift();
        }
      }
      await Promise.all(inflight);
    }
    await nc.close();
  }
  const elapsed = performance.now() - t0;
  console.log(JSON.stringify({ pubRate: count / (elapsed / 1000) }));
}

function startBridge(
  args: string[],
  role: string,
): { child: Deno.ChildProcess; ready: Promise<void> } {
  // FSBUS_BENCH_BRIDGE_FLAGS: extra `deno run` flags for the bridges (profiling), `{role}`
  // replaced by "up" or "down".
  const extra = (Deno.env.get("FSBUS_BENCH_BRIDGE_FLAGS") ?? "").split(" ").filter(Boolean)
    .map((f) => f.replaceAll("{role}", role));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", ...extra, cli, "bridge", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const ready = (async () => {
    const r = child.stderr.getReader();
    const state = { buf: "" };
    for (;;) {
      const line = await readLine(r, state);
      if (line.includes("bridging:")) break;
      if (line === "" && state.buf === "") throw new Error("bridge ended");
    }
    r.releaseLock();
    child.stderr.pipeTo(new WritableStream()).catch(() => {});
  })();
  return { child, ready };
}

async function runPoint(
  kind: Kind,
  rate: number,
  count: number,
  size: number,
  servers: string[],
): Promise<Result> {
  const root = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-" });
  const a = `${root}/a`;
  const b = `${root}/b`;
  Deno.mkdirSync(a);
  Deno.mkdirSync(b);
  const bridges: Deno.ChildProcess[] = [];
  try {
    let subArgs: Record<string, string | number> = { kind, count, size };
    let pubArgs: Record<string, string | number> = { kind, count, size, rate };
    if (kind === "msgfs") {
      subArgs = { ...subArgs, dir: a };
      pubArgs = { ...pubArgs, dir: a };
    } else if (kind === "bridge" || kind === "bridge-nats") {
      // Core NATS on a subject outside the BENCH stream's `bench.>`: under it, the servers
      // also stored (and replicated three ways) every message of the "core NATS" bridge.
      const subject = `${kind === "bridge" ? "bench" : "live"}.br${
        Math.floor(Math.random() * 1e9)
      }`;
      const [out, inn] = kind === "bridge"
        ? [
          `jetstream://${servers[0]}/BENCH/${subject}`,
          `jetstream://${servers[1]}/BENCH/${subject}`,
        ]
        : [`nats://${servers[0]}/${subject}`, `nats://${servers[1]}/${subject}`];
      const up = startBridge([`dir:${a}`, out!, "--state", `${root}/sa`], "up");
      const down = startBridge([inn!, `dir:${b}`, "--state", `${root}/sb`], "down");
      bridges.push(up.child, down.child);
      await Promise.all([up.ready, down.ready]);
      subArgs = { ...subArgs, kind: "msgfs", dir: b };
      pubArgs = { ...pubArgs, dir: a };
    } else {
      subArgs = { ...subArgs, server: servers[1]! };
      pubArgs = { ...pubArgs, server: servers[0]! };
    }
    const cpu0 = bridges.map((c) => cpuTimeMs(c.pid));
    const sub = spawnRole(SELF, "sub", subArgs);
    const subReader = { r: sub.stdout.getReader(), state: { buf: "" } };
    const hello = await readLine(subReader.r, subReader.state);
    if (hello !== "ready") throw new Error(`subscriber said "${hello}"`);
    const pub = spawnRole(SELF, "pub", pubArgs);
    const pubOut = JSON.parse(await readLine(pub.stdout.getReader(), { buf: "" }));
    await pub.status;
    const rep: SubReport = JSON.parse(await readLine(subReader.r, subReader.state));
    await sub.status;
    // CPU of each bridge process over the point, per message.
    const perMsg = bridges.map((c, i) => Math.round((cpuTimeMs(c.pid) - cpu0[i]!) * 1000 / count));
    const c = checkSequence(rep.seqs);
    return {
      transport: kind === "js" ? "jetstream" : kind,
      scenario: rate ? "latency" : "throughput",
      size,
      rate,
      subscribers: 1,
      fs: kind === "msgfs" || kind.startsWith("bridge") ? "tmpfs" : "",
      ...(rep.latencies.length ? percentiles(rep.latencies) : {}),
      delivered: c.distinct,
      expected: count,
      duplicates: c.duplicates,
      order_violations: c.order,
      pub_rate: Math.round(pubOut.pubRate),
      sub_rate: Math.round(rep.received / (rep.elapsedMs / 1000)),
      ...(bridges.length ? { cpu_us_per_msg: perMsg[0]! + perMsg[1]! } : {}),
      ...(kind === "bridge"
        ? {
          notes: `dir A -> JetStream (s0) -> (s1) -> dir B; CPU µs/msg up ${perMsg[0]}, down ${
            perMsg[1]
          }`,
        }
        : kind === "bridge-nats"
        ? {
          notes: `dir A -> core NATS (s0) -> (s1) -> dir B; CPU µs/msg up ${perMsg[0]}, down ${
            perMsg[1]
          }`,
        }
        : {}),
    };
  } finally {
    for (const c of bridges) {
      try {
        c.kill("SIGTERM");
      } catch { /* gone */ }
      await c.status;
    }
    Deno.removeSync(root, { recursive: true });
  }
}

/**
 * Runs the matrix and returns the median run of each point; writes
 * bench/results/bridge.json unless `quick`.
 *
 * @param opts `quick` for a smoke run, `runs` per point, `only` some kinds.
 * @returns The results.
 */
export async function run(
  opts: { quick: boolean; runs?: number; only?: string },
): Promise<Result[]> {
  const quick = opts.quick;
  const args = { only: opts.only };
  const paced1k = quick ? 3000 : 6000;
  const unpaced = quick ? 5000 : 20_000;
  const runs = opts.runs ?? (quick ? 1 : 3);
  const size = 1024;
  const load0 = loadAverage();
  const natsDir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-bench-nats-" });
  const cluster = await startCluster(natsDir);
  const servers = cluster.servers.map((s) => s.address);
  const results: Result[] = [];
  try {
    const nc = await connect({ servers: servers[0]! });
    await ensureStream(await nc.jetstreamManager(), "BENCH", "bench.>");
    await nc.close();
    for (const [rate, count] of [[1000, paced1k], [0, unpaced]] as const) {
      for (const kind of ["msgfs", "nats", "js", "bridge", "bridge-nats"] as const) {
        if (args.only && !args.only.split(",").includes(kind)) continue;
        const points: Result[] = [];
        for (let i = 0; i < runs; i++) {
          points.push(await runPoint(kind, rate, count, size, servers));
        }
        // The median run by p50 (latency) or by subscriber rate (throughput).
        const key = (r: Result) => (rate ? r.p50_us ?? 0 : r.sub_rate ?? 0);
        points.sort((x, y) => key(x) - key(y));
        const mid = points[Math.floor(points.length / 2)]!;
        mid.notes = [mid.notes, `median of ${runs}: ${points.map(key).join(", ")}`]
          .filter(Boolean).join("; ");
        results.push(mid);
        console.log(row(mid));
      }
    }
  } finally {
    await cluster.stop();
    Deno.removeSync(natsDir, { recursive: true });
  }
  if (args.only) return results;
  const get = (t: string, rate: number) =>
    results.find((r) => r.transport === t && r.rate === rate)!;
  // The latency goal is the bridge through core NATS against NATS core alone plus two hops
  // of the local bus; through JetStream it is shown against JetStream alone the same way.
  const bus2 = 2 * get("msgfs", 1000).p50_us!;
  const goalLatency = get("nats", 1000).p50_us! + bus2;
  const coreP50 = get("bridge-nats", 1000).p50_us!;
  const ratio = get("bridge", 0).sub_rate! / get("jetstream", 0).pub_rate!;
  const summary = {
    bridge_core_nats_p50_us: coreP50,
    goal_p50_us: Math.round(goalLatency * 10) / 10,
    latency_goal_met: coreP50 <= goalLatency,
    bridge_jetstream_p50_us: get("bridge", 1000).p50_us,
    jetstream_alone_plus_2_bus_p50_us: Math.round((get("jetstream", 1000).p50_us! + bus2) * 10) /
      10,
    bridge_unpaced_msgs_s: get("bridge", 0).sub_rate,
    jetstream_publish_with_ack_msgs_s: get("jetstream", 0).pub_rate,
    throughput_ratio: Math.round(ratio * 100) / 100,
    throughput_goal_met: ratio >= 0.5,
    median_of: runs,
    load: `${load0}–${loadAverage()}`,
    when: new Date().toISOString(),
    machine: `${navigator.hardwareConcurrency} cores, shared`,
  };
  console.log(JSON.stringify(summary));
  if (!quick) {
    Deno.writeTextFileSync(
      new URL("./results/bridge.json", import.meta.url),
      JSON.stringify({ results, summary }, null, 2) + "\n",
    );
  }
  return results;
}

if (import.meta.main) {
  const args = roleArgs();
  if (args.role === "sub") await subRole(args);
  else if (args.role === "pub") await pubRole(args);
  else {
    checkBenchFlags(import.meta.url, ["--quick", "--only", "--runs", "--cli"]);
    if (args.cli) cli = args.cli;
    await run({
      quick: args.quick === "true",
      ...(args.runs ? { runs: Number(args.runs) } : {}),
      ...(args.only ? { only: args.only } : {}),
    });
  }
}
