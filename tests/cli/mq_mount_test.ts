import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import {
  collect,
  fsbus,
  HAVE_FUSE,
  runnableByOthers,
  sh,
  spawnFsbus,
  stop,
  tempDir,
  waitFor,
  waitOpened,
} from "../_helpers.ts";
import { burstLines, burstWithDirWriter } from "./_mq_mount.ts";
import { MqGroup } from "../../transports/mq/mod.ts";

const dec = new TextDecoder();

if (!HAVE_FUSE) console.error("fsbus mq mount tests skipped: /dev/fuse is missing");

interface Mounted {
  data: string;
  mp: string;
  server: Deno.ChildProcess;
  log: ReturnType<typeof collect>;
}

async function startServer(data: string, mp: string): Promise<Mounted> {
  const before = mountAt(mp)?.id; // a stale mount, left by a killed server
  const server = spawnFsbus(["mq", "mount", data, mp]);
  const log = collect(server.stderr);
  try {
    await waitFor(
      () => {
        // (mount ids are reused: after a stale mount, wait for the server's notice too)
        const cleaned = before === undefined || log.text().includes("stale mount");
        return cleaned && mountAt(mp)?.fstype === "fuse.fsbus-mq";
      },
      `the mount on ${mp} (server said: ${log.text()})`,
    );
  } catch (err) {
    let where = "";
    try {
      for (const t of Deno.readDirSync(`/proc/${server.pid}/task`)) {
        where += Deno.readTextFileSync(`/proc/${server.pid}/task/${t.name}/stack`);
      }
    } catch {
      // gone
    }
    await stop(server);
    const st = await server.status;
    throw new Error(`${(err as Error).message}\n${where}\n${JSON.stringify(st)} ${log.text()}`);
  }
  return { data, mp, server, log };
}

async function stopServer(m: Mounted, failing = false): Promise<void> {
  await stop(m.server);
  if (mountAt(m.mp) !== undefined) {
    if (failing) return void await sh(`umount -l '${m.mp}'`);
    await sh(`umount -l '${m.mp}'`);
    assert.fail(
      `the server left ${m.mp} mounted (${JSON.stringify(await m.server.status)}: ${m.log.text()})`,
    );
  }
}

/** Runs `fn` with a fresh data directory holding group "g" (replay from `replay`). */
async function withMount(
  fn: (m: Mounted) => Promise<void>,
  mkgroupArgs: string[] = [],
): Promise<void> {
  using tmp = tempDir();
  const data = `${tmp.path}/data`;
  const mp = `${tmp.path}/fsbt-fuse-mnt`;
  Deno.mkdirSync(mp);
  const made = await fsbus(["mq", "mkgroup", `${data}/g`, ...mkgroupArgs]);
  assert.equal(made.code, 0, made.stderr);
  const m = await startServer(data, mp);
  try {
    await fn(m);
  } finally {
    await stopServer(m);
  }
}

/** A plain program reading a file through the mount, its output collected. */
function reader(cmd: string[]): { child: Deno.ChildProcess; out: ReturnType<typeof collect> } {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, out: collect(child.stdout) };
}

async function run(script: string): Promise<void> {
  const r = await sh(script);
  assert.equal(r.code, 0, `${script}: ${r.stderr}`);
}

