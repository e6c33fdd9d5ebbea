import assert from "node:assert/strict";
import { collect, fsbus, spawnFsbus, stop, tempDir, waitFor } from "../_helpers.ts";
import { canMakeNetns, freePort, Netns, startCluster, startNats } from "../_nats.ts";
import { count, endNode, events, type MfsNode, received, say, startNode } from "./_messagefs.ts";

function joinedAll(n: MfsNode, names: string[]): boolean {
  const seen = new Set(
    events(n).filter((e) => e.event === "join" || e.event === "present").map((e) => e.name),
  );
  return names.every((x) => x === n.name || seen.has(x));
}

/** The numbers of the messages "PREFIX-N" a node got, in arrival order. */
function numbers(n: MfsNode, from: string, prefix: string): number[] {
  return received(n)
    .filter((m) => m.from === from && (m.data as string).startsWith(prefix))
    .map((m) => Number((m.data as string).slice(prefix.length)));
}

Deno.test({
  name: "messagefs over a 3-server NATS cluster, one node in its own network namespace; a " +
    "server killed mid-stream loses and duplicates nothing",
  ignore: !canMakeNetns(),
  async fn() {
    using dir = tempDir();
    await using ns = await Netns.create("fsbt-mfs-");
    // Two servers on this side of the veth pair, one in the namespace: the routes and the
    // namespaced node's traffic cross the veth, not loopback.
    await using cluster = await startCluster(dir.path, {
      host: (i) => (i < 2 ? ns.hostAddr : ns.nsAddr),
      netns: (i) => (i === 2 ? ns.name : undefined),
    });
    const [s0, s1, s2] = cluster.servers.map((s) => s.address) as [string, string, string];
    const nodes: MfsNode[] = [];
    try {
      const alice = await startNode(["--name", "alice", "-g", "ops", "--nats", s0]);
      nodes.push(alice);
      const bob = await startNode(["--name", "bob", "-g", "ops/db", "-g", "ops/web", "--nats", s1]);
      nodes.push(bob);
      const carol = await startNode(["--name", "carol", "-g", "ops/web", "--nats", s2], ns.name);
      nodes.push(carol);
      const all = ["alice", "bob", "carol"];
      await waitFor(() => nodes.every((n) => joinedAll(n, all)), "every node to see the others");

      // Names are unique across the network.
      const clash = await fsbus(["messagefs", "join", "--name", "carol", "--nats", s0]);
      assert.equal(clash.code, 1);
      assert.match(clash.stderr, /the name is taken by node .* on /);

      // Direct, around the three servers, and groups.
      await say(alice, "bob: a-to-b");
      await say(bob, "carol: b-to-c");
      await say(carol, "alice: c-to-a");
      await say(alice, "@ops to-ops");
      await say(alice, "@ops/web to-web");
      await say(alice, "@ops/db to-db");
      await waitFor(
        () =>
          count(bob, "a-to-b") === 1 && count(carol, "b-to-c") === 1 &&
          count(alice, "c-to-a") === 1 && count(bob, "to-ops") === 1 &&
          count(carol, "to-ops") === 1 && count(bob, "to-web") === 1 &&
          count(carol, "to-web") === 1 && count(bob, "to-db") === 1,
        "direct and group messages",
      );
      assert.equal(count(carol, "to-db"), 0);
      assert.equal(count(alice, "to-ops"), 0);

      // A stream from alice (on s0) to bob (on s1) directly and to ops (bob and carol); s1
      // is killed while it flows, and bob moves to another server.
      const N = 400;
      const lines = [];
      for (let i = 1; i <= N; i++) lines.push(`bob: d-${i}`, `@ops g-${i}`);
      const writing = (async () => {
        for (let i = 0; i < lines.length; i += 20) {
          await say(alice, lines.slice(i, i + 20).join("\n"));
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      await waitFor(() => numbers(bob, "alice", "d-").length >= 50, "the stream to flow");
      await cluster.servers[1]!.stop(true);
      await writing;
      const expected = Array.from({ length: N }, (_, i) => i + 1);
      await waitFor(
        () =>
          numbers(bob, "alice", "d-").length >= N && numbers(bob, "alice", "g-").length >= N &&
          numbers(carol, "alice", "g-").length >= N,
        "every message of the stream",
        30_000,
      );
      assert.deepEqual(numbers(bob, "alice", "d-"), expected, "bob's direct messages");
      assert.deepEqual(numbers(bob, "alice", "g-"), expected, "bob's group messages");
      assert.deepEqual(numbers(carol, "alice", "g-"), expected, "carol's group messages");
      assert.match(bob.err.text(), /Reconnected to NATS server/);

      // Leaving: the others see it.
      await endNode(carol);
      nodes.splice(nodes.indexOf(carol), 1);
      await waitFor(
        () => events(alice).some((e) => e.event === "leave" && e.name === "carol"),
        "alice to see carol leave",
      );
      // A SIGKILLed node: its heartbeats stop, and the others see it gone.
      await endNode(bob, "SIGKILL");
      nodes.splice(nodes.indexOf(bob), 1);
      await waitFor(
        () => events(alice).some((e) => e.event === "leave" && e.name === "bob"),
        "alice to see bob gone",
      );
      const ls = await fsbus(["messagefs", "ls", "--json", "--nats", s0]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(JSON.parse(ls.text).nodes.map((n: { name: string }) => n.name), ["alice"]);
    } finally {
      for (const n of nodes) await endNode(n, "SIGKILL");
    }
  },
});

Deno.test("messagefs: NATS unreachable gives a clear notice, retries, and joins once it is up", async () => {
  using dir = tempDir();
  const port = freePort();
  const child = spawnFsbus([
    "messagefs",
    "join",
    "--json",
    "--name",
    "late",
    "--nats",
    `127.0.0.1:${port}`,
  ]);
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  try {
    await waitFor(
      () => /Cannot connect to .*connection refused; retrying in the background/.test(err.text()),
      "the notice",
    );
    assert.doesNotMatch(err.text(), /joined network/);
    // A one-shot sender gives up with one line after its timeout... not waited for here; the
    // node keeps trying, and joins once a server answers.
    await using _server = await startNats({ dir: dir.path, port, jetstream: false });
    await waitFor(() => /joined network "default" as "late"/.test(err.text()), "the join", 20_000);
    assert.match(err.text(), /Connected to NATS server/);
    const sent = await fsbus(["messagefs", "send", "--nats", `127.0.0.1:${port}`, "late", "hi"]);
    assert.equal(sent.code, 0, sent.stderr);
    await waitFor(() => out.text().includes('"data":"hi"'), "the message");
  } finally {
    await stop(child);
    await out.done;
    await err.done;
  }
});
