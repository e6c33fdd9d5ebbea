import assert from "node:assert/strict";
import { bridge, parseConfig, parseEndpoint, statusLine } from "../../transports/bridge/mod.ts";
import * as msgfs from "../../transports/msgfs/mod.ts";
import * as mq from "../../transports/mq/mod.ts";
import * as fanout from "../../transports/fanout/mod.ts";
import * as filebus from "../../transports/filebus/mod.ts";
import { FsbusError } from "../../types.ts";
import { tempDir, waitFor } from "../_helpers.ts";
import { FileLock } from "../../sys/flock.ts";
import { startCluster, startNats } from "../_nats.ts";
import { connectNats, loadNats } from "../../transports/_nats.ts";

const dec = new TextDecoder();

/** Every message of a bus, as text, in arrival order. */
function watch(dir: string, options: msgfs.SubscribeOptions = { recursive: true }) {
  const got: { text: string; topic: string }[] = [];
  const sub = msgfs.subscribe(dir, { since: "all", ...options });
  const loop = (async () => {
    for await (const m of sub) got.push({ text: dec.decode(m.data), topic: m.topic });
  })();
  return {
    got,
    texts: () => got.map((g) => g.text),
    async [Symbol.asyncDispose]() {
      await sub.close();
      await loop;
    },
  };
}

Deno.test("parseEndpoint() reads every kind and refuses bad ones with usage errors", () => {
  using dir = tempDir();
  mq.mkgroup(`${dir.path}/g`).close();
  assert.deepEqual(parseEndpoint("dir:/x/bus#news"), {
    kind: "dir",
    path: "/x/bus",
    topic: "news",
    text: "dir:/x/bus#news",
  });
  assert.equal(parseEndpoint(`mq:${dir.path}/g`).kind, "mq");
  const stream = parseEndpoint(`mq:${dir.path}/g/1`);
  assert.ok(stream.kind === "mq" && stream.stream === "1" && stream.group === `${dir.path}/g`);
  const f = parseEndpoint("fanout:news", { root: "/r" });
  assert.ok(f.kind === "fanout" && f.root === "/r");
  const js = parseEndpoint("jetstream://a:4222,b/APP/app.events");
  assert.ok(js.kind === "jetstream");
  assert.deepEqual(js.servers, ["nats://a:4222", "nats://b:4222"]);
  assert.equal(js.stream, "APP");
  assert.equal(js.subject, "app.events");
  for (
    const bad of [
      "nowhere",
      "dir:",
      "dir:/x#",
      "nats://h:4222",
      "nats://h:4222/a b",
      "nats://h:4222/a.>",
      "jetstream://h:4222/app",
      "jetstream://h:4222/A.B/app",
      "jetstream://h:99999/A/app",
    ]
  ) {
    assert.throws(
      () => parseEndpoint(bad),
      (err) => err instanceof FsbusError && err.code === "usage",
      bad,
    );
  }
});

Deno.test("parseConfig() reads one bridge per line and names a bad line", () => {
  const specs = parseConfig(
    "# buses\ndir:/a  jetstream://h/S/s  --both\n\nmq:/g nats://h/x --history --name n1 # c\n",
    "b.conf",
  );
  assert.deepEqual(specs, [
    { from: "dir:/a", to: "jetstream://h/S/s", both: true, history: false },
    { from: "mq:/g", to: "nats://h/x", both: false, history: true, name: "n1" },
  ]);
  assert.throws(
    () => parseConfig("dir:/a nats://h/x --nope\n", "b.conf"),
    /"b\.conf:1": unknown option "--nope"/,
  );
  assert.throws(() => parseConfig("# nothing\n", "b.conf"), /no bridges/);
});

