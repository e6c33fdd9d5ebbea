import assert from "node:assert/strict";
import * as msgfs from "../../transports/msgfs/mod.ts";
import * as mq from "../../transports/mq/mod.ts";
import { connectNats } from "../../transports/_nats.ts";
import { CLI, collect, fsbus, spawnFsbus, stop, tempDir, waitFor } from "../_helpers.ts";
import { ensureGone, readState } from "./_pin.ts";
import {
  canMakeNetns,
  freePort,
  type NatsCluster,
  Netns,
  startCluster,
  startNats,
} from "../_nats.ts";

const dec = new TextDecoder();

/** A bridge process (in a network namespace when given), its stderr collected. */
class BridgeProc {
  child: Deno.ChildProcess;
  err: ReturnType<typeof collect>;
  constructor(readonly args: string[], readonly ns?: Netns) {
    const debug = Deno.env.get("FSBT_DEBUG") ? ["--status", "1s"] : [];
    const argv = [Deno.execPath(), "run", "-A", "--quiet", CLI, "bridge", ...args, ...debug];
    const [cmd, rest] = ns ? ns.wrap(argv[0]!, argv.slice(1)) : [argv[0]!, argv.slice(1)];
    this.child = new Deno.Command(cmd, {
      args: rest,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.err = collect(this.child.stderr);
  }
  ready(): Promise<void> {
    return waitFor(() => this.err.text().includes("bridging:"), "the bridge to start", 60_000);
  }
  kill(): Promise<void> {
    this.child.kill("SIGKILL");
    return this.child.status.then(() => {});
  }
  restart(): BridgeProc {
    return new BridgeProc(this.args, this.ns);
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await stop(this.child);
    await this.err.done.catch(() => {});
    if (Deno.env.get("FSBT_DEBUG")) console.error(this.args.join(" "), "\n", this.err.text());
  }
}

/** Every message of a bus (root and topics) as text, in arrival order. */
class Watch {
  readonly got: string[] = [];
  readonly #sub: msgfs.BusSubscription;
  readonly #loop: Promise<void>;
  constructor(dir: string) {
    const sub = msgfs.subscribe(dir, { recursive: true, since: "all" });
    this.#sub = sub;
    this.#loop = (async () => {
      for await (const m of sub) this.got.push(dec.decode(m.data));
    })();
  }
  count(prefix: string): number {
    return this.got.filter((t) => t.startsWith(prefix)).length;
  }
  until(n: number, prefix = ""): Promise<void> {
    return waitFor(
      () => this.count(prefix) >= n,
      `${n} messages "${prefix}*" (have ${this.count(prefix)})`,
      60_000,
    );
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#sub.close();
    await this.#loop;
  }
}

function assertExactly(got: string[], prefix: string, n: number, where: string): void {
  const mine = got.filter((t) => t.startsWith(prefix));
  const expected = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  assert.deepEqual(mine, expected, `${where}: every "${prefix}*" once, in publisher order`);
}

async function publishPaced(dir: string, prefix: string, n: number, from = 0): Promise<void> {
  for (let i = from; i < n; i++) {
    msgfs.publish(dir, `${prefix}${i}`);
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 2));
  }
}

/** Moves the leadership of `stream` to server `i` of the cluster (stepping the leader down). */
async function leadStream(cluster: NatsCluster, stream: string, i: number): Promise<void> {
  const want = cluster.servers[i]!.options.name;
  const other = cluster.servers.find((_, j) => j !== i)!;
  const nc = await connectNats(other.address);
  try {
    const jsm = await nc.jetstreamManager();
    for (let n = 0; n < 30; n++) {
      const leader = await jsm.streams.info(stream).then((s) => s.cluster?.leader, () => "");
      if (leader === want) return;
      if (leader) {
        await nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, undefined, { timeout: 5000 })
          .catch(() => {});
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`stream "${stream}" never led by ${want}`);
  } finally {
    await nc.close();
  }
}

/** Network namespaces made by these tests ("machine B") are named with this prefix. */
const NS_PREFIX = "fsbt-bridge3-";

