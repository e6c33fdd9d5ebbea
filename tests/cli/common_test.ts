import assert from "node:assert/strict";
import { describeTopic } from "../../transports/fanout/mod.ts";
import {
  CLI,
  collect,
  fsbus,
  inotifyWatches,
  ROOT,
  runnableByOthers,
  sh,
  spawnFsbus,
  stop,
  tempDir,
  waitFor,
} from "../_helpers.ts";

Deno.test("deno run mod.ts runs the CLI: sub --count 1 prints a published message and exits", async () => {
  using bus = tempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, "sub", bus.path, "--count", "1"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  try {
    await waitFor(() => inotifyWatches(child.pid) > 0, "the subscriber's watch");
    assert.equal((await fsbus(["pub", bus.path, "hello"])).code, 0);
    const status = await child.status;
    await out.done;
    await err.done;
    assert.equal(status.code, 0, err.text());
    assert.equal(out.text(), "hello\n");
  } finally {
    await stop(child);
  }
});

Deno.test("importing mod.ts runs nothing", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import * as m from "${ROOT}/mod.ts"; console.log(typeof m.msgfs.subscribe)`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.equal(new TextDecoder().decode(r.stdout), "function\n");
});

Deno.test("readers print one message per line by default, --raw exact bytes, --json filled in", async () => {
  using tmp = tempDir();
  const bus = `${tmp.path}/bus`;
  const g = `${tmp.path}/g`;
  const root = `${tmp.path}/rings`;
  Deno.mkdirSync(bus);
  for (const m of ["hello", "again\n"]) assert.equal((await fsbus(["pub", bus, m])).code, 0);
  let r = await fsbus(["sub", bus, "--since", "all", "-n", "2"]);
  assert.equal(r.text, "hello\nagain\n", r.stderr);
  r = await fsbus(["sub", bus, "--since", "all", "-n", "2", "--raw"]);
  assert.equal(r.text, "helloagain\n");

  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  for (const m of ["hello", "again"]) {
    assert.equal((await fsbus(["mq", "write", g, "s", m])).code, 0);
  }
  r = await fsbus(["mq", "read", g, "s", "-n", "2"]);
  assert.equal(r.text, "hello\nagain\n", r.stderr);
  r = await fsbus(["mq", "read", g, "s", "-n", "2", "--raw"]);
  assert.equal(r.text, "helloagain");
  r = await fsbus(["mq", "cat", g, "s", "-n", "1", "--json"]);
  const mqJson = JSON.parse(r.text);
  assert.deepEqual(Object.keys(mqJson), [
    "id",
    "topic",
    "time",
    "size",
    "stream",
    "seq",
    "data",
    "encoding",
  ]);

  // fanout: a message-mode topic, --json: every field filled in.
  assert.equal((await fsbus(["fanout", "create", "m", "--messages", "--root", root])).code, 0);
  const sub = spawnFsbus(["fanout", "sub", "m", "--root", root, "--json", "-n", "2"]);
  const out = collect(sub.stdout);
  try {
    await waitFor(async () => {
      await fsbus(["fanout", "pub", "m", "x", "--root", root]);
      return out.text().split("\n").length > 2;
    }, "fanout sub to take two messages");
    assert.equal((await sub.status).code, 0);
    await out.done;
    for (const line of out.text().trim().split("\n")) {
      const o = JSON.parse(line);
      assert.deepEqual(Object.keys(o), ["id", "topic", "time", "size", "data", "encoding"]);
      assert.equal(o.topic, "m");
      assert.match(o.id, /^\d+$/);
      assert.ok(!Number.isNaN(Date.parse(o.time)), o.time);
      assert.equal(o.data, "x");
    }
  } finally {
    await stop(sub);
  }
});

Deno.test("fanout sub --count counts messages on byte and mixed topics (defect 7)", async () => {
  using tmp = tempDir();
  const root = tmp.path;
  assert.equal((await fsbus(["fanout", "create", "b", "--root", root])).code, 0);
  assert.equal((await fsbus(["fanout", "create", "m", "--messages", "--root", root])).code, 0);
  const sub = spawnFsbus(["fanout", "sub", "b", "--root", root, "--count", "2"]);
  const out = collect(sub.stdout);
  const mixed = spawnFsbus(["fanout", "sub", "b", "m", "--root", root, "--json", "--count", "3"]);
  const mixedOut = collect(mixed.stdout);
  try {
    // Both readers are open once the rings count them.
    await waitFor(
      () =>
        describeTopic("b", { root }).readers === 2 && describeTopic("m", { root }).readers === 1,
      "both readers",
    );
    await fsbus(["fanout", "pub", "m", "probe", "--root", root]);
    await fsbus(["fanout", "pub", "b", "hello", "--root", root]);
    await fsbus(["fanout", "pub", "b", "again", "--root", root]);
    assert.equal((await sub.status).code, 0);
    await out.done;
    assert.equal(out.text(), "hello\nagain\n");
    assert.equal((await mixed.status).code, 0);
    await mixedOut.done;
    const objs = mixedOut.text().trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(objs.length, 3);
    assert.deepEqual(objs.map((o) => [o.topic, o.data]).sort(), [
      ["b", "again\n"],
      ["b", "hello\n"],
      ["m", "probe"],
    ]);
  } finally {
    await stop(sub);
    await stop(mixed);
  }
});

Deno.test("writers take MESSAGE, stdin and --lines; -- ends options", async () => {
  using tmp = tempDir();
  const bus = `${tmp.path}/bus`;
  const g = `${tmp.path}/g`;
  Deno.mkdirSync(bus);
  let r = await fsbus(["pub", bus, "--", "-dash"]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["pub", bus, "--lines"], { stdin: "a\nb\n" });
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["sub", bus, "--since", "all", "-n", "3", "--json"]);
  assert.deepEqual(r.text.trim().split("\n").map((l) => JSON.parse(l).data), ["-dash", "a", "b"]);
  r = await fsbus(["pub", bus, "-dash"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Unknown option "-dash" for "fsbus pub"; .*put "--" before it/);
  r = await fsbus(["pub", bus, "x", "--lines"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use "--lines" with a MESSAGE in "fsbus pub": --lines reads/);

  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "s", "--", "-1"])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "s", "--lines"], { stdin: "x\ny\n" })).code, 0);
  r = await fsbus(["mq", "read", g, "s", "-n", "3"]);
  assert.equal(r.text, "-1\nx\ny\n");
  r = await fsbus(["mq", "write", g, "s", "x", "--lines"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use "--lines" with a MESSAGE in "fsbus mq write"/);

  const root = `${tmp.path}/rings`;
  assert.equal((await fsbus(["fanout", "create", "t", "--root", root])).code, 0);
  r = await fsbus(["pubmsg", "t", "one line", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["fanout", "sub", "t", "--replay", "all", "-n", "1", "--root", root]);
  assert.equal(r.text, "one line\n");
});

Deno.test("a writer reading a terminal says so", async () => {
  using tmp = tempDir();
  // A pseudo-terminal on stdin (python's pty), then Ctrl-D.
  const script = `
import os, pty, sys, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen = b""
while b"Ctrl-D" not in seen:
    r, _, _ = select.select([fd], [], [], 20)
    if not r: break
    seen += os.read(fd, 1024)
os.write(fd, b"typed\\n\\x04")
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data: break
    seen += data
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode())
sys.exit(os.waitstatus_to_exitcode(status))
`;
  const r = await new Deno.Command("python3", {
    args: ["-c", script, Deno.execPath(), "run", "-A", "--quiet", CLI, "pub", tmp.path],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(r.stdout);
  assert.equal(r.code, 0, text + new TextDecoder().decode(r.stderr));
  assert.match(text, /fsbus: reading the message from standard input \(end with Ctrl-D\)/);
  const names = [...Deno.readDirSync(tmp.path)].filter((e) => !e.name.startsWith("."));
  assert.equal(names.length, 1);
  assert.equal(Deno.readTextFileSync(`${tmp.path}/${names[0]!.name}`), "typed\n");
});

Deno.test("help for subcommands, unknown commands and flags suggest the closest", async () => {
  let r = await fsbus(["help", "mq", "write"]);
  assert.equal(r.code, 0);
  assert.match(r.text, /^Usage: fsbus mq write GROUP STREAM \[MESSAGE\]/);
  r = await fsbus(["help", "nosuch"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'fsbus: Unknown command "nosuch" for "fsbus" (see "fsbus --help")\n');
  r = await fsbus(["sbu", "/dev/shm"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown command "sbu" for "fsbus" \(did you mean "sub"\?\)/);
  r = await fsbus(["mq", "wirte"]);
  assert.match(r.stderr, /Unknown command "wirte" for "fsbus mq" \(did you mean "write"\?\)/);
  r = await fsbus(["fanout", "lsit"]);
  assert.match(r.stderr, /\(did you mean "list"\?\)/);
  r = await fsbus(["sub", "/dev/shm", "--coutn", "1"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown option "--coutn" for "fsbus sub" \(did you mean "--count"\?\)/);
  // The shared reader options, in the same order, in every reader's help.
  const order = ["--raw", "--json", "--count", "--exec"];
  for (
    const args of [["sub"], ["mq", "read"], ["mq", "cat"], ["fanout", "sub"], ["submsg"]]
  ) {
    const full = (await fsbus([...args, "--help"])).text;
    const help = full.slice(full.indexOf("Options:"));
    const at = order.map((o) => help.indexOf(o));
    assert.ok(at.every((i, k) => i > 0 && (k === 0 || i > at[k - 1]!)), `${args}: ${at}`);
    assert.match(full, /Examples:/);
  }
  for (const args of [["pub"], ["mq", "write"], ["fanout", "pub"], ["pubmsg"]]) {
    assert.match((await fsbus([...args, "--help"])).text, /--lines/, args.join(" "));
  }
});

Deno.test("every command's help fits 80 columns, its prose wrapped in full lines", async () => {
  const top = (await fsbus(["--help"])).text;
  const commands = [
    ...top.slice(top.indexOf("Commands:"), top.indexOf("Options:")).matchAll(/^ {2}(\S+)/gm),
  ].map((m) => m[1]!);
  assert.ok(commands.includes("bridge") && commands.length >= 14, commands.join(" "));
  const subcommands: Record<string, string[]> = {
    filebus: ["producer", "consumer"],
    mq: ["mkgroup", "ctl", "write", "read", "cat", "mount", "umount", "check"],
    fanout: ["create", "list", "rm", "pub", "sub"],
    messagefs: ["join", "send", "ls", "mount"],
  };
  for (const command of ["", ...commands]) {
    for (const sub of ["", ...(subcommands[command] ?? [])]) {
      const args = [command, sub].filter(Boolean);
      const r = await fsbus([...args, "--help"]);
      const what = `fsbus ${args.join(" ")} --help`;
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      const lines = r.text.split("\n");
      for (const line of lines) {
        assert.ok(line.length <= 80, `${what}: ${line.length} columns: ${line}`);
      }
      // A line of prose ended early: the next line's first word would have fitted on it.
      for (let i = 0; i + 1 < lines.length; i++) {
        const [a, b] = [lines[i]!, lines[i + 1]!];
        if (!/^[A-Za-z(]/.test(a) || !/^[a-z(]/.test(b)) continue;
        const word = b.split(" ")[0]!;
        assert.ok(a.length + 1 + word.length > 78, `${what}: cut before "${word}": ${a}`);
      }
    }
  }
});

Deno.test("durations take 1h30m and bare seconds; negative values are bad values (defect 6)", async () => {
  using tmp = tempDir();
  const bus = `${tmp.path}/bus`;
  let r = await fsbus(["init", bus, "--ttl", "1h30m"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(Deno.readTextFileSync(`${bus}/.fsbus.json`)).ttl_ms, 5_400_000);
  r = await fsbus(["init", bus, "--ttl", "90"]);
  assert.equal(JSON.parse(Deno.readTextFileSync(`${bus}/.fsbus.json`)).ttl_ms, 90_000);
  r = await fsbus(["sub", bus, "--count", "-1"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'fsbus: Cannot use "-1" for "--count": expected a whole number ≥ 1\n');
  r = await fsbus(["init", bus, "--ttl", "-5m"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Cannot use "-5m" for "--ttl"/);
  r = await fsbus(["filebus", "--filename", `${tmp.path}/f`, "--sleep-interval", "-1", "consumer"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Cannot use "-1" for "--sleep-interval"/);
});

Deno.test("sub --topic given twice is refused, not half-done (defect 5)", async () => {
  using tmp = tempDir();
  const r = await fsbus(["sub", tmp.path, "--topic", "a", "--topic", "b"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    'fsbus: Cannot use "--topic" 2 times with "fsbus sub": it takes one value\n',
  );
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("submsg with no topics, or -e, waits on an empty root and follows topics made later", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/rings`;
  const all = spawnFsbus(["submsg", "--root", root, "--prefix", "-n", "2"]);
  const allOut = collect(all.stdout);
  const allErr = collect(all.stderr);
  const except = spawnFsbus(["submsg", "-e", "skip", "--root", root, "--json", "-n", "1"]);
  const exceptOut = collect(except.stdout);
  try {
    await waitFor(() => allErr.text().includes("waiting for one"), "the notice");
    assert.match(allErr.text(), /^fsbus: No topics in ".*rings" yet: waiting for one\n$/);
    Deno.mkdirSync(root);
    assert.equal((await fsbus(["fanout", "create", "skip", "--root", root])).code, 0);
    assert.equal((await fsbus(["pubmsg", "skip", "--root", root, "skipped"])).code, 0);
    assert.equal((await fsbus(["fanout", "create", "late", "--root", root])).code, 0);
    assert.equal((await fsbus(["pubmsg", "late", "--root", root, "hello"])).code, 0);
    assert.equal((await all.status).code, 0);
    await allOut.done;
    assert.deepEqual(allOut.text().split("\n").sort(), ["", "late: hello", "skip: skipped"]);
    assert.equal((await except.status).code, 0);
    await exceptOut.done;
    const o = JSON.parse(exceptOut.text());
    assert.deepEqual([o.topic, o.data], ["late", "hello\n"]);
  } finally {
    await stop(all);
    await stop(except);
  }
});