Deno.test("bridge() joins two directory buses both ways without loops, topics kept", async () => {
  using dir = tempDir();
  const a = `${dir.path}/a`;
  const b = `${dir.path}/b`;
  Deno.mkdirSync(a);
  Deno.mkdirSync(b);
  await using onA = watch(a);
  await using onB = watch(b);
  {
    await using br = await bridge(`dir:${a}`, `dir:${b}`, {
      both: true,
      stateDir: `${dir.path}/s`,
    });
    msgfs.publish(a, "from a", { topic: "news" });
    msgfs.publish(b, "from b");
    await waitFor(
      () => onA.got.length === 2 && onB.got.length === 2,
      "both messages on both buses",
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(onA.got.length + onB.got.length, 4);
    assert.deepEqual(onB.got.find((m) => m.text === "from a"), { text: "from a", topic: "news" });
    assert.equal(br.status.state, "local");
    assert.deepEqual(br.status.directions.map((d) => d.delivered), [1, 1]);
    assert.match(statusLine(br.status), /^local; dir:.* -> dir:.*: in 1 out 1 skipped 0/);
    // Each sink keeps one empty file ready for its next message.
    for (const bus of [a, b]) {
      const spares = [...Deno.readDirSync(`${bus}/.fsbus-tmp`)];
      assert.equal(spares.length, 1, `${bus}: one spare`);
      assert.equal(Deno.statSync(`${bus}/.fsbus-tmp/${spares[0]!.name}`).size, 0);
    }
  }
  // Closed: the spares are gone.
  for (const bus of [a, b]) assert.deepEqual([...Deno.readDirSync(`${bus}/.fsbus-tmp`)], []);
  // Restarted with the same state: nothing is carried again.
  await using again = await bridge(`dir:${a}`, `dir:${b}`, {
    both: true,
    stateDir: `${dir.path}/s`,
  });
  msgfs.publish(a, "later");
  await waitFor(() => onB.texts().includes("later"), "the later message");
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(onB.got.length, 3);
  assert.equal(onA.got.length, 3);
  assert.deepEqual(again.status.directions.map((d) => d.delivered), [1, 0]);
});

Deno.test("bridge() carries a bus's own messages while another bridge holds the written list; a bridge's own waits for it", async () => {
  using dir = tempDir();
  const [a, b, c] = ["a", "b", "c"].map((n) => `${dir.path}/${n}`) as [string, string, string];
  for (const d of [a, b, c]) Deno.mkdirSync(d);
  await using onB = watch(b);
  const state = `${dir.path}/s`;
  // c -> a writes into a (recording into a's list of written ids); a -> b reads a.
  await using into = await bridge(`dir:${c}`, `dir:${a}`, { stateDir: state });
  await using out = await bridge(`dir:${a}`, `dir:${b}`, { stateDir: state });
  msgfs.publish(c, "through a");
  await waitFor(() => onB.texts().includes("through a"), "the first message on b");
  // The ids of the messages a bridge writes end alike: the mark of "look me up".
  const written = [...Deno.readDirSync(a)].filter((e) => e.isFile).map((e) => e.name);
  assert.equal(written.length, 1);
  const mark = written[0]!.slice(32);
  // a's list (into's sink and out's source share it) is the one with that id.
  const lists = [...Deno.readDirSync(state)].filter((e) => e.name.startsWith("bus-"))
    .map((e) => `${state}/${e.name}/written`)
    .filter((p) => Deno.readTextFileSync(p).includes(written[0]!));
  assert.equal(lists.length, 1);
  {
    using held = FileLock.open(`${lists[0]!}.lock`);
    assert.ok(held.tryLock());
    // Published on a: carried at once, the list's lock not needed.
    msgfs.publish(a, "published on a");
    await waitFor(() => onB.texts().includes("published on a"), "a's own message on b");
    // An id with the mark is looked up in the list, under its lock: it waits.
    const id = msgfs.newId().slice(0, 32) + mark;
    const pub = new msgfs.Publisher(a);
    pub.publish("marked", { id });
    await pub.close();
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!onB.texts().includes("marked"));
  }
  await waitFor(() => onB.texts().includes("marked"), "the marked message, after");
  assert.deepEqual(onB.texts(), ["through a", "published on a", "marked"]);
  assert.equal(into.status.directions[0]!.delivered, 1);
  assert.deepEqual(out.status.directions[0]!.delivered, 3);
});

Deno.test("bridge() carries a fanout topic into a directory bus topic", async () => {
  using dir = tempDir();
  const root = `${dir.path}/topics`;
  const bus = `${dir.path}/bus`;
  Deno.mkdirSync(bus);
  fanout.createTopic("news", { root, messages: true });
  await using onBus = watch(bus, { topic: "news" });
  await using br = await bridge("fanout:news", `dir:${bus}#news`, { root, stateDir: false });
  for (let i = 0; i < 50; i++) fanout.publish("news", `n${i}`, { root });
  await waitFor(() => onBus.got.length === 50, "50 messages");
  assert.deepEqual(onBus.texts(), Array.from({ length: 50 }, (_, i) => `n${i}`));
  assert.equal(br.status.directions[0]!.delivered, 50);
});

Deno.test("bridge() carries a lossless filebus file into an mq stream; its end ends the bridge", async () => {
  using dir = tempDir();
  const file = `${dir.path}/pipe`;
  const group = `${dir.path}/g`;
  mq.mkgroup(group, { replay: "all" }).close();
  await using br = await bridge(`filebus:${file}`, `mq:${group}/s`, {
    lossless: true,
    stateDir: false,
  });
  {
    await using p = filebus.producer(file, { lossless: true });
    for (let i = 0; i < 20; i++) await p.write(`chunk ${i}\n`);
  }
  await br.done;
  const got: string[] = [];
  for await (const m of mq.read(group, ["s"], { replay: "all" })) {
    got.push(dec.decode(m.data));
    if (got.length === 20) break;
  }
  assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => `chunk ${i}\n`));
});