Deno.test({
  name: "fsbus mq mount: writes through the mount between other writers' (fsbus mq write, " +
    "plain appends, fsbus mq ctl) keep one order: the server's lock taken again without a " +
    "full sync never misses them",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async ({ data, mp }) => {
      const s = `${mp}/g/s`;
      await run(`touch '${s}' '${data}/g/t'`);
      const order: string[] = [];
      for (let i = 0; i < 4; i++) {
        await run(`echo m${i} > '${s}'`);
        order.push("s");
        const w = await fsbus(["mq", "write", `${data}/g`, "s", `w${i}\n`]);
        assert.equal(w.code, 0, w.stderr);
        order.push("s");
        await run(`echo p${i} >> '${data}/g/t'`); // indexed by the next writer, at the latest
        order.push("t");
        if (i === 2) {
          const c = await fsbus(["mq", "ctl", `${data}/g`, "replay", "all"]);
          assert.equal(c.code, 0, c.stderr);
        }
      }
      await run(`echo end > '${s}'`);
      order.push("s");
      assert.equal(Deno.readTextFileSync(`${data}/g/order`), order.map((n) => `${n}\0`).join(""));
      const history = "m0\nw0\nm1\nw1\nm2\nw2\nm3\nw3\nend\n";
      assert.equal(Deno.readTextFileSync(`${data}/g/s`), history);
      // The ctl change reached the server: a new reader through the mount replays all.
      const head = await sh(`timeout 20 head -n 9 '${s}'`);
      assert.equal(head.text, history);
      const check = await fsbus(["mq", "check", `${data}/g`]);
      assert.equal(check.code, 0, check.text + check.stderr);
      // At the same time: a shell writing through the mount as fast as it can, through one
      // descriptor (the server keeps the lock across its writes and takes it again between
      // them), and another process committing between them.
      const n = 1500;
      const m = n / 10;
      await burstWithDirWriter(s, `${data}/g`, "u", n, m);
      assert.equal(Deno.readTextFileSync(`${data}/g/s`).slice(history.length), burstLines("m", n));
      assert.equal(Deno.readTextFileSync(`${data}/g/u`), burstLines("w", m));
      const tail = Deno.readTextFileSync(`${data}/g/order`).slice(order.length * 2).split("\0");
      assert.equal(tail.filter((x) => x === "s").length, n);
      assert.equal(tail.filter((x) => x === "u").length, m);
      const again = await fsbus(["mq", "check", `${data}/g`]);
      assert.equal(again.code, 0, again.text + again.stderr);
    });
  },
});

Deno.test({
  name: "fsbus mq mount: a reader replaying all gets its stream's messages at once, behind " +
    "thousands of other streams' records",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async ({ data, mp }) => {
      {
        using g = MqGroup.open(`${data}/g`);
        for (let i = 0; i < 3000; i++) g.write("other", `o${i}\n`);
        g.write("s", "mine\n");
      }
      await run(`echo replay all > '${mp}/g/ctl'`);
      // Not a blocked read waiting for the next write: the message is there.
      const head = await sh(`timeout 20 head -n 1 '${mp}/g/s'`);
      assert.equal(head.text, "mine\n");
    });
  },
});

Deno.test({
  name: "fsbus mq mount: a blocked cat gets messages written through the mount, by fsbus " +
    "mq write and by appends on DIR, in order; head -n 3 exits; readers see the same",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async ({ data, mp }) => {
      const s = `${mp}/g/s`;
      await run(`touch '${s}'`);
      const a = reader(["cat", s]);
      const b = reader(["cat", s]);
      const h = reader(["head", "-n", "3", s]);
      const t = reader(["tail", "-n", "+1", s]);
      try {
        for (const r of [a, b, h, t]) await waitOpened(r.child.pid, s);
        await run(`echo one > '${s}'`);
        const w = await fsbus(["mq", "write", `${data}/g`, "s", "two\n"]);
        assert.equal(w.code, 0, w.stderr);
        await run(`echo three >> '${data}/g/s'`);
        await waitFor(() => a.out.text() === "one\ntwo\nthree\n", "three messages");
        await run(`printf four > '${s}'`);
        assert.equal((await h.child.status).code, 0);
        await h.out.done;
        assert.equal(h.out.text(), "one\ntwo\nthree\n");
        await run(`: > '${s}'`); // end of file
        assert.equal((await a.child.status).code, 0);
        await a.out.done;
        assert.equal((await b.child.status).code, 0);
        await b.out.done;
        assert.equal(a.out.text(), "one\ntwo\nthree\nfour");
        assert.equal(b.out.text(), a.out.text());
        assert.equal((await t.child.status).code, 0);
        await t.out.done;
        assert.equal(t.out.text(), a.out.text());
      } finally {
        for (const r of [a, b, h, t]) await stop(r.child);
      }
    });
  },
});

