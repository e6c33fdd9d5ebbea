import assert from "node:assert/strict";
import { fsbus, tempDir, waitFor } from "../_helpers.ts";
import { count, endNode, events, type MfsNode, received, say, startNode } from "./_messagefs.ts";

Deno.test("messagefs: three nodes in separate processes: names, direct, .all, leave, SIGKILL", async () => {
  using dir = tempDir();
  const root = `${dir.path}/mfs`;
  const nodes: MfsNode[] = [];
  try {
    const alice = await startNode(["--root", root, "--name", "alice"]);
    nodes.push(alice);
    const bob = await startNode(["--root", root, "--name", "bob", "-g", "ops/db", "-g", "ops/web"]);
    nodes.push(bob);
    const carol = await startNode(["--root", root, "--group", "ops"]);
    nodes.push(carol);
    // The default name: the first 6 hex digits of the node's UUID, uppercase.
    assert.match(carol.name, /^[0-9A-F]{6}$/);

    // Everyone sees everyone.
    const ls = await fsbus(["messagefs", "ls", "--root", root, "--json"]);
    assert.equal(ls.code, 0, ls.stderr);
    const listing = JSON.parse(ls.text);
    assert.deepEqual(
      listing.nodes.map((n: { name: string }) => n.name).sort(),
      [
        "alice",
        "bob",
        carol.name,
      ].sort(),
    );
    const carolEntry = listing.nodes.find((n: { name: string }) => n.name === carol.name);
    assert.match(carolEntry.id.replace(/-/g, "").toUpperCase(), new RegExp(`^${carol.name}`));
    assert.deepEqual(listing.groups["/ops"].sort(), ["bob", carol.name].sort());
    assert.deepEqual(listing.groups["/ops/db"], ["bob"]);
    await waitFor(
      () => events(alice).filter((e) => e.event === "join").length === 2,
      "alice to see bob and carol join",
    );

    // Direct messages, both ways, with their metadata.
    await say(alice, "bob: hi bob");
    await say(bob, "alice: hi alice");
    await waitFor(() => count(bob, "hi bob") === 1 && count(alice, "hi alice") === 1, "directs");
    const m = received(bob).find((e) => e.data === "hi bob")!;
    assert.equal(m.from, "alice");
    assert.equal(m.group, null);
    assert.equal(m.seq, 1);
    assert.equal(typeof m.time, "string");

    // .all at the root: every other node once; nested: each member once, even bob who is in
    // two subgroups of ops; a deeper group reaches only its members.
    await say(alice, "@/ everyone");
    await say(alice, "@ops to-ops");
    await say(alice, "@ops/db db-only");
    await say(alice, "@/ marker");
    await waitFor(
      () => count(bob, "marker") === 1 && count(carol, "marker") === 1,
      "the marker at bob and carol",
    );
    for (const n of [bob, carol]) {
      assert.equal(count(n, "everyone"), 1);
      assert.equal(count(n, "to-ops"), 1);
    }
    assert.equal(count(bob, "db-only"), 1);
    assert.equal(count(carol, "db-only"), 0);
    assert.equal(count(alice, "everyone"), 0, "a broadcast does not come back to its sender");
    const g = received(bob).find((e) => e.data === "to-ops")!;
    assert.equal(g.group, "/ops");
    // Per-sender order: alice's messages arrive at bob in the order she sent them.
    const seqs = received(bob).filter((e) => e.from === "alice").map((e) => e.seq as number);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));

    // Leaving a group at run time.
    await say(bob, "/leave ops/db");
    await waitFor(
      () => events(alice).some((e) => e.event === "update" && e.name === "bob"),
      "alice to see bob leave ops/db",
    );
    await say(alice, "@ops/db after-leave");
    await say(alice, "bob: marker2");
    await waitFor(() => count(bob, "marker2") === 1, "marker2");
    assert.equal(count(bob, "after-leave"), 0);

    // Leaving the network: the others see it.
    const status = await endNode(carol);
    assert.equal(status.code, 0);
    nodes.splice(nodes.indexOf(carol), 1);
    await waitFor(
      () =>
        [alice, bob].every((n) =>
          events(n).some((e) => e.event === "leave" && e.name === carol.name)
        ),
      "alice and bob to see carol leave",
    );

    // A SIGKILLed node disappears from the others' views and from the registry.
    await endNode(bob, "SIGKILL");
    nodes.splice(nodes.indexOf(bob), 1);
    await waitFor(
      () => events(alice).some((e) => e.event === "leave" && e.name === "bob"),
      "alice to see bob die",
    );
    const after = await fsbus(["messagefs", "ls", "--root", root, "--json"]);
    assert.deepEqual(JSON.parse(after.text).nodes.map((n: { name: string }) => n.name), ["alice"]);
    const left = [...Deno.readDirSync(`${root}/default/nodes`)].map((e) => e.name);
    assert.equal(left.length, 2, left.join(" ")); // alice's info and lock
    assert.equal([...Deno.readDirSync(`${root}/default/inbox`)].length, 1);

    await endNode(alice);
    nodes.splice(0);
    assert.deepEqual([...Deno.readDirSync(`${root}/default/nodes`)], []);
    assert.deepEqual([...Deno.readDirSync(`${root}/default/inbox`)], []);
  } finally {
    for (const n of nodes) await endNode(n, "SIGKILL");
  }
});