Deno.test("bridge() over core NATS: live messages, headers carry the metadata", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats`, jetstream: false });
  const a = `${dir.path}/a`;
  const b = `${dir.path}/b`;
  Deno.mkdirSync(a);
  Deno.mkdirSync(b);
  await using onB = watch(b);
  const url = `nats://${server.address}/live`;
  await using down = await bridge(url, `dir:${b}`, { stateDir: false });
  await using up = await bridge(`dir:${a}`, url, { stateDir: false });
  assert.equal(up.status.state, "connected");
  const bytes = new Uint8Array([0, 255, 10, 13, 0]);
  msgfs.publish(a, bytes, { topic: "t/u" });
  msgfs.publish(a, "root");
  await waitFor(() => onB.got.length === 2, "two messages");
  assert.deepEqual(onB.got.map((m) => m.topic), ["t/u", ""]);
  const first = [...Deno.readDirSync(`${b}/t/u`)].filter((e) => e.isFile)[0]!;
  assert.deepEqual(Deno.readFileSync(`${b}/t/u/${first.name}`), bytes);
  assert.equal(down.status.directions[0]!.delivered, 2);
});

/** Asserts that the shared list's lock of the one local bus under `state` is not held. */
function assertListFree(state: string): void {
  const list = [...Deno.readDirSync(state)].find((e) => e.name.startsWith("bus-"))!;
  using probe = FileLock.open(`${state}/${list.name}/written.lock`);
  assert.ok(probe.tryLock(), "the list's lock is free once the burst is handled");
  probe.unlock();
}
Deno.test("bridge() from core NATS lets the bus's list go after a burst whose last message is skipped", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats`, jetstream: false });
  const b = `${dir.path}/b`;
  Deno.mkdirSync(b);
  const state = `${dir.path}/s`;
  const url = `nats://${server.address}/live`;
  await using down = await bridge(url, `dir:${b}`, { stateDir: state });
  const nc = await connectNats(server.address);
  try {
    const { headers } = await loadNats();
    // Bursts (one flush, so that many messages come in one socket read): a message, then a pin
    // session's state, which a directory bus does not take (skipped). The message before it
    // keeps the list's lock for it (`more`); the skip must let it go.
    const pin = headers();
    pin.set("Fsbus-Pin-State", "1");
    // The bridge's subscription is live once a message gets through.
    const d = down.status.directions[0]!;
    for (let i = 0; d.received === 0 && i < 2000; i++) {
      if (i % 20 === 0) nc.publish("live._", new TextEncoder().encode("ping"), { headers: pin });
      await new Promise((r) => setTimeout(r, 5));
    }
    for (let i = 0; i < 200; i++) {
      nc.publish("live._", new TextEncoder().encode(`m${i}`));
      nc.publish("live._", new TextEncoder().encode("state"), { headers: pin });
    }
    await nc.flush();
  } finally {
    await nc.close();
  }
  const d = down.status.directions[0]!;
  await waitFor(() => d.delivered === 200 && d.received === 200 + d.skipped, "200 written");
  assertListFree(state);
});

Deno.test("bridge() from core NATS into an mq group lets the group's list go after a burst ending in a pin state", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats`, jetstream: false });
  const group = `${dir.path}/g`;
  mq.mkgroup(group, { replay: "all" }).close();
  const state = `${dir.path}/s`;
  await using down = await bridge(`nats://${server.address}/pin`, `mq:${group}`, {
    stateDir: state,
  });
  const d = down.status.directions[0]!;
  const nc = await connectNats(server.address);
  try {
    const { headers } = await loadNats();
    // A pin session's state (written as the group's mirror, not through the list's lock)
    // after each message, in bursts: the message before keeps the lock for it (`more`).
    const pin = headers();
    pin.set("Fsbus-Pin-State", "1");
    const session = {
      state: { id: "s1", command: ["sh"], state: "running", created: new Date().toISOString() },
      streams: [],
    };
    const stateBytes = new TextEncoder().encode(JSON.stringify(session));
    for (let i = 0; d.received === 0 && i < 2000; i++) {
      if (i % 20 === 0) nc.publish("pin._", stateBytes, { headers: pin });
      await new Promise((r) => setTimeout(r, 5));
    }
    for (let i = 0; i < 200; i++) {
      nc.publish("pin._", new TextEncoder().encode(`m${i}`));
      nc.publish("pin._", stateBytes, { headers: pin });
    }
    await nc.flush();
  } finally {
    await nc.close();
  }
  await waitFor(() => d.received >= 400 && d.delivered === d.received, "every message written");
  assertListFree(state);
});

