import assert from "node:assert/strict";
import {
  checkPayload,
  checkSubject,
  connectNats,
  durableConsumer,
  ensureStream,
  type NatsStatus,
  parseServers,
  publishOnce,
  subjectCovers,
} from "../../transports/_nats.ts";
import { FsbusError } from "../../types.ts";
import { tempDir } from "../_helpers.ts";
import { canMakeNetns, freePort, Netns, startCluster, startNats } from "../_nats.ts";

Deno.test("parseServers() and checkSubject() refuse bad input", () => {
  assert.deepEqual(parseServers("a:1,nats://b"), ["nats://a:1", "nats://b:4222"]);
  assert.throws(() => parseServers("a:99999"), FsbusError);
  assert.throws(() => parseServers(""), FsbusError);
  checkSubject("app.events", false);
  checkSubject("app.*.x.>", true);
  assert.throws(() => checkSubject("app events", false), /spaces/);
  assert.throws(() => checkSubject("app.*", false), /wildcards/);
  assert.throws(() => checkSubject("app..x", false), FsbusError);
  assert.ok(subjectCovers("app.>", "app.x.y"));
  assert.ok(subjectCovers("app.>", "app.x.>"));
  assert.ok(subjectCovers("app.*", "app.x"));
  assert.ok(!subjectCovers("app.*", "app.x.y"));
  assert.ok(!subjectCovers("app.x", "app.>"));
  assert.ok(!subjectCovers("app.>", "app"));
});

Deno.test("connectNats() reports an unreachable server and connects once it starts", async () => {
  using dir = tempDir();
  const port = freePort();
  const statuses: NatsStatus[] = [];
  const pending = connectNats(`127.0.0.1:${port}`, {
    retryMs: 100,
    onStatus: (s) => statuses.push(s),
  });
  while (!statuses.some((s) => s.detail.includes("connection refused"))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await using server = await startNats({ dir: dir.path, port, jetstream: false });
  const nc = await pending;
  assert.equal(statuses.at(-1)?.state, "connected");
  assert.match(
    statuses.find((s) => s.detail)!.detail,
    /^Cannot connect to "nats:\/\/127\.0\.0\.1:\d+": connection refused; retrying/,
  );
  assert.throws(() => checkPayload(nc, "x", 2 * 1024 * 1024), /max_payload/);
  await nc.close();
  assert.ok(server.pid);
});

Deno.test("JetStream helpers on a 3-server cluster: stream, ids, durable consumer", async () => {
  using dir = tempDir();
  await using cluster = await startCluster(dir.path);
  const nc = await connectNats(cluster.servers[0]!.address);
  try {
    const jsm = await nc.jetstreamManager();
    await ensureStream(jsm, "T", "t.>");
    await ensureStream(jsm, "T", "t.>"); // idempotent
    assert.equal((await jsm.streams.info("T")).config.num_replicas, 3);
    const js = nc.jetstream();
    const data = new Uint8Array([0, 1, 255]);
    const a = await publishOnce(js, "t.a", data, "id-1");
    const b = await publishOnce(js, "t.a", data, "id-1");
    assert.equal(a.duplicate, false);
    assert.equal(b.duplicate, true);
    await publishOnce(js, "t.b", new Uint8Array([7]), "id-2");
    const c = await durableConsumer(nc, "T", "reader", "t.>");
    const got: number[][] = [];
    const msgs = await c.consume();
    for await (const m of msgs) {
      got.push([...m.data]);
      m.ack();
      if (got.length === 2) break;
    }
    assert.deepEqual(got, [[0, 1, 255], [7]]);
  } finally {
    await nc.close();
  }
});

Deno.test({
  name: "connectNats() reaches a server in its own network namespace over a veth pair",
  ignore: !canMakeNetns(),
  fn: async () => {
    using dir = tempDir();
    await using ns = await Netns.create();
    await using server = await startNats({ dir: dir.path, host: ns.nsAddr, netns: ns.name });
    const nc = await connectNats(server.address);
    const sub = nc.subscribe("x", { max: 1 });
    nc.publish("x", new Uint8Array([42]));
    for await (const m of sub) assert.deepEqual([...m.data], [42]);
    await nc.close();
  },
});
