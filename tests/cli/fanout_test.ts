import assert from "node:assert/strict";
import { collect, fsbus, spawnFsbus, tempDir, waitFor } from "../_helpers.ts";
import { createTopic, describeTopic, openWriter } from "../../transports/fanout/mod.ts";

async function stop(child: Deno.ChildProcess): Promise<void> {
  for (const sig of ["SIGCONT", "SIGKILL"] as const) {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
  await child.status;
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
}

function procState(pid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]!;
}

/** Whether process `pid` holds a flock(2) on `path` (read from /proc, without locking). */
function holdsFlock(pid: number, path: string): boolean {
  for (const e of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) !== path) continue;
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${e.name}`);
      if (/FLOCK\s+ADVISORY\s+WRITE/.test(info)) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

async function readers(topic: string, root: string, n: number): Promise<void> {
  await waitFor(() => describeTopic(topic, { root }).readers === n, `${n} readers of ${topic}`);
}

Deno.test("fanout CLI: create, list, pub, sub, rm", async () => {
  using dir = tempDir();
  const root = dir.path;
  let r = await fsbus(["fanout", "create", "news", "ev", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus([
    "fanout",
    "create",
    "big",
    "--size",
    "1M",
    "--messages",
    "--mode",
    "600",
    "--root",
    root,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(`${root}/big`).mode! & 0o777, 0o600);
  r = await fsbus(["fanout", "list", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.text, /^TOPIC\s+BACKEND\s+SIZE\s+KIND\s+READERS\s+WRITERS\n/);
  assert.match(r.text, /\nbig\s+ring\s+1048576\s+messages\s+0\s+0\n/);
  assert.match(r.text, /\nnews\s+ring\s+16384\s+bytes\s+0\s+0\n/);

  const sub = spawnFsbus(["fanout", "sub", "news", "ev", "--root", root, "--count", "3"]);
  const out = collect(sub.stdout);
  try {
    await readers("news", root, 1);
    r = await fsbus(["fanout", "list", "--root", root, "--json"]);
    const news = r.text.trim().split("\n").map((l) => JSON.parse(l)).find((t) =>
      t.topic === "news"
    );
    assert.equal(news.readers, 1);
    assert.equal((await fsbus(["fanout", "pub", "news", "one\n", "--root", root])).code, 0);
    r = await fsbus(["fanout", "pub", "ev", "--root", root], { stdin: "two\nthree\n" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sub.status).code, 0);
    await out.done;
    assert.equal(out.text(), "one\ntwo\nthree\n");
  } finally {
    await stop(sub);
  }
  r = await fsbus(["fanout", "rm", "news", "ev", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["big"]);
});

Deno.test("fanout CLI: a late reader starts at now; --from-oldest replays the ring", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root });
  await fsbus(["fanout", "pub", "t", "old-1\nold-2\n", "--root", root]);
  const late = spawnFsbus(["fanout", "sub", "t", "--root", root, "--count", "1"]);
  const out = collect(late.stdout);
  try {
    await readers("t", root, 1);
    await fsbus(["fanout", "pub", "t", "new\n", "--root", root]);
    assert.equal((await late.status).code, 0);
    await out.done;
    assert.equal(out.text(), "new\n");
  } finally {
    await stop(late);
  }
  const r = await fsbus(["fanout", "sub", "t", "--root", root, "--from-oldest", "--count", "3"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.text, "old-1\nold-2\nnew\n");
});

Deno.test("fanout CLI: a stopped reader reports an overrun every time, then reads fresh data", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root, size: 16384 });
  const sub = spawnFsbus(["fanout", "sub", "t", "--root", root]);
  const out = collect(sub.stdout);
  const err = collect(sub.stderr);
  using w = openWriter("t", { root });
  try {
    await readers("t", root, 1);
    for (let round = 1; round <= 3; round++) {
      w.write(`live-${round}\n`);
      await waitFor(() => out.text().includes(`live-${round}\n`), `live-${round}`);
      sub.kill("SIGSTOP");
      await waitFor(() => procState(sub.pid) === "T", "the reader to stop");
      // More than a ring while it sleeps: 64 KiB of whole lines.
      for (let i = 0; i < 1024; i++) w.write(`lost-${round}-${String(i).padStart(52, "0")}\n`);
      sub.kill("SIGCONT");
      await waitFor(
        () => (err.text().match(/overrun/g) ?? []).length === round,
        `overrun notice ${round}`,
      );
      // Fresh data flows again.
      let i = 0;
      await waitFor(() => {
        w.write(`fresh-${round}-${i++}\n`);
        return out.text().includes(`fresh-${round}-`);
      }, `fresh data after overrun ${round}`);
    }
    assert.match(
      err.text(),
      /fsbus: Topic "t" overrun \(at least \d+ bytes lost\): reading on from "now"/,
    );
    // Whatever was printed is whole lines: nothing torn was ever delivered.
    for (const line of out.text().split("\n").slice(0, -1)) {
      assert.match(line, /^(live-\d|lost-\d-\d{52}|fresh-\d-\d+)$/);
    }
  } finally {
    await stop(sub);
  }
});

Deno.test("pubmsg: lines with newlines, one publisher per topic, exit 0 at end of input", async () => {
  using dir = tempDir();
  const root = dir.path;
  let r = await fsbus(["pubmsg", "t", "--root", root], { stdin: "x\n" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^fsbus: Cannot open topic "t" in ".*": no such topic\n$/);

  const sub = spawnFsbus(["submsg", "t", "--root", root, "--count", "3", "--create"]);
  const out = collect(sub.stdout);
  try {
    await waitFor(() => {
      try {
        return describeTopic("t", { root }).readers === 1;
      } catch {
        return false;
      }
    }, "submsg to create and read t");
    r = await fsbus(["pubmsg", "t", "--root", root], { stdin: "a\nb\nno-newline" });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sub.status).code, 0);
    await out.done;
    assert.equal(out.text(), "a\nb\nno-newline\n");
  } finally {
    await stop(sub);
  }

  // flock(1) holds the lock: pubmsg refuses.
  const holder = new Deno.Command("bash", {
    args: ["-c", `exec 9>>'${root}/t.lock'; flock -n 9 && echo locked && exec sleep 30`],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const held = collect(holder.stdout);
  try {
    await waitFor(() => held.text().includes("locked"), "flock(1) to hold the lock");
    r = await fsbus(["pubmsg", "t", "--root", root], { stdin: "x\n" });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'fsbus: Cannot use topic "t": already being used\n');
  } finally {
    holder.kill("SIGKILL");
    await holder.status;
    await held.done.catch(() => {});
  }
  // A running pubmsg holds it too.
  const first = spawnFsbus(["pubmsg", "t", "--root", root]);
  const firstErr = collect(first.stderr);
  try {
    // Watch for its flock without taking the lock ourselves (a probe could make it fail).
    await waitFor(() => {
      assert.equal(firstErr.text(), "", "pubmsg runs");
      return holdsFlock(first.pid, `${root}/t.lock`);
    }, "the first pubmsg to hold the lock");
    r = await fsbus(["pubmsg", "t", "--root", root], { stdin: "x\n" });
    assert.match(r.stderr, /already being used/);
    await first.stdin.close();
    assert.equal((await first.status).code, 0);
  } finally {
    await stop(first);
  }
  r = await fsbus(["pubmsg", "t", "--root", root], { stdin: "free again\n" });
  assert.equal(r.code, 0, r.stderr);
});

Deno.test("submsg: comma list, -e, --prefix, every topic, never the .lock files", async () => {
  using dir = tempDir();
  const root = dir.path;
  for (const t of ["a", "b", "c"]) createTopic(t, { root });
  await fsbus(["pubmsg", "a", "--root", root], { stdin: "leave a lock file\n" });
  assert.ok(Deno.statSync(`${root}/a.lock`).isFile);

  const listed = spawnFsbus(["submsg", "a,b", "--root", root, "--prefix", "--count", "2"]);
  const excluded = spawnFsbus(["submsg", "-e", "a", "--root", root, "--prefix", "--count", "2"]);
  const all = spawnFsbus(["submsg", "--root", root, "--count", "3"]);
  const outs = [listed, excluded, all].map((c) => collect(c.stdout));
  try {
    await readers("a", root, 2);
    await readers("b", root, 3);
    await readers("c", root, 2);
    // No subscriber opened a .lock file.
    for (const c of [listed, excluded, all]) {
      for (const e of Deno.readDirSync(`/proc/${c.pid}/fd`)) {
        let target = "";
        try {
          target = Deno.readLinkSync(`/proc/${c.pid}/fd/${e.name}`);
        } catch {
          // closed meanwhile
        }
        assert.ok(!target.endsWith(".lock"), `${target} opened`);
      }
    }
    for (const t of ["c", "a", "b"]) {
      const r = await fsbus(["pubmsg", t, "--root", root], { stdin: `from ${t}\n` });
      assert.equal(r.code, 0, r.stderr);
    }
    for (const c of [listed, excluded, all]) assert.equal((await c.status).code, 0);
    await Promise.all(outs.map((o) => o.done));
    assert.equal(outs[0]!.text(), "a: from a\nb: from b\n");
    assert.equal(outs[1]!.text(), "c: from c\nb: from b\n");
    assert.equal(outs[2]!.text(), "from c\nfrom a\nfrom b\n");
  } finally {
    for (const c of [listed, excluded, all]) await stop(c);
  }
  const r = await fsbus(["submsg", "a.lock", "--root", root]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /\.lock files are not topics/);
});

Deno.test("fanout CLI: binary messages survive message mode", async () => {
  using dir = tempDir();
  const root = dir.path;
  let r = await fsbus(["fanout", "create", "bin", "--messages", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  const sub = spawnFsbus(["fanout", "sub", "bin", "--root", root, "--json", "--count", "2"]);
  const out = collect(sub.stdout);
  const payload = new Uint8Array(300).map((_, i) => (i * 37) % 256);
  try {
    await readers("bin", root, 1);
    r = await fsbus(["fanout", "pub", "bin", "--root", root], { stdin: payload });
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["fanout", "pub", "bin", "--root", root], { stdin: new Uint8Array(0) });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await sub.status).code, 0);
    await out.done;
    const [first, second] = out.text().trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(first.encoding, "base64");
    assert.equal(first.topic, "bin");
    const bytes = Uint8Array.from(atob(first.data), (c) => c.charCodeAt(0));
    assert.deepEqual(bytes, payload);
    assert.equal(second.size, 0);
  } finally {
    await stop(sub);
  }
});

Deno.test("fanout CLI: bad input gives clear errors and exit codes", async () => {
  using dir = tempDir();
  const root = dir.path;
  const cases: [string[], number, RegExp, (Uint8Array | string)?][] = [
    [
      ["fanout", "sub", "nope", "--root", root],
      1,
      /^fsbus: Cannot open topic "nope" in ".*": no such topic/,
    ],
    [
      ["fanout", "pub", "nope", "x", "--root", root],
      1,
      /Cannot open topic "nope" in ".*": no such topic/,
    ],
    [["submsg", "nope", "--root", root], 1, /Cannot open topic "nope" in ".*": no such topic/],
    [
      ["fanout", "list", "--root", `${root}/file`],
      1,
      /Cannot use topic root ".*file": not a directory/,
    ],
    [
      ["pubmsg", "t", "--root", `${root}/file`],
      1,
      /Cannot use topic root ".*file": not a directory/,
    ],
    [["fanout", "sub", "junk", "--root", root], 1, /not an fsbus ring \(bad magic\)/],
    [["fanout", "pub", "cut", "x", "--root", root], 1, /wrong size: 10000 bytes, expected 24576/],
    [
      ["fanout", "pub", "m", "--root", root],
      1,
      /Cannot write 5000 bytes to topic "m": at most 4092 bytes fit/,
      new Uint8Array(5000),
    ],
    [
      ["fanout", "create", "x", "--mode", "999", "--root", root],
      2,
      /Cannot use "999" for "--mode": expected octal/,
    ],
    [
      ["fanout", "create", "x", "--size", "12", "--root", root],
      1,
      /Ring size "12" is out of range/,
    ],
    [["fanout", "frob"], 2, /Unknown command "frob" for "fsbus fanout"/],
    [["fanout", "sub", "--root", root], 2, /Missing argument/],
  ];
  Deno.writeTextFileSync(`${root}/file`, "x");
  Deno.writeTextFileSync(`${root}/junk`, "j".repeat(5000));
  Deno.mkdirSync(`${root}/empty`);
  createTopic("cut", { root });
  Deno.truncateSync(`${root}/cut`, 10000);
  createTopic("m", { root, messages: true });
  for (const [args, code, re, stdin] of cases) {
    const r = await fsbus(args, stdin === undefined ? {} : { stdin });
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(" "));
    assert.equal(r.stderr.split("\n").length, 2, `one line: ${r.stderr}`);
  }
});

Deno.test("fanout CLI: help with examples; device topics through a symlink", async () => {
  for (
    const args of [
      ["fanout", "--help"],
      ["fanout", "create", "--help"],
      ["fanout", "list", "--help"],
      ["fanout", "rm", "--help"],
      ["fanout", "pub", "--help"],
      ["fanout", "sub", "--help"],
      ["pubmsg", "--help"],
      ["submsg", "--help"],
    ]
  ) {
    const r = await fsbus(args);
    assert.equal(r.code, 0, args.join(" "));
    assert.match(r.text, /Usage: fsbus /);
    assert.match(r.text, /Examples:\n {2}\S/);
  }
  using dir = tempDir();
  const root = dir.path;
  Deno.symlinkSync("/dev/null", `${root}/dev`);
  let r = await fsbus(["fanout", "list", "--root", root]);
  assert.match(r.text, /\ndev\s+device\s+16384\s+bytes\s+\?\s+\?\n/);
  r = await fsbus(["fanout", "pub", "dev", "hello", "--root", root]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["pubmsg", "dev", "--root", root], { stdin: "line\n".repeat(2000) });
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["fanout", "sub", "dev", "--root", root, "--from-oldest"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /has no FANOUT_SET_SEEK_SET ioctl/);
});