/** Two "machines": bus roots A and B, B's bridge in its own network namespace when possible. */
async function twoMachines(
  root: string,
  body: (
    m: {
      cluster: NatsCluster;
      a: string;
      b: string;
      bridgeA: BridgeProc;
      bridgeB: () => BridgeProc;
      setB: (b: BridgeProc) => void;
      ns: Netns | undefined;
    },
  ) => Promise<void>,
): Promise<void> {
  const ns = canMakeNetns() ? await Netns.create(NS_PREFIX) : undefined;
  try {
    const host = ns?.hostAddr ?? "127.0.0.1";
    const cluster = await startCluster(`${root}/nats`, { host: () => host });
    try {
      const a = `${root}/a`;
      const b = `${root}/b`;
      Deno.mkdirSync(a);
      Deno.mkdirSync(b);
      const [s0, s1] = cluster.servers;
      const bridgeA = new BridgeProc([
        `dir:${a}`,
        `jetstream://${s0!.address}/APP/app`,
        "--both",
        "--state",
        `${root}/state-a`,
      ]);
      let current = new BridgeProc(
        [
          `jetstream://${s1!.address}/APP/app`,
          `dir:${b}`,
          "--both",
          "--state",
          `${root}/state-b`,
        ],
        ns,
      );
      try {
        await bridgeA.ready();
        await current.ready();
        await body({
          cluster,
          a,
          b,
          bridgeA,
          bridgeB: () => current,
          setB: (x) => (current = x),
          ns,
        });
      } catch (err) {
        // What each bridge said (its notices: connections, retries) goes with the failure.
        const said = (p: BridgeProc) => p.err.text().slice(-3000) || "(nothing)";
        if (err instanceof Error) {
          err.message += `\nbridge A said: ${said(bridgeA)}\nbridge B said: ${said(current)}`;
        }
        throw err;
      } finally {
        await current[Symbol.asyncDispose]();
        await bridgeA[Symbol.asyncDispose]();
      }
    } finally {
      await cluster.stop();
    }
  } finally {
    await ns?.remove();
  }
}

Deno.test("bridge: two machines on a JetStream cluster get every message once, in order, both ways", async () => {
  using dir = tempDir();
  await twoMachines(dir.path, async ({ a, b, ns }) => {
    await using onA = new Watch(a);
    await using onB = new Watch(b);
    await publishPaced(a, "a-", 200);
    await onB.until(200, "a-");
    // Both sides publishing at once.
    await Promise.all([publishPaced(a, "x-", 150), publishPaced(b, "y-", 150)]);
    await onA.until(150, "y-");
    await onB.until(150, "x-");
    // Nothing more arrives: no loop, no duplicate (a loop would keep adding).
    const total = () => onA.got.length + onB.got.length;
    const before = total();
    msgfs.publish(a, "end");
    await waitFor(() => onB.got.includes("end"), "the marker on B");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(total(), before + 2);
    for (const [w, where] of [[onA, "A"], [onB, "B"]] as const) {
      assertExactly(w.got, "a-", 200, where);
      assertExactly(w.got, "x-", 150, where);
      assertExactly(w.got, "y-", 150, where);
    }
    if (ns) assert.ok(ns.name.startsWith(NS_PREFIX));
  });
});

Deno.test("bridge: B's bridge killed and restarted mid-stream, then B's server killed: no loss, no duplicate", async () => {
  using dir = tempDir();
  await twoMachines(dir.path, async ({ a, b, cluster, bridgeB, setB }) => {
    await using onB = new Watch(b);
    const publishing = publishPaced(a, "m-", 600);
    await onB.until(100, "m-");
    await bridgeB().kill();
    const restarted = bridgeB().restart();
    setB(restarted);
    await restarted.ready();
    await publishing;
    await onB.until(600, "m-");
    // Kill the server B's bridge talks to, mid-stream, once it leads the stream (A's
    // publishes in flight die with it): the clients move on, nothing lost, order kept.
    const more = publishPaced(a, "n-", 400);
    await onB.until(50, "n-");
    await leadStream(cluster, "APP", 1);
    await cluster.servers[1]!.stop(true);
    await more;
    await onB.until(400, "n-");
    await new Promise((r) => setTimeout(r, 300));
    assertExactly(onB.got, "m-", 600, "B");
    assertExactly(onB.got, "n-", 400, "B");
  });
});

