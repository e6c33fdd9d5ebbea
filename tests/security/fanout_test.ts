/**
 * Attacks on fanout topics by a second user (uid 65534), and by a member of a group that
 * shares a ring with root: each must fail or be detected, root's data must stay intact, and
 * root's processes must survive (no SIGBUS, no hang, a clear one-line error at worst).
 *
 * The attacker's tools are plain: bash, coreutils, flock(1) and /usr/bin/python3 for
 * writing bytes at offsets. Groups made here are named `fsbt-fanout-*` and removed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CLI, collect, stop, tempDir, waitFor } from "../_helpers.ts";
import {
  createTopic,
  describeTopic,
  openReader,
  resolveTopic,
} from "../../transports/fanout/mod.ts";
import { Ring } from "../../transports/fanout/ring.ts";
import { FsbusError } from "../../types.ts";
import { lookupGroup } from "../../sys/users.ts";

const NOBODY = 65534;
const PYTHON = "/usr/bin/python3";
/** A hang detector, not a speed check: every command here ends in a few seconds. */
const DEADLINE_MS = 60_000;

interface Run {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], stdin?: string): Promise<Run> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, DEADLINE_MS);
  const out = await child.output();
  clearTimeout(timer);
  assert.equal(hung, false, `${cmd} ${args.join(" ")} hung`);
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Runs fsbus as root (the victim). */
function fsbus(args: string[], stdin?: string): Promise<Run> {
  return run(Deno.execPath(), ["run", "-A", "--quiet", CLI, ...args], stdin);
}

/** Runs a bash script as uid 65534, in group `gid` when given. */
function asNobody(script: string, gid?: number): Promise<Run> {
  const groups = gid === undefined ? ["--clear-groups"] : [`--groups=${gid}`];
  return run("setpriv", [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    ...groups,
    "bash",
    "-c",
    script,
  ]);
}

/** The attacker's byte tool, run as uid 65534 in group `gid`. */
const TOOL = `
import os, struct, sys
op, path = sys.argv[1], sys.argv[2]
def pw(off, data):
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, data, off)
    os.close(fd)
if op == "lock-init":
    stat = open("/proc/1/stat").read()
    start = int(stat[stat.rindex(")") + 2:].split(" ")[19]) & 0x7fffffff
    pw(128, struct.pack("<Q", 1 | (start << 32)))
elif op == "lock-clear":
    pw(128, bytes(8))
elif op == "slots-read":
    fd = os.open(path, os.O_RDONLY)
    print(os.pread(fd, 256, 192).hex())
elif op == "slots-write":
    pw(192, bytes.fromhex(sys.argv[3]))
elif op == "slots-hostile":
    pw(192, struct.pack("<dd", float("nan"), 0.0) * 8 + struct.pack("<dd", 1e15, 0.0) * 8)
elif op == "truncate":
    os.truncate(path, int(sys.argv[3]))
`;

function attack(gid: number, op: string, path: string, ...more: string[]): Promise<Run> {
  const quoted = [op, path, ...more].map((a) => `'${a}'`).join(" ");
  return asNobody(`exec ${PYTHON} -c '${TOOL}' ${quoted}`, gid);
}

/** A group of the test's own, removed on dispose. */
async function makeGroup(): Promise<{ name: string; gid: number } & AsyncDisposable> {
  const name = `fsbt-fanout-${Deno.pid}-${crypto.randomUUID().slice(0, 6)}`;
  const r = await run("groupadd", [name]);
  assert.equal(r.code, 0, r.stderr);
  const gid = lookupGroup(name)!;
  return {
    name,
    gid,
    async [Symbol.asyncDispose]() {
      await run("groupdel", [name]);
    },
  };
}

/** A directory root owns, with the given mode. */
function rootDir(mode: number): { path: string } & Disposable {
  const dir = tempDir();
  Deno.chmodSync(dir.path, mode);
  return dir;
}

function oneLineError(r: Run, pattern: RegExp): void {
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^fsbus: /);
  assert.match(lines[0]!, pattern);
}

