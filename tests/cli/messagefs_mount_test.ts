import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import {
  collect,
  HAVE_FUSE as HAVE_DEV_FUSE,
  sh,
  spawnFsbus,
  tempDir,
  waitFor,
} from "../_helpers.ts";
import { freePort, startNats } from "../_nats.ts";
import { count, endNode, say, startNode } from "./_messagefs.ts";

const HAVE_FUSE = HAVE_DEV_FUSE && Deno.uid() === 0;

interface Mounted {
  child: Deno.ChildProcess;
  err: ReturnType<typeof collect>;
  mp: string;
}

async function mountTree(mp: string, args: string[]): Promise<Mounted> {
  Deno.mkdirSync(mp, { recursive: true });
  const child = spawnFsbus(["messagefs", "mount", mp, ...args]);
  const err = collect(child.stderr);
  void child.stdout.cancel();
  await waitFor(() => /mounted network|fsbus: Cannot/.test(err.text()), "the mount", 20_000);
  assert.match(err.text(), /mounted network/);
  return { child, err, mp };
}

async function unmountTree(m: Mounted): Promise<void> {
  try {
    m.child.kill("SIGTERM");
  } catch {
    // gone
  }
  const status = await m.child.status;
  await m.err.done;
  assert.equal(status.code, 0, m.err.text());
  assert.equal(mountAt(m.mp), undefined, "unmounted");
}

/** `ls -a` of a directory, without . and .. */
async function ls(path: string): Promise<string[]> {
  const r = await sh(`ls -a ${path}`);
  return r.text.split("\n").filter((n) => n && n !== "." && n !== "..");
}

Deno.test({
  name: "messagefs mount: two mounts talk with ls, echo, cat, mkdir and rmdir",
  ignore: !HAVE_FUSE,
  async fn() {
    using dir = tempDir();
    const root = `${dir.path}/reg`;
    const a = await mountTree(`${dir.path}/fsbt-mfs-a`, ["--root", root, "--name", "alice"]);
    let b: Mounted | undefined;
    let inbox: Deno.ChildProcess | undefined;
    try {
      const bob = await mountTree(`${dir.path}/fsbt-mfs-b`, [
        "--root",
        root,
        "--name",
        "bob",
        "-g",
        "ops",
      ]);
      b = bob;
      // Every node is a file at the root, groups are directories, .all and .inbox are hidden.
      await waitFor(async () => (await ls(a.mp)).includes("bob"), "bob in alice's tree");
      assert.deepEqual(await ls(a.mp), [".all", ".inbox", "alice", "bob", "ops"]);
      assert.deepEqual((await sh(`ls ${a.mp}`)).text, "alice\nbob\nops\n");
      assert.deepEqual(await ls(`${a.mp}/ops`), [".all", "bob"]);

      // bob follows his inbox with cat; alice writes with echo.
      inbox = new Deno.Command("cat", { args: [`${bob.mp}/.inbox`], stdout: "piped" }).spawn();
      const seen = collect(inbox.stdout);
      // Give cat time to open the inbox: a message before its open is not shown there.
      await waitFor(async () => {
        await sh(`echo ping > ${a.mp}/bob`);
        return seen.text().includes("alice: ping");
      }, "bob's inbox to be open");
      assert.equal((await sh(`echo hi bob > ${a.mp}/bob`)).code, 0);
      assert.equal((await sh(`echo to ops > ${a.mp}/ops/.all`)).code, 0);
      assert.equal((await sh(`echo to all > ${a.mp}/.all`)).code, 0);
      await waitFor(() => seen.text().includes("alice @/: to all\n"), "the broadcasts");
      const lines = seen.text().split("\n").filter((l) => !l.endsWith("ping"));
      assert.deepEqual(lines, ["alice: hi bob", "alice @/ops: to ops", "alice @/: to all", ""]);
      // bob's own file shows the last message he received.
      assert.equal((await sh(`cat ${bob.mp}/bob`)).text, "to all\n");
      // One message per write(2): two writes are two messages.
      await sh(`printf 'one' > ${a.mp}/bob; printf 'two' > ${a.mp}/bob`);
      await waitFor(() => seen.text().includes("alice: two\n"), "two writes");
      assert.match(seen.text(), /alice: one\nalice: two\n/);

      // mkdir joins a group; the other mount sees it; .all of ops reaches the new member once.
      assert.equal((await sh(`mkdir ${a.mp}/ops/db`)).code, 0);
      await waitFor(async () => (await ls(`${bob.mp}/ops`)).includes("db"), "ops/db at bob");
      assert.deepEqual(await ls(`${bob.mp}/ops/db`), [".all", "alice"]);
      const aInbox = new Deno.Command("cat", { args: [`${a.mp}/.inbox`], stdout: "piped" })
        .spawn();
      const aSeen = collect(aInbox.stdout);
      try {
        await waitFor(async () => {
          await sh(`echo ping > ${bob.mp}/alice`);
          return aSeen.text().includes("bob: ping");
        }, "alice's inbox to be open");
        await sh(`echo to ops again > ${bob.mp}/ops/.all`);
        await waitFor(() => aSeen.text().includes("to ops again"), "alice to get it");
        assert.equal(aSeen.text().split("to ops again").length, 2, "once");
      } finally {
        aInbox.kill();
        await aInbox.status;
        await aSeen.done;
      }
      // rmdir leaves it.
      assert.equal((await sh(`rmdir ${a.mp}/ops/db`)).code, 0);
      await waitFor(async () => !(await ls(`${bob.mp}/ops`)).includes("db"), "ops/db gone");

      // Bad input: a node that does not exist, a bad group name.
      const nobody = await sh(`echo x > ${a.mp}/nobody`);
      assert.notEqual(nobody.code, 0);
      assert.match(nobody.stderr, /No such file or directory/);
      const bad = await sh(`mkdir '${a.mp}/.hidden'`);
      assert.notEqual(bad.code, 0);
    } finally {
      if (inbox) {
        try {
          inbox.kill();
        } catch {
          // ended
        }
        await inbox.status;
        await inbox.stdout.cancel().catch(() => {});
      }
      if (b) await unmountTree(b);
      await unmountTree(a);
    }
    // bob left with his mount: alice's tree no longer shows him.
  },
});

Deno.test({
  name: "messagefs mount over NATS talks to a library node in another process",
  ignore: !HAVE_FUSE,
  async fn() {
    using dir = tempDir();
    const port = freePort();
    await using _server = await startNats({ dir: `${dir.path}/nats`, port, jetstream: false });
    const nats = `127.0.0.1:${port}`;
    const m = await mountTree(`${dir.path}/fsbt-mfs-n`, ["--nats", nats, "--name", "mnt"]);
    const carol = await startNode(["--nats", nats, "--name", "carol", "-g", "lab"]);
    try {
      await waitFor(async () => (await ls(m.mp)).includes("carol"), "carol in the tree");
      assert.deepEqual(await ls(`${m.mp}/lab`), [".all", "carol"]);
      await sh(`echo hello carol > ${m.mp}/carol`);
      await sh(`echo hello lab > ${m.mp}/lab/.all`);
      await waitFor(
        () => count(carol, "hello carol\n") === 1 && count(carol, "hello lab\n") === 1,
        "carol's messages",
      );
      await say(carol, "mnt: hi mount");
      await waitFor(
        async () => (await sh(`cat ${m.mp}/mnt`)).text === "hi mount",
        "the mount's own file",
      );
    } finally {
      await endNode(carol);
      await unmountTree(m);
    }
  },
});