Deno.test("bridge: the whole cluster restarted with on-disk storage: bridges resume and history replays", async () => {
  using dir = tempDir();
  await twoMachines(dir.path, async ({ a, b, cluster }) => {
    await using onB = new Watch(b);
    await publishPaced(a, "h-", 100);
    await onB.until(100, "h-");
    await cluster.stop();
    await cluster.restart();
    await publishPaced(a, "r-", 100);
    await onB.until(100, "r-");
    assertExactly(onB.got, "h-", 100, "B");
    assertExactly(onB.got, "r-", 100, "B");
    // A third machine, new: the stream's history replays into its bus.
    const c = `${dir.path}/c`;
    Deno.mkdirSync(c);
    await using onC = new Watch(c);
    await using bridgeC = new BridgeProc([
      `jetstream://${cluster.servers[2]!.address}/APP/app`,
      `dir:${c}`,
      "--state",
      `${dir.path}/state-c`,
    ]);
    await bridgeC.ready();
    await onC.until(200);
    assertExactly(onC.got, "h-", 100, "C");
    assertExactly(onC.got, "r-", 100, "C");
  });
});

Deno.test("bridge: an mq group across machines keeps A's order (mq cat on B)", async () => {
  using dir = tempDir();
  await using cluster = await startCluster(`${dir.path}/nats`);
  const ga = `${dir.path}/ga`;
  const gb = `${dir.path}/gb`;
  for (const g of [ga, gb]) {
    assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
    using group = mq.openGroup(g);
    for (const s of ["0", "1", "2"]) group.createStream(s);
  }
  await using bridgeA = new BridgeProc([
    `mq:${ga}`,
    `jetstream://${cluster.servers[0]!.address}/PIN/pin.s1`,
    "--state",
    `${dir.path}/sa`,
  ]);
  await using bridgeB = new BridgeProc([
    `jetstream://${cluster.servers[1]!.address}/PIN/pin.s1`,
    `mq:${gb}`,
    "--state",
    `${dir.path}/sb`,
  ]);
  await bridgeA.ready();
  await bridgeB.ready();
  const streams = ["0", "1", "2"];
  for (let i = 0; i < 60; i++) {
    const s = streams[(i * 7) % 3]!;
    mq.write(ga, s, `${s}:${i}\n`);
  }
  for (const s of streams) mq.write(ga, s, ""); // EOF
  const onA = await fsbus(["mq", "cat", ga, ...streams]);
  assert.equal(onA.code, 0);
  // mq cat on B ends once every stream's EOF has crossed too.
  const catB = spawnFsbus(["mq", "cat", gb, ...streams]);
  const outB = collect(catB.stdout);
  const timer = setTimeout(() => catB.kill("SIGKILL"), 30_000);
  const status = await catB.status;
  clearTimeout(timer);
  await outB.done;
  await catB.stderr.cancel();
  assert.equal(status.code, 0);
  assert.equal(outB.text(), onA.text);
  assert.equal(outB.text().split("\n").length, 61);
});