Deno.test("fanout security: a topic root another user made, or may write to without sticky, is refused", async () => {
  using parent = rootDir(0o1777);
  const p = parent.path;
  // The issue's attack: nobody makes the root first, open to all, to swap topics later.
  let r = await asNobody(
    `mkdir ${p}/open && chmod 777 ${p}/open && mkdir ${p}/sticky && chmod 1777 ${p}/sticky` +
      ` && ln -s ${p}/mine ${p}/link`,
  );
  assert.equal(r.code, 0, r.stderr);
  Deno.mkdirSync(`${p}/loose`);
  Deno.chmodSync(`${p}/loose`, 0o777);
  Deno.mkdirSync(`${p}/team`);
  Deno.chmodSync(`${p}/team`, 0o770);
  Deno.mkdirSync(`${p}/mine`);
  Deno.chmodSync(`${p}/mine`, 0o1777);
  const refused: [string, RegExp][] = [
    ["open", /owned by uid 65534, not by you or root/],
    ["sticky", /owned by uid 65534, not by you or root/],
    ["loose", /others may write to it and it is not sticky/],
    ["team", /others may write to it and it is not sticky/],
    ["link", /symbolic link owned by uid 65534/],
  ];
  for (const [name, why] of refused) {
    const root = `${p}/${name}`;
    oneLineError(await fsbus(["fanout", "create", "news", "--root", root]), why);
    oneLineError(await fsbus(["fanout", "sub", "news", "--create", "--root", root]), why);
    oneLineError(await fsbus(["pubmsg", "news", "--create", "--root", root], "x\n"), why);
    oneLineError(await fsbus(["fanout", "pub", `${root}/news`, "x"]), why);
    // Nothing was made there.
    assert.deepEqual([...Deno.readDirSync(`${p}/${name === "link" ? "mine" : name}`)], []);
  }
  // A sticky root root owns is what a shared root should be: it works.
  r = await fsbus(["fanout", "create", "news", "--root", `${p}/mine`]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["fanout", "pub", "news", "hello", "--root", `${p}/mine`]);
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("fanout security: topics and lock files planted by another user in a shared root are not followed", async () => {
  using shared = rootDir(0o1777);
  const root = shared.path;
  using outside = rootDir(0o755);
  const secret = `${outside.path}/secret`;
  Deno.writeTextFileSync(secret, "root's data\n");
  Deno.chmodSync(secret, 0o644);
  createTopic("news", { root, mode: 0o600 });
  const ino = Deno.statSync(`${root}/news`).ino;
  // A symlinked topic, a symlinked lock file, and an attempt to replace root's topic.
  let r = await asNobody(
    `ln -s ${root}/news ${root}/evil && ln -s ${secret} ${root}/news.lock && ` +
      `echo forged > ${root}/mine && { mv -f ${root}/mine ${root}/news; true; }`,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(`${root}/news`).ino, ino, "the sticky root kept root's topic");
  oneLineError(
    await fsbus(["fanout", "pub", "evil", "x", "--root", root]),
    /"[^"]*\/evil" is a symbolic link owned by uid 65534/,
  );
  oneLineError(await fsbus(["pubmsg", "news", "--root", root], "x\n"), /is a symbolic link/);
  assert.equal(Deno.readTextFileSync(secret), "root's data\n");
  // A regular lock file of nobody's beside root's topic: refused, named.
  r = await asNobody(`rm -f ${root}/news.lock && touch ${root}/news.lock`);
  assert.equal(r.code, 0, r.stderr);
  oneLineError(await fsbus(["pubmsg", "news", "--root", root], "x\n"), /owned by uid 65534/);
  assert.equal(describeTopic("news", { root }).backend, "ring");
});

Deno.test("fanout security: a topic swapped after it was resolved is detected", () => {
  using dir = rootDir(0o755);
  const root = dir.path;
  createTopic("news", { root });
  createTopic("other", { root });
  const t = resolveTopic("news", { root });
  Deno.renameSync(`${root}/other`, `${root}/news`);
  assert.throws(
    () => Ring.open(t.realPath, { expect: t.stat }),
    (e) => e instanceof FsbusError && /replaced by another file/.test(e.message),
  );
});

Deno.test("fanout security: a device swapped before a reader reopens it is detected", async () => {
  using dir = rootDir(0o755);
  const root = dir.path;
  // baf's layout: a topic is a symlink to a device node (here /dev/zero's numbers).
  assert.equal((await run("mknod", [`${root}/fanout0`, "c", "1", "5"])).code, 0);
  Deno.symlinkSync(`${root}/fanout0`, `${root}/dev`);
  const reader = openReader("dev", { root });
  try {
    assert.equal(reader.resync(), undefined); // the same device: reopened
    // Swapped for another device (/dev/null's numbers): the reopen refuses it.
    Deno.removeSync(`${root}/fanout0`);
    assert.equal((await run("mknod", [`${root}/fanout0`, "c", "1", "3"])).code, 0);
    assert.throws(
      () => reader.resync(),
      (e) => e instanceof FsbusError && /replaced by another device/.test(e.message),
    );
  } finally {
    reader.close();
  }
});

Deno.test("fanout security: TOPIC.lock has the topic's mode and group, so others cannot block pubmsg", async () => {
  await using group = await makeGroup();
  using dir = rootDir(0o755);
  const root = dir.path;
  createTopic("priv", { root, mode: 0o600 });
  createTopic("team", { root, mode: 0o660, gid: group.gid });
  let r = await fsbus(["pubmsg", "priv", "--root", root], "x\n");
  assert.equal(r.code, 0, r.stderr);
  let st = Deno.statSync(`${root}/priv.lock`);
  assert.equal(st.mode! & 0o7777, 0o600);
  // nobody cannot open it, so cannot flock it, so cannot block root's publisher.
  r = await asNobody(`flock -n -x ${root}/priv.lock -c 'echo held'`);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(r.stdout, /held/);
  // A lock file left 0644 by an older fsbus is brought in line.
  Deno.chmodSync(`${root}/priv.lock`, 0o644);
  r = await fsbus(["pubmsg", "priv", "--root", root], "y\n");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(`${root}/priv.lock`).mode! & 0o7777, 0o600);
  // A group topic: the lock is the group's too.
  r = await fsbus(["pubmsg", "team", "--root", root], "x\n");
  assert.equal(r.code, 0, r.stderr);
  st = Deno.statSync(`${root}/team.lock`);
  assert.equal(st.mode! & 0o7777, 0o660);
  assert.equal(st.gid, group.gid);
});