Deno.test("messagefs: bad input is refused with one clear line", async () => {
  using dir = tempDir();
  const root = `${dir.path}/mfs`;
  const alice = await startNode(["--root", root, "--name", "alice"]);
  try {
    // A name clash.
    const clash = await fsbus(["messagefs", "join", "--root", root, "--name", "alice"]);
    assert.equal(clash.code, 1);
    assert.match(
      clash.stderr,
      /^fsbus: Cannot join network "default" as "alice": the name is taken/,
    );
    // An unknown node.
    const unknown = await fsbus(["messagefs", "send", "--root", root, "nobody", "hi"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^fsbus: Cannot send to "nobody": no such node in network/);
    // Groups with "..", empty segments.
    for (const g of ["ops/..", "../x", "a//b", "ops/./x"]) {
      const r = await fsbus(["messagefs", "send", "--root", root, `@${g}`, "hi"]);
      assert.equal(r.code, 1, g);
      assert.match(r.stderr, /^fsbus: Cannot use group/, g);
      const j = await fsbus(["messagefs", "join", "--root", root, "-g", g, "-n", "1"]);
      assert.equal(j.code, 1, g);
      assert.match(j.stderr, /^fsbus: Cannot use group/, g);
    }
    // Over the size limit (1 MiB).
    const big = await fsbus(["messagefs", "send", "--root", root, "alice"], {
      stdin: new Uint8Array(1024 * 1024 + 1),
    });
    assert.equal(big.code, 1);
    assert.match(big.stderr, /over the 1048576-byte limit/);
    // Exactly the limit is fine.
    const ok = await fsbus(["messagefs", "send", "--root", root, "alice"], {
      stdin: new Uint8Array(1024 * 1024),
    });
    assert.equal(ok.code, 0, ok.stderr);
    await waitFor(() => received(alice).some((m) => m.size === 1024 * 1024), "the 1 MiB message");
    // A typed line that is neither "NAME: text" nor "@GROUP text".
    await say(alice, "just words");
    await waitFor(() => /Cannot send "just words"/.test(alice.err.text()), "the complaint");
    // Nothing left behind by the refused nodes: only alice is registered.
    const nodes = [...Deno.readDirSync(`${root}/default/nodes`)].map((e) => e.name).sort();
    assert.equal(nodes.length, 2, nodes.join(" "));
    assert.equal([...Deno.readDirSync(`${root}/default/inbox`)].length, 1);
  } finally {
    await endNode(alice, "SIGKILL");
  }
  // A root that others may write to is refused.
  const open = `${dir.path}/open`;
  Deno.mkdirSync(open);
  Deno.chmodSync(open, 0o777);
  const r = await fsbus(["messagefs", "join", "--root", open, "-n", "1"]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^fsbus: Cannot use the messagefs root ".*": writable by others and not sticky/,
  );
});
