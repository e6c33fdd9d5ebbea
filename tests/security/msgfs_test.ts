/**
 * Attacks on a directory bus by another user (uid 65534, and 65533 as a second member of a
 * group the test makes), each asserting that the attack fails and the victim's data is intact.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as msgfs from "../../transports/msgfs/mod.ts";
import { newId } from "../../transports/msgfs/names.ts";
import {
  collect,
  fsbus,
  inotifyWatches,
  runnableByOthers,
  sh,
  stop,
  tempDir,
  waitFor,
} from "../_helpers.ts";

const NOBODY = 65534;
const OTHER = 65533;

/** A Unix group made for one test (name prefix fsbt-msgfs-), removed when disposed. */
async function makeGroup(): Promise<{ name: string; gid: number } & AsyncDisposable> {
  const name = `fsbt-msgfs-${Deno.pid}-${Math.floor(Math.random() * 1e6)}`;
  const r = await sh(`groupadd ${name} && getent group ${name} | cut -d: -f3`);
  assert.equal(r.code, 0, r.stderr);
  return {
    name,
    gid: Number(r.text.trim()),
    async [Symbol.asyncDispose]() {
      await sh(`groupdel ${name}`);
    },
  };
}

/** A directory others may enter (a temp dir is 0700), holding the bus. */
function openRoom(): { path: string } & Disposable {
  const room = tempDir();
  Deno.chmodSync(room.path, 0o755);
  return room;
}

/** The setpriv prefix that runs a command as `uid` with `gid` as its only extra group. */
function as(uid: number, gid?: number, umask = "022"): string[] {
  return [
    "setpriv",
    `--reuid=${uid}`,
    `--regid=${uid}`,
    gid === undefined ? "--clear-groups" : `--groups=${gid}`,
    "--",
    "sh",
    "-c",
    `umask ${umask} && exec "$0" "$@"`,
  ];
}