Deno.test("bridge() into JetStream keeps the publisher's order while the stream's leader changes", async () => {
  using dir = tempDir();
  await using cluster = await startCluster(`${dir.path}/nats`);
  const [s0, s1] = cluster.servers;
  const a = `${dir.path}/a`;
  Deno.mkdirSync(a);
  const nc = await connectNats(s1!.address);
  try {
    const notices: string[] = [];
    await using up = await bridge(`dir:${a}`, `jetstream://${s0!.address}/ORD/ord`, {
      stateDir: `${dir.path}/state`,
      onNotice: (t) => notices.push(t),
    });
    // Leaders step down every 300 ms while 3,000 messages go in (pipelined publishes are in
    // flight at each change).
    let publishing = true;
    let changes = 0;
    const stepping = (async () => {
      while (publishing) {
        await new Promise((r) => setTimeout(r, 300));
        const r = await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.ORD", undefined, {
          timeout: 5000,
        }).catch(() => undefined);
        if (r && !dec.decode(r.data).includes('"error"')) changes++;
      }
    })();
    const n = 3000;
    for (let i = 0; i < n; i++) {
      msgfs.publish(a, `m-${i}`);
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
    }
    publishing = false;
    await stepping;
    assert.ok(changes >= 2, `the leader changed ${changes} times`);
    await waitFor(() => up.status.directions[0]!.delivered === n, "every message stored", 60_000);
    // The stream, read from its start: each message once, in the publisher's order.
    const jsm = await nc.jetstreamManager();
    const info = await jsm.consumers.add("ORD", { mem_storage: true, num_replicas: 1 });
    const c = await nc.jetstream().consumers.get("ORD", info.name);
    const got: string[] = [];
    for await (const m of await c.fetch({ max_messages: n, expires: 10_000 })) {
      got.push(dec.decode(m.data));
      if (got.length === n) break;
    }
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m-${i}`));
    assert.ok(!notices.some((t) => t.includes("out of order")), notices.join("\n"));
  } finally {
    await nc.close();
  }
});

Deno.test("bridge() takes over an earlier version's state: ids it had listed are not carried again", async () => {
  using dir = tempDir();
  const p = `${dir.path}/p`;
  const q = `${dir.path}/q`;
  Deno.mkdirSync(p);
  Deno.mkdirSync(q);
  const old = msgfs.publish(p, "carried before");
  msgfs.publish(p, "new");
  // The earlier layout: one "seen" list in the bridge's own state directory.
  const state = `${dir.path}/state`;
  Deno.mkdirSync(`${state}/mig`, { recursive: true });
  Deno.writeTextFileSync(`${state}/mig/seen`, `${old.id}\n`);
  await using onQ = watch(q);
  {
    await using _b = await bridge(`dir:${p}`, `dir:${q}`, {
      name: "mig",
      stateDir: state,
      history: true,
    });
    await waitFor(() => onQ.texts().includes("new"), "the new message");
  }
  assert.deepEqual(onQ.texts(), ["new"]);
  assert.ok(Deno.statSync(`${state}/mig/seen.migrated`).isFile);
});

Deno.test("bridge() from core NATS takes each message's topic from its subject when it has no fsbus headers, subjects alternating", async () => {
  using dir = tempDir();
  await using server = await startNats({ dir: `${dir.path}/nats`, jetstream: false });
  const b = `${dir.path}/b`;
  Deno.mkdirSync(b);
  await using down = await bridge(`nats://${server.address}/live`, `dir:${b}`, {
    stateDir: false,
  });
  const nc = await connectNats(server.address);
  const d = down.status.directions[0]!;
  const subjects = ["live.news", "live._", "live.a.b", "live.news", "live.news", "live._"];
  try {
    // The bridge's subscription is live once a message gets through.
    for (let i = 0; d.received === 0 && i < 2000; i++) {
      if (i % 20 === 0) nc.publish("live.warm", new TextEncoder().encode("warm"));
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const [i, s] of subjects.entries()) nc.publish(s, new TextEncoder().encode(`m${i}`));
    await nc.flush();
  } finally {
    await nc.close();
  }
  const existing = (path: string) => {
    try {
      return [...Deno.readDirSync(path)];
    } catch {
      return [];
    }
  };
  const read = (topic: string) =>
    [...(existing(topic ? `${b}/${topic}` : b))].filter((e) => e.isFile)
      .map((e) => Deno.readTextFileSync(`${topic ? `${b}/${topic}` : b}/${e.name}`)).sort();
  await waitFor(
    () => read("news").length + read("").length + read("a/b").length === subjects.length,
    "all written",
  );
  assert.deepEqual(read("news"), ["m0", "m3", "m4"]);
  assert.deepEqual(read(""), ["m1", "m5"]);
  assert.deepEqual(read("a/b"), ["m2"]);
});