Deno.test({
  name: "fsbus mq mount: one message per read(2), a long one continues; replay off/last/all " +
    "per open; coalesce; order",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async ({ mp }) => {
      const g = `${mp}/g`;
      await run(`echo first > '${g}/s'; echo second > '${g}/s'; echo other > '${g}/t'`);
      const py = (path: string, sizes: number[]) =>
        sh(`python3 -c '
import os
fd = os.open("${g}/${path}", os.O_RDONLY)
print([os.read(fd, n) for n in [${sizes.join(",")}]])
'`);
      // replay all (this group's default): history first, one message per read(2)
      let r = await py("s", [100, 3, 100]);
      assert.equal(r.text, "[b'first\\n', b'sec', b'ond\\n']\n", r.stderr);
      r = await py("order", [100, 100, 100]);
      assert.equal(r.text, "[b's\\x00', b's\\x00', b't\\x00']\n", r.stderr);
      // replay last, per open
      await run(`echo replay last > '${g}/ctl'`);
      r = await py("s", [100]);
      assert.equal(r.text, "[b'second\\n']\n", r.stderr);
      // replay off: a reader opened now waits for the next write
      await run(`echo replay off > '${g}/ctl'`);
      const late = reader(["head", "-n", "1", `${g}/s`]);
      try {
        await waitOpened(late.child.pid, `${g}/s`);
        await run(`echo third > '${g}/s'`);
        assert.equal((await late.child.status).code, 0);
        await late.out.done;
        assert.equal(late.out.text(), "third\n");
      } finally {
        await stop(late.child);
      }
      // coalesce: a read takes as many bytes as are there
      await run(`printf 'data coalesce\\nreplay all\\n' > '${g}/ctl'`);
      assert.equal((await sh(`cat '${g}/ctl'`)).text, "data coalesce\nreplay all\n");
      r = await py("s", [100]);
      assert.equal(r.text, "[b'first\\nsecond\\nthird\\n']\n", r.stderr);
    }, ["--replay", "all"]);
  },
});

Deno.test({
  name: "fsbus mq mount: ctl rejects a bad command with EINVAL; mkdir, create, rm, rmdir; " +
    "EOF on removal; history survives a remount",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async (m) => {
      const { mp, data } = m;
      const bad = await sh(`echo replay sometimes > '${mp}/g/ctl'`);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /Invalid argument/);
      await waitFor(() => m.log.text().includes("usage: replay off|last|all"), "the log line");
      assert.equal((await sh(`cat '${mp}/g/ctl'`)).text, "data message\nreplay off\n");
      // mkdir makes a group with ctl and order; a created file is a stream
      await run(`mkdir '${mp}/h' && touch '${mp}/h/x'`);
      assert.equal((await sh(`ls '${mp}/h'`)).text, "ctl\norder\nx\n");
      assert.ok(Deno.statSync(`${data}/h/ctl`).isFile);
      const made = await sh(`mkdir '${mp}/h' 2>&1`);
      assert.match(made.text, /File exists/);
      // rm: readers get EOF
      await run(`echo replay all > '${mp}/h/ctl'; echo kept > '${mp}/h/x'`);
      const r = reader(["cat", `${mp}/h/x`]);
      try {
        await waitFor(() => r.out.text() === "kept\n", "the message");
        await run(`rm '${mp}/h/x'`);
        assert.equal((await r.child.status).code, 0);
        await r.out.done;
      } finally {
        await stop(r.child);
      }
      const rmCtl = await sh(`rm '${mp}/h/ctl'`);
      assert.notEqual(rmCtl.code, 0);
      await run(`rmdir '${mp}/h'`);
      assert.equal((await sh(`ls '${data}'`)).text, "g\n");
      await run(`echo old > '${mp}/g/s'`);
    });
    // history survives a remount (withMount made a fresh dir: remount by hand)
    using tmp = tempDir();
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    await fsbus(["mq", "mkgroup", `${data}/g`, "--replay", "all"]);
    let m = await startServer(data, mp);
    try {
      await run(`echo before > '${mp}/g/s'`);
    } finally {
      await stopServer(m);
    }
    m = await startServer(data, mp);
    try {
      await run(`echo after > '${mp}/g/s'; : > '${mp}/g/s'`);
      assert.equal((await sh(`cat '${mp}/g/s'`)).text, "before\nafter\n");
    } finally {
      await stopServer(m);
    }
  },
});