Deno.test("fanout security: topic names with a newline or other control characters are refused", async () => {
  using dir = rootDir(0o755);
  for (const name of ["a\nb", "tab\there", "bell\x07", "del\x7f"]) {
    const r = await fsbus(["fanout", "create", name, "--root", dir.path]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Cannot use .* as a topic name: it contains a control character/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test("fanout security: a group member cannot crash or hang root's readers and writers", async () => {
  await using group = await makeGroup();
  using dir = rootDir(0o755);
  const root = dir.path;
  const path = createTopic("t", { root, mode: 0o660, gid: group.gid });
  const sub = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, "fanout", "sub", "t", "--root", root],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const pub = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, "fanout", "pub", "t", "--root", root],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const seen = collect(sub.stdout);
  const pubErr = collect(pub.stderr);
  const feed = pub.stdin.getWriter();
  const say = (line: string) => feed.write(new TextEncoder().encode(line));
  try {
    await waitFor(() => describeTopic("t", { root }).readers === 1, "the subscriber");
    await say("one\n");
    await waitFor(() => seen.text().includes("one\n"), "one");

    // 1. pid 1 in the lock word: writers give up with a clear error instead of waiting
    //    forever; once the word is cleared, root's long-running publisher goes on.
    let r = await attack(group.gid, "lock-init", path);
    assert.equal(r.code, 0, r.stderr);
    oneLineError(await fsbus(["fanout", "pub", "t", "x", "--root", root]), /held by pid 1 /);
    r = await attack(group.gid, "lock-clear", path);
    assert.equal(r.code, 0, r.stderr);
    await say("two\n");
    await waitFor(() => seen.text().includes("two\n"), "two");

    // 2. Hostile head and oldest-record values (NaN, 1e15): a writer stops with a clear
    //    error at once instead of spinning with the lock held; restored, all works again.
    r = await attack(group.gid, "slots-read", path);
    const slots = r.stdout.trim();
    assert.equal(slots.length, 512, r.stderr);
    r = await attack(group.gid, "slots-hostile", path);
    assert.equal(r.code, 0, r.stderr);
    oneLineError(
      await fsbus(["fanout", "pub", "t", "x", "--root", root]),
      /Cannot use topic ".*": it is corrupt: bad head/,
    );
    r = await attack(group.gid, "slots-write", path, slots);
    assert.equal(r.code, 0, r.stderr);
    await say("three\n");
    await waitFor(() => seen.text().includes("three\n"), "three");

    // 3. Truncation under live mappings: root's publisher touches the lost pages and ends
    //    with a clear error, not SIGBUS; the sleeping subscriber lives on; new openers refuse
    //    the short file.
    r = await attack(group.gid, "truncate", path, "100");
    assert.equal(r.code, 0, r.stderr);
    await say("four\n");
    await feed.close();
    const status = await pub.status;
    await pubErr.done;
    assert.equal(status.signal, null, `the publisher was killed by ${status.signal}`);
    assert.equal(status.code, 1, pubErr.text());
    assert.match(pubErr.text(), /^fsbus: .*truncated while in use/);
    oneLineError(await fsbus(["fanout", "pub", "t", "x", "--root", root]), /too small/);
    const state = Deno.readTextFileSync(`/proc/${sub.pid}/stat`).split(") ")[1]!.split(" ")[0];
    assert.match(state!, /^[RS]$/, "the subscriber is alive");
  } finally {
    await feed.close().catch(() => {});
    await stop(pub);
    await stop(sub);
  }
  // What root received is exactly what root sent before the truncation.
  assert.equal(seen.text(), "one\ntwo\nthree\n");
});