Deno.test("bridge: pin attach on B to a session running on A (input, output, its end)", async () => {
  using dir = tempDir();
  await using ns = canMakeNetns() ? await Netns.create(NS_PREFIX) : undefined;
  const host = ns?.hostAddr ?? "127.0.0.1";
  await using cluster = await startCluster(`${dir.path}/nats`, { host: () => host });
  const rootA = `${dir.path}/pin-a`;
  const rootB = `${dir.path}/pin-b`;
  Deno.mkdirSync(rootA, { mode: 0o700 });
  Deno.mkdirSync(rootB, { mode: 0o700 });
  // The session runs on A; B has only a group, which its bridge fills.
  const made = await fsbus(["pin", "-m", rootA, "-c", "s1", "cat"]);
  assert.equal(made.code, 0, made.stderr);
  try {
    assert.equal((await fsbus(["mq", "mkgroup", `${rootB}/s1`, "--replay", "all"])).code, 0);
    await using bridgeA = new BridgeProc([
      `mq:${rootA}/s1`,
      `jetstream://${cluster.servers[0]!.address}/PIN/pin.s1`,
      "--both",
      "--history",
      "--state",
      `${dir.path}/sa`,
    ]);
    await using bridgeB = new BridgeProc([
      `jetstream://${cluster.servers[1]!.address}/PIN/pin.s1`,
      `mq:${rootB}/s1`,
      "--both",
      "--state",
      `${dir.path}/sb`,
    ], ns);
    await bridgeA.ready();
    await bridgeB.ready();
    await waitFor(
      () => readState(rootB, "s1")?.state === "running",
      "the session's state mirrored on B",
      30_000,
    );
    assert.equal(typeof readState(rootB, "s1")?.mirror, "string");
    const list = await fsbus(["pin", "-m", rootB, "-l"]);
    assert.match(list.text, /^s1 +running +\d+ .* cat$/m);

    // Attach on B: a line typed there reaches cat on A's terminal, its output comes back.
    const att = spawnFsbus(["pin", "-m", rootB, "-a", "s1"]);
    const out = collect(att.stdout);
    const err = collect(att.stderr);
    const input = att.stdin.getWriter();
    try {
      await input.write(new TextEncoder().encode("hello from B\n"));
      // The terminal's echo and cat's copy, both made on A.
      await waitFor(
        () => out.text().split("hello from B").length >= 3,
        "the line echoed and copied by the session on A",
        30_000,
      );
      {
        using g = mq.openGroup(`${rootA}/s1`);
        const r = mq.read(g, ["0"], { replay: "all" });
        const typed = r.poll().map((m) => dec.decode(m.data)).join("");
        await r.close();
        assert.equal(typed, "hello from B\n", "stream 0 on A holds what was typed on B");
      }
      // Ended from B: the hangup travels to A, the session's end comes back.
      const killed = await fsbus(["pin", "-m", rootB, "-k", "s1"]);
      assert.equal(killed.code, 0, killed.stderr);
      const status = await att.status;
      await out.done;
      await err.done;
      assert.equal(status.code, 129);
      assert.match(err.text(), /session "s1" killed by SIGHUP/);
      assert.equal(readState(rootA, "s1")?.state, "exited");
    } finally {
      await input.close().catch(() => {});
      try {
        att.kill("SIGKILL");
      } catch {
        // ended
      }
      await att.status;
    }
  } finally {
    await ensureGone(rootA, "s1");
  }
});

Deno.test("bridge: two separate one-way bridges on one bus and subject do not loop", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats` });
  const a = `${dir.path}/a`;
  const b = `${dir.path}/b`;
  Deno.mkdirSync(a);
  Deno.mkdirSync(b);
  const js = `jetstream://${server.address}/APP/app`;
  // Machine A: out and in through two bridges (names of their own, one state directory).
  await using out = new BridgeProc([
    `dir:${a}`,
    js,
    "--name",
    "a-out",
    "--state",
    `${dir.path}/state-a`,
  ]);
  await using inn = new BridgeProc([
    js,
    `dir:${a}`,
    "--name",
    "a-in",
    "--state",
    `${dir.path}/state-a`,
  ]);
  // Machine B: one bridge both ways.
  await using both = new BridgeProc([js, `dir:${b}`, "--both", "--state", `${dir.path}/state-b`]);
  await out.ready();
  await inn.ready();
  await both.ready();
  await using onA = new Watch(a);
  await using onB = new Watch(b);
  await Promise.all([publishPaced(a, "p-", 150), publishPaced(b, "q-", 150)]);
  await onA.until(150, "q-");
  await onB.until(150, "p-");
  // A marker after the rest: once it crossed, anything looping would have come back too.
  msgfs.publish(b, "end");
  await onA.until(1, "end");
  msgfs.publish(a, "end2");
  await onB.until(1, "end2");
  await new Promise((r) => setTimeout(r, 500));
  for (const [w, where] of [[onA, "A"], [onB, "B"]] as const) {
    assertExactly(w.got, "p-", 150, where);
    assertExactly(w.got, "q-", 150, where);
    assert.equal(w.got.length, 302, `${where}: nothing else arrived`);
  }
});