Deno.test({
  name: "fsbus mq mount: Ctrl-C ends a blocked cat at once; a killed server leaves no " +
    "hanging mount and the next mount cleans it up; umount ends the server",
  ignore: !HAVE_FUSE,
  async fn() {
    using tmp = tempDir();
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    await fsbus(["mq", "mkgroup", `${data}/g`]);
    let m = await startServer(data, mp);
    try {
      await run(`touch '${mp}/g/s'`);
      const r = reader(["cat", `${mp}/g/s`]);
      await waitOpened(r.child.pid, `${mp}/g/s`);
      r.child.kill("SIGINT");
      const st = await r.child.status;
      assert.equal(st.signal, "SIGINT");
      await r.child.stderr.cancel();
      // The server is killed: callers fail at once instead of hanging
      const blocked = reader(["cat", `${mp}/g/s`]);
      await waitOpened(blocked.child.pid, `${mp}/g/s`);
      m.server.kill("SIGKILL");
      await m.server.status;
      assert.notEqual((await blocked.child.status).code, 0);
      await blocked.child.stderr.cancel();
      const ls = await sh(`ls '${mp}' 2>&1`);
      assert.match(ls.text, /not connected/);
    } finally {
      await stop(m.server);
    }
    try {
      m = await startServer(data, mp);
    } catch (err) {
      await sh(`umount -l '${mp}'`); // the stale mount, not cleaned
      throw err;
    }
    try {
      await waitFor(() => m.log.text().includes("stale mount"), "the notice");
      assert.equal((await sh(`ls '${mp}/g'`)).text, "ctl\norder\ns\n");
      const r = reader(["cat", `${mp}/g/s`]);
      await waitOpened(r.child.pid, `${mp}/g/s`);
      const u = await fsbus(["mq", "umount", mp]);
      assert.equal(u.code, 0, u.stderr);
      assert.equal((await r.child.status).code, 0); // EOF
      await r.out.done;
      assert.equal((await m.server.status).code, 0);
      assert.equal(mountAt(mp), undefined);
    } finally {
      await stopServer(m);
    }
  },
});

Deno.test({
  name: "fsbus mq mount: bad input gives one line and mounts nothing",
  ignore: !HAVE_FUSE,
  async fn() {
    using tmp = tempDir("/tmp"); // not under /dev: one case hides /dev
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    await fsbus(["mq", "mkgroup", `${data}/g`]);
    const oneLine = (r: { code: number; stderr: string }, re: RegExp) => {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.equal(mountAt(mp), undefined);
    };
    oneLine(await fsbus(["mq", "mount", `${tmp.path}/nope`, mp]), /no such directory/);
    Deno.writeTextFileSync(`${mp}/file`, "x");
    oneLine(await fsbus(["mq", "mount", data, mp]), /not empty/);
    Deno.removeSync(`${mp}/file`);
    oneLine(await fsbus(["mq", "mount", data, `${data}/g/s`]), /inside|no such/);
    oneLine(await fsbus(["mq", "mount", data, `${tmp.path}/absent`]), /no such directory/);
    // no /dev/fuse: a private mount namespace with an empty /dev
    const noDev = await sh(
      `unshare -m --propagation private sh -c 'mount -t tmpfs none /dev && ` +
        `exec "${Deno.execPath()}" run -A --quiet "${
          new URL("../../cli.ts", import.meta.url).pathname
        }" mq mount "${data}" "${mp}"'`,
    );
    oneLine(noDev, /\/dev\/fuse is missing/);
    // no permission: another user, through fusermount3, on a mount point it cannot write
    if (Deno.uid() === 0) {
      Deno.chmodSync(tmp.path, 0o755);
      const denoDir = Deno.makeTempDirSync({ prefix: "fsbt-fuse-deno-" });
      try {
        Deno.chownSync(denoDir, 65534, 65534);
        const { deno, cli } = runnableByOthers();
        const r = await sh(
          `exec setpriv --reuid 65534 --regid 65534 --clear-groups "${deno}" run -A --quiet ` +
            `"${cli}" mq mount "${data}" "${mp}"`,
          { env: { NO_COLOR: "1", DENO_DIR: denoDir, HOME: denoDir, PATH: Deno.env.get("PATH")! } },
        );
        oneLine(r, /Cannot mount on .*(permission|access)/i);
      } finally {
        Deno.removeSync(denoDir, { recursive: true });
      }
    }
  },
});