/** Runs a Python script as another user, to completion. */
async function python(uid: number, gid: number | undefined, script: string, ...args: string[]) {
  const [cmd, ...rest] = as(uid, gid);
  const r = await new Deno.Command(cmd!, {
    args: [...rest, "python3", "-c", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: r.code,
    text: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

/** Runs `fsbus ARGS` as another user, to completion. */
async function fsbusAs(uid: number, gid: number | undefined, umask: string, args: string[]) {
  using home = tempDir();
  Deno.chmodSync(home.path, 0o777);
  const { deno, cli } = runnableByOthers();
  const [cmd, ...rest] = as(uid, gid, umask);
  const r = await new Deno.Command(cmd!, {
    args: [...rest, deno, "run", "-A", "--quiet", cli, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_DIR: home.path, HOME: home.path },
  }).output();
  return {
    code: r.code,
    text: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

/** Starts a member swapping two names (a topic and a symlink) in a tight
 * `renameat2(RENAME_EXCHANGE)` loop; stop it with `stop()`. */
async function startSwapper(gid: number, a: string, b: string): Promise<Deno.ChildProcess> {
  const [cmd, ...rest] = as(NOBODY, gid);
  const swapper = new Deno.Command(cmd!, {
    args: [
      ...rest,
      "python3",
      "-c",
      `import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
end = time.time() + 60
print("swapping", flush=True)
while time.time() < end:
    libc.renameat2(-100, a, -100, b, 2)`,
      a,
      b,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = swapper.stdout.getReader();
  await reader.read(); // "swapping"
  reader.releaseLock();
  return swapper;
}

const OLD = new Date("2001-01-01T00:00:00Z");

Deno.test("a member swapping a topic for a symlink (RENAME_EXCHANGE loop) never makes gc delete outside the bus", async () => {
  await using group = await makeGroup();
  using room = openRoom();
  const bus = `${room.path}/bus`;
  msgfs.init(bus, { access: "shared", group: group.gid, ttlMs: 1000 });
  // The victim: root's own old files, outside the bus.
  const victim = `${room.path}/victim`;
  Deno.mkdirSync(victim, { mode: 0o700 });
  const names = Array.from({ length: 200 }, (_, i) => `precious-${i}`);
  for (const n of names) {
    Deno.writeTextFileSync(`${victim}/${n}`, n);
    Deno.utimeSync(`${victim}/${n}`, OLD, OLD);
  }
  // The member's topic (with expired messages to sweep) and a symlink to swap it with.
  const setup = await python(
    NOBODY,
    group.gid,
    `import os, sys
bus, victim = sys.argv[1:3]
os.mkdir(bus + "/t")
for i in range(50):
    p = bus + "/t/old-%d" % i
    open(p, "w").write("x")
    os.utime(p, (978307200, 978307200))
os.symlink(victim, bus + "/l")`,
    bus,
    victim,
  );
  assert.equal(setup.code, 0, setup.stderr);
  const swapper = await startSwapper(group.gid, `${bus}/t`, `${bus}/l`);
  try {
    const deadline = Date.now() + 3000;
    let sweeps = 0;
    while (Date.now() < deadline || sweeps < 50) {
      await msgfs.gc(bus, { ttlMs: 1000 });
      sweeps++;
    }
  } finally {
    await stop(swapper);
  }
  const left = [...Deno.readDirSync(victim)].map((e) => e.name).sort();
  assert.deepEqual(left, [...names].sort(), "every file outside the bus is still there");
  for (const n of names) assert.equal(Deno.readTextFileSync(`${victim}/${n}`), n);
});

Deno.test("a member swapping a topic for a symlink never makes a recursive replay deliver files outside the bus", async () => {
  await using group = await makeGroup();
  using room = openRoom();
  const bus = `${room.path}/bus`;
  msgfs.init(bus, { access: "shared", group: group.gid });
  const victim = `${room.path}/victim`;
  Deno.mkdirSync(victim, { mode: 0o700 });
  for (let i = 0; i < 20; i++) Deno.writeTextFileSync(`${victim}/${newId()}`, `secret-${i}`);
  const setup = await python(
    NOBODY,
    group.gid,
    `import os, sys
os.mkdir(sys.argv[1] + "/t")
open(sys.argv[1] + "/t/m", "w").write("member")
os.symlink(sys.argv[2], sys.argv[1] + "/l")`,
    bus,
    victim,
  );
  assert.equal(setup.code, 0, setup.stderr);
  msgfs.publish(bus, "end");
  const swapper = await startSwapper(group.gid, `${bus}/t`, `${bus}/l`);
  const seen: string[] = [];
  try {
    const deadline = Date.now() + 3000;
    for (let round = 0; round < 40 || Date.now() < deadline; round++) {
      for await (const m of msgfs.subscribe(bus, { since: "all", recursive: true })) {
        const text = new TextDecoder().decode(m.data);
        seen.push(text);
        if (text === "end") break;
      }
    }
  } finally {
    await stop(swapper);
  }
  assert.ok(seen.includes("end"));
  assert.deepEqual(seen.filter((t) => t.startsWith("secret")), [], "nothing from outside the bus");
  assert.equal([...Deno.readDirSync(victim)].length, 20);
});

Deno.test("topics made by members take the bus's mode whatever their umask; a member cannot delete, replace or forge another's message", async () => {
  await using group = await makeGroup();
  using room = openRoom();
  const bus = `${room.path}/bus`;
  msgfs.init(bus, { access: "shared", group: group.gid });
  // Member A publishes to a new topic with umask 022 (and 077 for a nested one).
  let r = await fsbusAs(NOBODY, group.gid, "022", ["pub", bus, "--topic", "t", "from A"]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbusAs(NOBODY, group.gid, "077", ["pub", bus, "--topic", "deep/er", "A deep"]);
  assert.equal(r.code, 0, r.stderr);
  for (const t of ["t", "deep", "deep/er"]) {
    const st = Deno.statSync(`${bus}/${t}`);
    assert.equal(st.mode! & 0o7777, 0o3770, `mode of ${t}`);
    assert.equal(st.gid, group.gid, `group of ${t}`);
    assert.equal(st.uid, NOBODY);
  }
  const [aId] = [...Deno.readDirSync(`${bus}/t`)].map((e) => e.name);
  const aPath = `${bus}/t/${aId}`;
  // Member B (umask 077) publishes to A's topic and subscribes to a topic of its own making.
  r = await fsbusAs(OTHER, group.gid, "077", ["pub", bus, "--topic", "t", "from B"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal([...Deno.readDirSync(`${bus}/t`)].length, 2);
  using home = tempDir();
  Deno.chmodSync(home.path, 0o777);
  const { deno, cli } = runnableByOthers();
  const [cmd, ...rest] = as(OTHER, group.gid, "077");
  const sub = new Deno.Command(cmd!, {
    args: [...rest, deno, "run", "-A", "--quiet", cli, "sub", bus, "--topic", "s", "-n", "1"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_DIR: home.path, HOME: home.path },
  }).spawn();
  const out = collect(sub.stdout);
  const err = collect(sub.stderr);
  try {
    await waitFor(() => inotifyWatches(sub.pid) > 0, "B's subscriber to watch");
    assert.equal(Deno.statSync(`${bus}/s`).mode! & 0o7777, 0o3770);
    // A can publish to B's topic (B's umask 077 did not lock A out).
    r = await fsbusAs(NOBODY, group.gid, "022", ["pub", bus, "--topic", "s", "A to B"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sub.status).code, 0, err.text());
    await out.done;
    assert.match(out.text(), /^A to B/);
  } finally {
    await stop(sub);
  }
  // B attacks A's message: delete, rename over, write into, link over, and remove A's topic.
  const attack = await python(
    OTHER,
    group.gid,
    `import os, sys
target = sys.argv[1]
d = os.path.dirname(target)
results = []
def tryit(name, f):
    try:
        f()
        results.append(name + ":ok")
    except OSError as e:
        results.append(name + ":" + str(e.errno))
tryit("unlink", lambda: os.unlink(target))
open(d + "/forged", "w").write("forged")
tryit("rename", lambda: os.rename(d + "/forged", target))
tryit("write", lambda: open(target, "a").write("forged"))
tryit("rmdir", lambda: os.rmdir(d))
tryit("rename-topic", lambda: os.rename(d, d + "-x"))
print(" ".join(results))`,
    aPath,
  );
  assert.equal(attack.code, 0, attack.stderr);
  for (const part of attack.text.trim().split(" ")) {
    assert.doesNotMatch(part, /:ok$/, `B's attack succeeded: ${attack.text}`);
  }
  assert.equal(Deno.readTextFileSync(aPath), "from A");
  assert.equal(Deno.statSync(aPath).uid, NOBODY);
});

Deno.test("a settings file planted by a member (FIFO, symlink to /dev/zero, huge file) gives a clear error at once", async () => {
  await using group = await makeGroup();
  using room = openRoom();
  const bus = `${room.path}/bus`;
  msgfs.init(bus, { access: "shared", group: group.gid });
  Deno.removeSync(`${bus}/.fsbus.json`); // a bus made without settings: members may add them
  const plant = (what: string) =>
    python(
      NOBODY,
      group.gid,
      `import os, sys
p = sys.argv[1] + "/.fsbus.json"
if os.path.lexists(p): os.unlink(p)
what = sys.argv[2]
if what == "fifo": os.mkfifo(p, 0o666)
elif what == "zero": os.symlink("/dev/zero", p)
else: open(p, "w").write('{"ttl_ms": 1000, "pad": "' + "x" * (1 << 20) + '"}')`,
      bus,
      what,
    );
  const cases: [string, string][] = [
    ["fifo", "not a regular file"],
    ["zero", "a symbolic link"],
    ["huge", "larger than 65536 bytes"],
  ];
  for (const [what, why] of cases) {
    const planted = await plant(what);
    assert.equal(planted.code, 0, planted.stderr);
    const expected = `fsbus: Cannot read the settings of "${bus}/.fsbus.json": ${why}\n`;
    for (const args of [["pub", bus, "hi"], ["gc", bus]]) {
      const r = await fsbus(args);
      assert.equal(r.code, 1, `${what}: ${args[0]}`);
      assert.equal(r.stderr, expected);
    }
    assert.throws(() => msgfs.readConfig(bus), { message: expected.slice(7, -1) });
  }
  // Nothing was published meanwhile.
  const names = [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith("."));
  assert.deepEqual(names, []);
});

Deno.test("a member swapping a topic for a symlink never makes a publisher write outside the bus", async () => {
  await using group = await makeGroup();
  using room = openRoom();
  const bus = `${room.path}/bus`;
  msgfs.init(bus, { access: "shared", group: group.gid });
  const victim = `${room.path}/victim`;
  Deno.mkdirSync(victim, { mode: 0o700 });
  const setup = await python(
    NOBODY,
    group.gid,
    `import os, sys
os.mkdir(sys.argv[1] + "/t")
os.symlink(sys.argv[2], sys.argv[1] + "/l")`,
    bus,
    victim,
  );
  assert.equal(setup.code, 0, setup.stderr);
  const swapper = await startSwapper(group.gid, `${bus}/t`, `${bus}/l`);
  let published = 0;
  try {
    const deadline = Date.now() + 3000;
    for (let round = 0; round < 40 || Date.now() < deadline; round++) {
      // A new publisher each round: it opens the topic again.
      await using pub = new msgfs.Publisher(bus, { sweep: false });
      for (let i = 0; i < 20; i++) {
        try {
          pub.publish("root's message", { topic: "t" });
          published++;
        } catch {
          // the topic was a symlink just then: refused
        }
      }
      await new Promise((r) => setTimeout(r, 0));
    }
  } finally {
    await stop(swapper);
  }
  assert.ok(published > 0);
  assert.deepEqual([...Deno.readDirSync(victim)], [], "nothing was written outside the bus");
});
