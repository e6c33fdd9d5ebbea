import assert from "node:assert/strict";
import {
  checkGroup,
  checkNodeName,
  join,
  list,
  reachesAny,
} from "../../transports/messagefs/mod.ts";
import { decode, encode } from "../../transports/messagefs/envelope.ts";
import { heardGroups } from "../../transports/messagefs/names.ts";
import { FsbusError } from "../../types.ts";
import { tempDir } from "../_helpers.ts";

Deno.test("checkGroup() normalises paths and refuses '..', '.', empty segments", () => {
  assert.equal(checkGroup("/ops/db/"), "ops/db");
  assert.equal(checkGroup("/"), "");
  assert.equal(checkGroup(""), "");
  for (const bad of ["ops/..", "../x", "a//b", "./a", "a/.hidden", "a b", "x/" + "y".repeat(65)]) {
    assert.throws(
      () => checkGroup(bad),
      (e) => e instanceof FsbusError && e.code === "invalid",
      bad,
    );
  }
  assert.throws(() => checkNodeName(""), FsbusError);
  assert.throws(() => checkNodeName("a/b"), FsbusError);
  assert.throws(() => checkNodeName(".x"), FsbusError);
});

Deno.test("reachesAny() and heardGroups(): a subtree, once per node", () => {
  assert.equal(reachesAny("", []), true);
  assert.equal(reachesAny("ops", ["ops/db", "ops/web"]), true);
  assert.equal(reachesAny("ops/db", ["ops"]), false);
  assert.equal(reachesAny("op", ["ops"]), false);
  assert.deepEqual([...heardGroups(["ops/db", "ops/web"])].sort(), [
    "",
    "ops",
    "ops/db",
    "ops/web",
  ]);
});

Deno.test("decode() refuses anything that is not a whole, valid envelope", () => {
  const id = crypto.randomUUID();
  const good = encode({ id, from: "A", seq: 1, t: 1 }, new Uint8Array([7]));
  assert.deepEqual(decode(good)?.data, new Uint8Array([7]));
  assert.equal(decode(good.subarray(0, 10)), undefined);
  assert.equal(decode(new TextEncoder().encode("MFS1\xff\xff\xff\x7f{}")), undefined);
  assert.equal(decode(encode({ id: "x", from: "A", seq: 1, t: 1 }, new Uint8Array())), undefined);
  assert.equal(decode(encode({ id, from: "A", seq: 0, t: 1 }, new Uint8Array())), undefined);
});

Deno.test("join(): nodes in one process: direct, broadcast, presence, garbage ignored, leave", async () => {
  using dir = tempDir();
  const root = `${dir.path}/mfs`;
  await using a = await join({ root, name: "alice" });
  const presence = a.presence();
  {
    await using b = await join({ root, groups: ["ops/db"] });
    assert.equal(b.name, b.id.replace(/-/g, "").slice(0, 6).toUpperCase());
    const seen = presence[Symbol.asyncIterator]();
    // A file planted in alice's inbox that is not an envelope is dropped, not delivered.
    Deno.writeFileSync(`${root}/default/inbox/${a.id}/junk`, new TextEncoder().encode("junk"));
    await b.send("alice", "one");
    await b.broadcast("/", "two");
    assert.equal((await b.broadcast("ops", "nobody")).recipients, 0);
    const got: string[] = [];
    for await (const m of a.messages()) {
      got.push(`${m.from}:${m.group ?? "-"}:${m.seq}:${new TextDecoder().decode(m.data)}`);
      if (got.length === 2) break;
    }
    assert.deepEqual(got, [`${b.name}:-:1:one`, `${b.name}::2:two`]);
    assert.equal((await seen.next()).value?.kind, "join");
    assert.deepEqual((await list({ root })).map((p) => p.name).sort(), ["alice", b.name].sort());
    await b.joinGroup("web");
    const update = (await seen.next()).value;
    assert.equal(update?.kind, "update");
    assert.deepEqual(update?.peer.groups, ["ops/db", "web"]);
  }
  // `await using` left: alice sees it, and nothing of b is left in the registry.
  for await (const e of presence) {
    assert.equal(e.kind, "leave");
    break;
  }
  assert.deepEqual(a.peers(), []);
  assert.equal([...Deno.readDirSync(`${root}/default/inbox`)].length, 1);
  await assert.rejects(a.send("nobody", "x"), /no such node/);
});
