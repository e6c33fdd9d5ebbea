import assert from "node:assert/strict";
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

const dec = new TextDecoder();

/** Starts `fsbus sub ARGS` and waits until it is watching the bus. */
async function startSub(args: string[], env: Record<string, string> = {}) {
  const child = spawnFsbus(["sub", ...args], env);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  await waitFor(() => inotifyWatches(child.pid) > 0, "the subscriber's watch");
  return { child, stdout, stderr };
}

Deno.test("inotifywait -e close_write sees exactly one event per fsbus pub", async () => {
  using bus = tempDir();
  const watcher = new Deno.Command("inotifywait", {
    args: ["-m", "-q", "-e", "close_write", "--format", "%e %f", bus.path],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const events = collect(watcher.stdout);
  try {
    await waitFor(() => inotifyWatches(watcher.pid) > 0, "inotifywait's watch");
    for (let i = 0; i < 5; i++) assert.equal((await fsbus(["pub", bus.path, `m${i}`])).code, 0);
    const names = [...Deno.readDirSync(bus.path)].map((e) => e.name).filter((n) =>
      !n.startsWith(".")
    ).sort();
    assert.equal(names.length, 5);
    await waitFor(() => events.text().split("\n").filter(Boolean).length >= 5, "five events");
    // Publish a marker with plain shell: once its event is in, nothing else can be pending.
    await sh(`echo done > ${bus.path}/zz-marker`);
    await waitFor(() => events.text().includes("zz-marker"), "the marker's event");
    const lines = events.text().split("\n").filter((l) => l && !l.includes("zz-marker"));
    assert.deepEqual(lines.sort(), names.map((n) => `CLOSE_WRITE,CLOSE ${n}`));
  } finally {
    await stop(watcher);
  }
});

Deno.test("fsbus sub receives echo, cp and mv from a shell, and fsbus pub", async () => {
  using bus = tempDir();
  using outside = tempDir();
  const sub = await startSub([bus.path, "--json"]);
  try {
    await sh(`echo hi > ${bus.path}/from-echo`);
    await sh(`printf 'copied' > ${outside.path}/f && cp ${outside.path}/f ${bus.path}/from-cp`);
    await sh(`printf 'moved' > ${outside.path}/g && mv ${outside.path}/g ${bus.path}/from-mv`);
    await fsbus(["pub", bus.path, "published"]);
    await waitFor(() => sub.stdout.text().split("\n").filter(Boolean).length >= 4, "four messages");
    const got = sub.stdout.text().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    assert.deepEqual(got.map((m) => m.data), ["hi\n", "copied", "moved", "published"]);
    assert.deepEqual(got.slice(0, 3).map((m) => m.id), ["from-echo", "from-cp", "from-mv"]);
    for (const m of got) {
      assert.equal(m.topic, "");
      assert.equal(m.encoding, "utf-8");
      assert.equal(m.size, new TextEncoder().encode(m.data).length);
      assert.ok(!Number.isNaN(Date.parse(m.time)));
    }
  } finally {
    await stop(sub.child);
  }
});

Deno.test("payloads with NUL bytes, empty messages and 64 MiB messages arrive byte-identical", async () => {
  using bus = tempDir();
  using files = tempDir();
  const big = new Uint8Array(64 * 1024 * 1024);
  crypto.getRandomValues(big.subarray(0, 65536));
  for (let off = 65536; off < big.length; off += 65536) big.copyWithin(off, 0, 65536);
  big[12345] = 0;
  Deno.writeFileSync(`${files.path}/big`, big);
  const nul = new Uint8Array([0, 0, 1, 0, 255, 0]);

  // NUL bytes and the empty message, through --json (base64 for non-UTF-8).
  const sub = await startSub([bus.path, "--json", "--count", "2"]);
  await fsbus(["pub", bus.path], { stdin: nul });
  await fsbus(["pub", bus.path, ""]);
  assert.equal((await sub.child.status).code, 0);
  await sub.stdout.done;
  const [a, b] = sub.stdout.text().trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(a.encoding, "base64");
  assert.deepEqual([...Uint8Array.from(atob(a.data), (c) => c.charCodeAt(0))], [...nul]);
  assert.equal(b.size, 0);
  assert.equal(b.data, "");

  // 64 MiB, raw to stdout.
  const sub2 = await startSub([bus.path, "--raw", "--count", "1"]);
  const pub = await sh(
    `${Deno.execPath()} run -A --quiet ${CLI} pub ${bus.path} < ${files.path}/big`,
  );
  assert.equal(pub.code, 0, pub.stderr);
  assert.equal((await sub2.child.status).code, 0);
  await sub2.stdout.done;
  const got = sub2.stdout.bytes();
  assert.equal(got.length, big.length);
  assert.ok(got.every((v, i) => v === big[i]), "64 MiB payload differs");
});

Deno.test("--lines on both sides, --count, --since all, topics and --recursive", async () => {
  using bus = tempDir();
  const pub = await fsbus(["pub", bus.path, "--lines"], { stdin: "one\ntwo\nthree" });
  assert.equal(pub.code, 0, pub.stderr);
  assert.equal(pub.text, "");
  await fsbus(["pub", bus.path, "--topic", "t/u", "deep"]);
  const replay = await fsbus(["sub", bus.path, "--since", "all", "--lines", "--count", "3"]);
  assert.equal(replay.text, "one\ntwo\nthree\n");
  const rec = await fsbus(["sub", bus.path, "--since", "all", "-r", "--json", "--count", "4"]);
  const msgs = rec.text.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(msgs.map((m) => [m.topic, m.data]), [["", "one"], ["", "two"], ["", "three"], [
    "t/u",
    "deep",
  ]]);
  const topic = await fsbus(["sub", bus.path, "--since", "1h", "--topic", "t/u", "--count", "1"]);
  assert.equal(topic.text, "deep\n");
});

Deno.test("--exec runs a command per message with the message on stdin and its metadata", async () => {
  using bus = tempDir();
  using outDir = tempDir();
  await fsbus(["pub", bus.path, "--topic", "news", "hello"]);
  const script =
    `printf '%s|%s|' "$FSBUS_TOPIC" "$FSBUS_ID" >> ${outDir.path}/log; cat >> ${outDir.path}/log`;
  const r = await fsbus([
    "sub",
    bus.path,
    "-r",
    "--since",
    "all",
    "--count",
    "1",
    "--exec",
    script,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [topic, id, body] = Deno.readTextFileSync(`${outDir.path}/log`).split("|");
  assert.equal(topic, "news");
  assert.match(id!, /^[0-9a-f-]{36}$/);
  assert.equal(body, "hello");
});

Deno.test("bad input: missing directory, a file, unknown flags, bad values: one line, documented codes", async () => {
  using dir = tempDir();
  const missing = `${dir.path}/missing`;
  let r = await fsbus(["sub", missing]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot subscribe to "${missing}": no such file or directory\n`);
  r = await fsbus(["pub", missing, "x"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot publish to "${missing}": no such file or directory\n`);
  Deno.writeTextFileSync(`${dir.path}/file`, "");
  r = await fsbus(["sub", `${dir.path}/file`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot subscribe to "${dir.path}/file": not a directory\n`);
  r = await fsbus(["sub", dir.path, "--nope"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `fsbus: Unknown option "--nope" for "fsbus sub"; to give an argument that starts with "-", put "--" before it (see "fsbus sub --help")\n`,
  );
  r = await fsbus(["sub", dir.path, "--count", "many"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Cannot use "many" for "--count"/);
  r = await fsbus(["sub", dir.path, "--since", "yesterday"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Cannot use "yesterday" for "--since"/);
  r = await fsbus(["sub"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^fsbus: Missing argument for "fsbus sub": expected DIR\n$/);
  r = await fsbus(["nope"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `fsbus: Unknown command "nope" for "fsbus" (see "fsbus --help")\n`);
});

Deno.test("permission denied, as a user who may not read or write the bus", async () => {
  using bus = tempDir();
  using denoDir = tempDir();
  Deno.chmodSync(bus.path, 0o700);
  Deno.chmodSync(denoDir.path, 0o777);
  const asNobody = (args: string) =>
    sh(
      `DENO_DIR=${denoDir.path} HOME=${denoDir.path} NO_COLOR=1 setpriv --reuid 65534 --regid 65534 --clear-groups ` +
        `${runnableByOthers().deno} run -A --quiet ${runnableByOthers().cli} ${args}`,
    );
  let r = await asNobody(`sub ${bus.path}`);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `fsbus: Cannot subscribe to "${bus.path}": permission denied\n`);
  r = await asNobody(`pub ${bus.path} hi`);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot publish to "${bus.path}": permission denied\n`);
  assert.deepEqual([...Deno.readDirSync(bus.path)], []);
});

Deno.test("a symlink to a secret file moved into the bus is never read", async () => {
  using bus = tempDir();
  using outside = tempDir();
  Deno.writeTextFileSync(`${outside.path}/secret`, "SECRET");
  const sub = await startSub([bus.path, "--lines"]);
  try {
    await sh(
      `ln -s ${outside.path}/secret ${outside.path}/link && mv ${outside.path}/link ${bus.path}/link`,
    );
    await fsbus(["pub", bus.path, "after"]);
    await waitFor(() => sub.stdout.text().includes("after"), "the message after the symlink");
    assert.equal(sub.stdout.text(), "after\n");
    await waitFor(() => sub.stderr.text().includes("Skipped"), "the notice");
    assert.equal(sub.stderr.text(), `fsbus: Skipped "${bus.path}/link": a symbolic link\n`);
  } finally {
    await stop(sub.child);
  }
});

Deno.test("without FFI permission, sub falls back to Deno.watchFs and says so once", async () => {
  // Deno asks for -A for anything under /dev, so this bus lives on /tmp.
  using bus = tempDir("/tmp");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--quiet",
      CLI,
      "sub",
      bus.path,
      "--count",
      "1",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  await waitFor(() => inotifyWatches(child.pid) > 0, "the fallback watch");
  await sh(`printf fallback > ${bus.path}/m`);
  assert.equal((await child.status).code, 0);
  await stdout.done;
  await stderr.done;
  assert.equal(stdout.text(), "fallback\n");
  assert.match(stderr.text(), /^fsbus: FFI is not permitted .*Deno\.watchFs plus rescans\n$/);
});

Deno.test("init, gc, --version and --help", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  let r = await fsbus(["init", bus, "--ttl", "10m"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(bus).mode! & 0o7777, 0o700);
  assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${bus}/.fsbus.json`)), { ttl_ms: 600_000 });
  await fsbus(["pub", bus, "x"]);
  r = await fsbus(["gc", bus]);
  assert.equal(r.text, "removed 0, kept 1\n");
  r = await fsbus(["gc", bus, "--ttl", "0s"]);
  assert.equal(r.text, "removed 1, kept 0\n");
  r = await fsbus(["init", `${dir.path}/shared`, "--group", "root"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(`${dir.path}/shared`).mode! & 0o7777, 0o3770);
  r = await fsbus(["init", `${dir.path}/x`, "--group", "no-such-group-here"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `fsbus: Cannot find group "no-such-group-here": no such group\n`);

  const version = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).version;
  assert.equal((await fsbus(["--version"])).text, `fsbus ${version}\n`);
  const top = await fsbus(["--help"]);
  assert.equal(top.code, 0);
  for (
    const c of ["pub", "sub", "init", "gc", "filebus", "mq", "pin", "fanout", "pubmsg", "submsg"]
  ) {
    assert.match(top.text, new RegExp(`^  ${c} `, "m"));
  }
  for (const c of ["pub", "sub", "init", "gc"]) {
    const h = await fsbus([c, "--help"]);
    assert.equal(h.code, 0);
    assert.match(h.text, new RegExp(`^Usage: fsbus ${c} `));
    assert.match(h.text, /\nExamples:\n/);
  }
  assert.equal(dec.decode((await fsbus([])).stdout).startsWith("fsbus "), true);
});