Deno.test("bridge: a chain carries a message on (A to B to C), once even when it arrives by two ways", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats` });
  const [a, b, c, d] = ["a", "b", "c", "d"].map((m) => `${dir.path}/${m}`) as [
    string,
    string,
    string,
    string,
  ];
  for (const m of [a, b, c, d]) Deno.mkdirSync(m);
  const one = `jetstream://${server.address}/S1/one`;
  const two = `jetstream://${server.address}/S2/two`;
  const state = (m: string) => ["--state", `${dir.path}/state-${m}`];
  // A -> S1 -> B -> S2 -> C and D; S1 -> C directly as well.
  await using p1 = new BridgeProc([`dir:${a}`, one, ...state("a")]);
  await using p2 = new BridgeProc([one, `dir:${b}`, ...state("b")]);
  await using p3 = new BridgeProc([`dir:${b}`, two, ...state("b")]);
  await using p4 = new BridgeProc([two, `dir:${c}`, ...state("c")]);
  await using p5 = new BridgeProc([one, `dir:${c}`, ...state("c")]);
  await using p6 = new BridgeProc([two, `dir:${d}`, ...state("d")]);
  for (const p of [p1, p2, p3, p4, p5, p6]) await p.ready();
  await using onB = new Watch(b);
  await using onC = new Watch(c);
  await using onD = new Watch(d);
  await publishPaced(a, "c-", 100);
  await onB.until(100, "c-");
  await onC.until(100, "c-");
  await onD.until(100, "c-");
  // A marker by the longer way (B to C through S2) after the rest: the copies have come.
  msgfs.publish(b, "end");
  await onC.until(1, "end");
  await new Promise((r) => setTimeout(r, 500));
  assertExactly(onB.got, "c-", 100, "B");
  assertExactly(onD.got, "c-", 100, "D (only by the chain)");
  // C: each once (by two ways, the first copy wins: the order is each way's own).
  const onlyC = onC.got.filter((t) => t !== "end");
  assert.deepEqual(
    [...onlyC].sort(),
    Array.from({ length: 100 }, (_, i) => `c-${i}`).sort(),
    "C: every message once",
  );
});

Deno.test("bridge: bad input gives one clear line", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  Deno.mkdirSync(bus);
  const spaces = await fsbus(["bridge", `dir:${bus}`, "nats://127.0.0.1:4222/a b"]);
  assert.equal(spaces.code, 2);
  assert.match(
    spaces.stderr,
    /^fsbus: Cannot use NATS subject "a b": subjects cannot contain spaces\n$/,
  );
  const wild = await fsbus(["bridge", `dir:${bus}`, "jetstream://127.0.0.1:4222/S/a.*"]);
  assert.equal(wild.code, 2);
  assert.match(wild.stderr, /wildcards are not allowed here/);
  const missing = await fsbus(["bridge", `dir:${dir.path}/nope`, "nats://127.0.0.1:4222/x"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^fsbus: Cannot bridge directory bus ".*\/nope": no such bus\n$/);
  const kind = await fsbus(["bridge", "tcp://x", `dir:${bus}`]);
  assert.equal(kind.code, 2);
  assert.match(kind.stderr, /Cannot use endpoint "tcp:\/\/x": expected dir:/);
  const one = await fsbus(["bridge", `dir:${bus}`]);
  assert.equal(one.code, 2);
});

Deno.test("bridge: unreachable servers are retried with a notice, then used once up", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  Deno.mkdirSync(bus);
  const port = freePort();
  await using b = new BridgeProc([
    `dir:${bus}`,
    `nats://127.0.0.1:${port}/live`,
    "--state",
    `${dir.path}/state`,
  ]);
  await waitFor(
    () =>
      /Cannot connect to "nats:\/\/127\.0\.0\.1:\d+": connection refused; retrying/.test(
        b.err.text(),
      ),
    "a retry notice",
    20_000,
  );
  await using server = await startNats({ dir: `${dir.path}/nats`, port, jetstream: false });
  await b.ready();
  assert.ok(server.pid);
});

Deno.test("bridge: a message over max_payload is a clear error, not a silent drop", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  const out = `${dir.path}/out`;
  Deno.mkdirSync(bus);
  Deno.mkdirSync(out);
  await using server = await startNats({ dir: `${dir.path}/nats`, maxPayload: 4096 });
  await using up = new BridgeProc([
    `dir:${bus}`,
    `jetstream://${server.address}/S/big`,
    "--state",
    `${dir.path}/s1`,
  ]);
  await using down = new BridgeProc([
    `jetstream://${server.address}/S/big`,
    `dir:${out}`,
    "--state",
    `${dir.path}/s2`,
  ]);
  await up.ready();
  await down.ready();
  await using onOut = new Watch(out);
  msgfs.publish(bus, new Uint8Array(8192));
  msgfs.publish(bus, "small");
  await onOut.until(1, "small");
  await waitFor(
    () => /over the server's max_payload of 4096 bytes \(skipped\)/.test(up.err.text()),
    "the error",
  );
  assert.deepEqual(onOut.got, ["small"]);
});