Deno.test("fsbus status says what a path is: directory bus, mq group, filebus file, fanout topic", async () => {
  using tmp = tempDir();
  const bus = `${tmp.path}/bus`;
  assert.equal((await fsbus(["init", bus, "--ttl", "10m"])).code, 0);
  await fsbus(["pub", bus, "hello"]);
  await fsbus(["pub", bus, "--topic", "t", "hi"]);
  let r = await fsbus(["status", bus, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.text), {
    kind: "msgfs",
    path: bus,
    what: "directory bus",
    settings: { ttl_ms: 600_000, access: "private", mode: "0700", gid: Deno.gid() },
    counts: { messages: 2, topics: 1 },
    bytes: 7,
  });
  r = await fsbus(["status", bus]);
  assert.match(r.text, /^.*bus: directory bus \(msgfs\)\n(.|\n)* {2}messages +2\n/);

  const g = `${tmp.path}/g`;
  await fsbus(["mq", "mkgroup", g, "--replay", "all", "--depth", "100"]);
  await fsbus(["mq", "write", g, "a", "hello"]);
  await fsbus(["mq", "write", g, "b", "hi"]);
  r = await fsbus(["status", g, "--json"]);
  const mq = JSON.parse(r.text);
  assert.equal(mq.what, "mq group");
  assert.deepEqual(mq.settings, { data: "message", replay: "all", depth: "100" });
  assert.deepEqual(mq.counts, { streams: 2, messages: 2 });
  assert.equal(mq.bytes, 7);

  const file = `${tmp.path}/fb`;
  Deno.writeTextFileSync(file, "chunk");
  Deno.writeTextFileSync(`${file}.lock`, "");
  r = await fsbus(["status", file, "--json"]);
  const fb = JSON.parse(r.text);
  assert.equal(fb.what, "filebus file");
  assert.deepEqual(fb.counts, { chunks: 1, eof_markers: 0, writes_in_progress: 0 });
  Deno.removeSync(file);
  r = await fsbus(["status", file, "--json"]);
  assert.equal(JSON.parse(r.text).bytes, 0, "only the lock: still a filebus file");

  const root = `${tmp.path}/rings`;
  await fsbus(["fanout", "create", "news", "--messages", "--size", "64K", "--root", root]);
  r = await fsbus(["status", `${root}/news`, "--json"]);
  const fo = JSON.parse(r.text);
  assert.equal(fo.what, "fanout topic");
  assert.deepEqual(fo.settings, { backend: "ring", kind: "messages", size: 65536 });
  assert.deepEqual(fo.counts, { readers: 0, writers: 0 });

  r = await fsbus(["status", `${tmp.path}/nothing`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^fsbus: Cannot describe ".*nothing": no such file or directory\n$/);
});

Deno.test("fsbus completions bash completes commands, subcommands and options", async () => {
  using tmp = tempDir();
  const r = await fsbus(["completions", "bash"]);
  assert.equal(r.code, 0, r.stderr);
  Deno.writeTextFileSync(`${tmp.path}/c.bash`, r.text);
  const complete = async (...words: string[]) => {
    const script = `source ${tmp.path}/c.bash
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
_fsbus; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const res = await sh(script);
    assert.equal(res.code, 0, res.stderr);
    return res.text.trim().split("\n").sort();
  };
  assert.deepEqual(await complete("fsbus", "su"), ["sub", "submsg"]);
  assert.deepEqual(await complete("fsbus", "mq", "w"), ["write"]);
  assert.deepEqual(await complete("fsbus", "mq", "read", "G", "--r"), ["--raw", "--replay"]);
  assert.deepEqual(await complete("fsbus", "sub", "DIR", "--co"), ["--count"]);
  assert.deepEqual(await complete("fsbus", "help", "fan"), ["fanout"]);
  for (const shell of ["zsh", "fish"]) {
    const s = await fsbus(["completions", shell]);
    assert.equal(s.code, 0);
    assert.match(s.text, /submsg/);
  }
  const bad = await fsbus(["completions", "bsh"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /did you mean "bash"/);
});

/** Runs fsbus as uid 65534 (nobody), with a Deno cache it may write. */
async function asNobody(args: string[], denoDir: string) {
  const { deno, cli } = runnableByOthers();
  const r = await new Deno.Command("setpriv", {
    args: [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      deno,
      "run",
      "-A",
      "--quiet",
      cli,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_DIR: denoDir, HOME: denoDir },
  }).output();
  return {
    code: r.code,
    stdout: r.stdout,
    text: new TextDecoder().decode(r.stdout),
    stderr: new TextDecoder().decode(r.stderr),
  };
}

Deno.test("misleading errors are clear one-liners with the right exit codes (defect 6)", async () => {
  using tmp = tempDir();
  using denoDir = tempDir();
  Deno.chmodSync(tmp.path, 0o755);
  Deno.chmodSync(denoDir.path, 0o777);
  const file = `${tmp.path}/file`;
  Deno.writeTextFileSync(file, "x");
  let r = await fsbus(["gc", file]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot sweep "${file}": not a directory\n`);
  r = await fsbus(["init", file]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot create a bus at "${file}": not a directory\n`);
  r = await fsbus(["pin", "-m", file, "-l"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot use session root "${file}": it is not a directory\n`);

  // Another user: a private pin root, a bus whose messages it may not remove, a ring it may
  // not open.
  const pins = `${tmp.path}/pins`;
  Deno.mkdirSync(pins, { mode: 0o700 });
  r = await asNobody(["pin", "-m", pins, "-l"], denoDir.path);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot use session root "${pins}": permission denied\n`);

  const bus = `${tmp.path}/bus`;
  Deno.mkdirSync(bus, { mode: 0o755 });
  for (const n of ["a", "b", "c"]) Deno.writeTextFileSync(`${bus}/${n}`, n);
  r = await asNobody(["gc", bus, "--ttl", "0s"], denoDir.path);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.text, "removed 0, kept 0\n");
  assert.equal(r.stderr, `fsbus: Cannot remove 3 of the expired messages in "${bus}"\n`);

  const root = `${tmp.path}/rings`;
  assert.equal((await fsbus(["fanout", "create", "t", "--root", root, "--mode", "600"])).code, 0);
  Deno.chmodSync(root, 0o755);
  r = await asNobody(["fanout", "list", "--root", root], denoDir.path);
  assert.equal(r.code, 1);
  assert.match(r.text, /^TOPIC +BACKEND +SIZE +KIND +READERS +WRITERS\nt +ring +\? +\? +\? +\?\n$/);
  assert.match(r.stderr, /^fsbus: Cannot read topic "t": .*permission denied\n$/);
});

Deno.test("--exec runs a command per message for mq read and fanout sub too", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const log = `${tmp.path}/log`;
  await fsbus(["mq", "mkgroup", g, "--replay", "all"]);
  await fsbus(["mq", "write", g, "s", "one"]);
  await fsbus(["mq", "write", g, "s", "two"]);
  const script =
    `printf '%s|%s|' "$FSBUS_TOPIC" "$FSBUS_ID" >> ${log}; cat >> ${log}; echo >> ${log}`;
  let r = await fsbus(["mq", "read", g, "s", "-n", "2", "--exec", script]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.readTextFileSync(log), "s|0|one\ns|1|two\n");
  Deno.removeSync(log);

  const root = `${tmp.path}/rings`;
  await fsbus(["fanout", "create", "t", "--root", root]);
  await fsbus(["pubmsg", "t", "--root", root], { stdin: "a\nb\n" });
  r = await fsbus([
    "fanout",
    "sub",
    "t",
    "--replay",
    "all",
    "-n",
    "2",
    "--exec",
    script,
    "--root",
    root,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.readTextFileSync(log), "t|1|a\n\nt|2|b\n\n");
});