const HAVE_FUSERMOUNT = (() => {
  try {
    return (Deno.statSync("/usr/bin/fusermount3").mode! & 0o4000) !== 0; // setuid root
  } catch {
    return false;
  }
})();

/**
 * A private mount namespace, kept by a process in it (the host's mounts are never touched):
 * `/dev/fuse` there is a node of mode `devMode` made on a tmpfs of its own. Commands run in it
 * as uid 65534 through nsenter and setpriv.
 */
async function userNamespace(dir: string, devMode: string) {
  const dev = `${dir}/dev-${devMode}`;
  Deno.mkdirSync(dev);
  const holder = new Deno.Command("unshare", {
    args: [
      "-m",
      "--propagation",
      "private",
      "sh",
      "-c",
      `mount -t tmpfs fsbt-fuse3-dev '${dev}' && mknod -m ${devMode} '${dev}/fuse' c 10 229 && ` +
      `mount --bind '${dev}/fuse' /dev/fuse && echo ready && exec sleep 600`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = collect(holder.stdout);
  const err = collect(holder.stderr);
  await waitFor(() => out.text() === "ready\n", `the mount namespace (${err.text()})`);
  const denoDir = `${dir}/deno-${devMode}`;
  Deno.mkdirSync(denoDir);
  Deno.chownSync(denoDir, 65534, 65534);
  const { deno, cli } = runnableByOthers();
  return {
    /** The mount table inside the namespace. */
    mounts: () => Deno.readTextFileSync(`/proc/${holder.pid}/mountinfo`),
    /** Starts a command there as uid 65534. */
    spawn(cmd: string[], path = Deno.env.get("PATH")!): Deno.ChildProcess {
      return new Deno.Command("/usr/bin/nsenter", {
        args: [
          "-t",
          String(holder.pid),
          "-m",
          "/usr/bin/setpriv",
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          ...cmd,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1", DENO_DIR: denoDir, HOME: denoDir, PATH: path },
      }).spawn();
    },
    /** `fsbus ARGS` there as uid 65534. */
    fsbus: (args: string[]) => [deno, "run", "-A", "--quiet", cli, ...args],
    async [Symbol.asyncDispose]() {
      await stop(holder); // the namespace, and anything mounted in it, goes with it
      await out.done;
      await err.done;
    },
  };
}

Deno.test({
  name: "fsbus mq mount as a normal user: fusermount3 mounts, cat and echo work through the " +
    "mount, fsbus mq umount unmounts; without /dev/fuse access or fusermount3 one line",
  ignore: !HAVE_FUSE || Deno.uid() !== 0 || !HAVE_FUSERMOUNT,
  async fn() {
    using tmp = tempDir();
    Deno.chmodSync(tmp.path, 0o755);
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-fuse3-mnt`;
    Deno.mkdirSync(mp);
    const made = await fsbus(["mq", "mkgroup", `${data}/g`, "--replay", "all"]);
    assert.equal(made.code, 0, made.stderr);
    await run(`chown -R 65534:65534 '${data}' '${mp}'`);
    const text = async (p: Deno.ChildProcess) => {
      const o = await p.output();
      return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
    };
    {
      await using ns = await userNamespace(tmp.path, "0666");
      const server = ns.spawn(ns.fsbus(["mq", "mount", data, mp]));
      const log = collect(server.stderr);
      let cat: Deno.ChildProcess | undefined;
      try {
        await waitFor(
          () => ns.mounts().includes(` ${mp} `),
          `the mount in the namespace (server said: ${log.text()})`,
        );
        const line = ns.mounts().split("\n").find((l) => l.includes(` ${mp} `))!;
        assert.match(line, / - fuse\.fsbus-mq .*user_id=65534/); // mounted by fusermount3
        assert.equal(mountAt(mp), undefined); // not on the host
        const echo = await text(ns.spawn(["sh", "-c", `echo one > '${mp}/g/s'`]));
        assert.equal(echo.code, 0, echo.err);
        cat = ns.spawn(["cat", `${mp}/g/s`]);
        const got = collect(cat.stdout);
        await waitFor(() => got.text() === "one\n", "cat to read the first message");
        const two = await text(ns.spawn(["sh", "-c", `echo two > '${mp}/g/s'`]));
        assert.equal(two.code, 0, two.err);
        await waitFor(() => got.text() === "one\ntwo\n", "the blocked cat to get the next");
        assert.equal(Deno.readTextFileSync(`${data}/g/s`), "one\ntwo\n"); // on disk as root sees it
        const u = await text(ns.spawn(ns.fsbus(["mq", "umount", mp])));
        assert.equal(u.code, 0, u.err);
        assert.equal((await cat.status).code, 0); // end of file
        await got.done;
        await cat.stderr.cancel();
        cat = undefined;
        assert.equal((await server.status).code, 0);
        await log.done;
        assert.ok(!ns.mounts().includes(` ${mp} `));
      } finally {
        if (cat) await stop(cat);
        await stop(server);
      }
    }
    // /dev/fuse closed to the user (mode 0600), or no fusermount3: one line, nothing mounted
    {
      await using ns = await userNamespace(tmp.path, "0600");
      for (
        const [path, re] of [
          [
            Deno.env.get("PATH")!,
            /^fsbus: Cannot mount on ".*": failed to open \/dev\/fuse: Permission denied\n$/,
          ],
          [
            "/nonexistent",
            /^fsbus: Cannot mount on ".*": not root, and fusermount3 is not installed/,
          ],
        ] as const
      ) {
        const r = await text(ns.spawn(ns.fsbus(["mq", "mount", data, mp]), path));
        assert.equal(r.code, 1, r.err);
        assert.match(r.err, re);
        assert.equal(r.err.trim().split("\n").length, 1, r.err);
        assert.ok(!ns.mounts().includes(` ${mp} `));
      }
    }
    assert.equal(mountAt(mp), undefined);
  },
});

Deno.test({
  name: "fsbus pin -m works on a mounted tree, and cat/echo through the mount attach to it",
  ignore: !HAVE_FUSE,
  async fn() {
    using tmp = tempDir();
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(data);
    Deno.mkdirSync(mp);
    const m = await startServer(data, mp);
    try {
      const c = await fsbus(["pin", "-m", mp, "-c", "fsbt-fuse-s", "cat"]);
      assert.equal(c.code, 0, c.stderr);
      assert.ok(Deno.statSync(`${data}/fsbt-fuse-s/ctl`).isFile);
      const out = reader(["cat", `${mp}/fsbt-fuse-s/1`]);
      try {
        await run(`echo hello > '${mp}/fsbt-fuse-s/0'`);
        // (the session runs on a pseudo-terminal: its output has the echo and CR LF)
        await waitFor(() => /hello\r?\n.*hello/s.test(out.out.text()), "hello through the session");
        const w = await fsbus(["pin", "-m", mp, "-w", "fsbt-fuse-s", "again"]);
        assert.equal(w.code, 0, w.stderr);
        await waitFor(
          () => /again\r?\n.*again/s.test(out.out.text()),
          "pin -w through the session",
        );
        const l = await fsbus(["pin", "-m", mp, "-l"]);
        assert.match(l.text, /fsbt-fuse-s\s+running/);
        const k = await fsbus(["pin", "-m", mp, "-k", "fsbt-fuse-s"]); // the session ends:
        assert.equal(k.code, 0, k.stderr);
        assert.equal((await out.child.status).code, 0); // its output stream's EOF ends cat
        await out.out.done;
      } finally {
        await stop(out.child);
      }
    } finally {
      await stopServer(m);
    }
  },
});
