import assert from "node:assert/strict";
import { collect, fsbus, inotifyWatches, sh, spawnFsbus, tempDir, waitFor } from "../_helpers.ts";

const MOD = new URL("../../transports/mq/mod.ts", import.meta.url).href;
const dec = new TextDecoder();

Deno.test("fsbus mq: 4 writer processes, 100k writes over 4 streams: cat and order agree", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  const PER = 25_000;
  // Library-level writers: each writes PER messages "w<writer> <i>\n", rotating streams.
  const script = (w: number) => `
    import { MqGroup } from "${MOD}";
    const g = MqGroup.open("${g}");
    for (let i = 0; i < ${PER}; i++) g.write(String((i + ${w}) % 4), "w${w} " + i + "\\n");
    g.close();
  `;
  const writers = [0, 1, 2, 3].map((w) =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", script(w)],
      stdout: "null",
      stderr: "piped",
    }).spawn()
  );
  for (const w of writers) {
    const res = await w.output();
    assert.equal(res.code, 0, dec.decode(res.stderr));
  }
  for (const s of ["0", "1", "2", "3"]) {
    assert.equal((await fsbus(["mq", "write", g, s], { stdin: "" })).code, 0);
  }
  const cat = await fsbus(["mq", "cat", g, "0", "1", "2", "3"]);
  assert.equal(cat.code, 0, cat.stderr);
  const lines = cat.text.split("\n").slice(0, -1);
  assert.equal(lines.length, 4 * PER);

  // The expected global order, rebuilt from the raw files alone: for each name in
  // `order`, the next line of that stream's file.
  const order = Deno.readTextFileSync(`${g}/order`).split("\0").slice(0, -1);
  assert.equal(order.length, 4 * PER + 4, "order has an entry per write (and the 4 EOFs)");
  const streams = new Map<string, string[]>();
  for (const s of ["0", "1", "2", "3"]) {
    streams.set(s, Deno.readTextFileSync(`${g}/${s}`).split("\n").slice(0, -1).reverse());
  }
  const expected: string[] = [];
  for (const name of order) {
    const next = streams.get(name)!.pop();
    if (next !== undefined) expected.push(next);
  }
  assert.deepEqual(lines, expected);
  // Each writer's messages appear in its own order, none lost or doubled.
  const lastSeen = [-1, -1, -1, -1];
  for (const line of lines) {
    const [w, i] = line.slice(1).split(" ").map(Number) as [number, number];
    assert.equal(i, lastSeen[w]! + 1);
    lastSeen[w] = i;
  }
  assert.deepEqual(lastSeen, [PER - 1, PER - 1, PER - 1, PER - 1]);
  // The writers really interleaved.
  let switches = 0;
  for (let i = 1; i < lines.length; i++) if (lines[i]![1] !== lines[i - 1]![1]) switches++;
  assert.ok(switches > 100, `only ${switches} switches between writers`);
  // `fsbus mq read GROUP order` is the raw order.
  const rawOrder = await fsbus([
    "mq",
    "read",
    g,
    "order",
    "--replay",
    "all",
    "--raw",
    "--count",
    "40004",
  ]);
  assert.equal(rawOrder.code, 0, rawOrder.stderr);
  assert.deepEqual(rawOrder.stdout, Deno.readFileSync(`${g}/order`).subarray(0, 40004 * 2));
});

Deno.test("fsbus mq: mkgroup, ctl, write, read; plain shell takes part", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g])).code, 0);
  assert.equal(Deno.readTextFileSync(`${g}/ctl`), "data message\nreplay off\n");
  assert.equal((await fsbus(["mq", "ctl", g])).text, "data message\nreplay off\n");
  const set = await fsbus(["mq", "ctl", g, "replay", "all"]);
  assert.equal(set.code, 0);
  assert.equal(set.text, "data message\nreplay all\n");
  assert.equal((await sh(`cat ${g}/ctl`)).text, "data message\nreplay all\n");

  assert.equal((await fsbus(["mq", "write", g, "0", "one\n"])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "0"], { stdin: "two\nthree\n" })).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "0", "--lines"], { stdin: "4\n5\n" })).code, 0);
  await sh(`echo six >> ${g}/0`);
  const json = await fsbus(["mq", "read", g, "0", "--json", "--count", "5"]);
  assert.equal(json.code, 0, json.stderr);
  const objs = json.text.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(objs.map((o) => o.data), ["one\n", "two\nthree\n", "4\n", "5\n", "six\n"]);
  assert.ok(objs.every((o) => o.stream === "0"));
  assert.equal((await fsbus(["mq", "read", g, "0", "--replay", "last", "-n", "1"])).text, "six\n");

  // A shell rewriting ctl: picked up by the next access; rejected text is reported.
  await sh(`echo data coalesce > ${g}/ctl`);
  assert.equal((await fsbus(["mq", "ctl", g])).text, "data coalesce\nreplay all\n");
  await sh(`echo 'replay maybe' > ${g}/ctl`);
  const after = await fsbus(["mq", "ctl", g]);
  assert.equal(after.text, "data coalesce\nreplay all\n");
  assert.match(
    after.stderr,
    /Rejected a write to ".*\/ctl": "replay maybe": usage: replay off\|last\|all/,
  );

  // Live: a reader waiting for new messages gets them, and ends at EOF.
  assert.equal((await fsbus(["mq", "write", g, "live", "before\n"])).code, 0);
  const live = spawnFsbus(["mq", "read", g, "live", "--replay", "off", "--data", "message"]);
  const got = collect(live.stdout);
  const errs = collect(live.stderr);
  try {
    await waitFor(async () => {
      return (await fsbus(["mq", "write", g, "live", "ping\n"])).code === 0 &&
        got.text().includes("ping");
    }, "the live reader to print ping");
    await fsbus(["mq", "write", g, "live"], { stdin: "" });
    assert.equal((await live.status).code, 0, errs.text());
    assert.ok(!got.text().includes("before"), "replay off skips history");
  } finally {
    try {
      live.kill();
    } catch {
      // ended
    }
    await live.status;
    await got.done;
    await errs.done;
  }
});

Deno.test("fsbus mq: bad input gives clear errors and writes nothing", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "0", "x"])).code, 0);
  const before = Deno.readFileSync(`${g}/order`);
  const cases: [string[], RegExp, number][] = [
    [["mq", "ctl", g, "replay", "sometimes"], /^fsbus: usage: replay off\|last\|all\n$/, 1],
    [["mq", "ctl", g, "data", "lines"], /^fsbus: usage: data message\|coalesce\n$/, 1],
    [["mq", "ctl", g, "depth", "many"], /^fsbus: usage: depth count\|size\[K\|M\|G\]\n$/, 1],
    [["mq", "write", g, "order", "x"], /Cannot write to "order" of ".*": order is written by/, 1],
    [["mq", "write", g, "a/b", "x"], /Cannot use "a\/b" as a stream name .*cannot contain "\/"/, 1],
    [["mq", "write", `${tmp.path}/nope`, "0", "x"], /Cannot open group ".*\/nope": no such/, 1],
    [["mq", "read", `${tmp.path}/nope`, "0"], /Cannot open group ".*\/nope": no such/, 1],
    [["mq", "mkgroup", g, "--replay", "all"], /already a group with other settings/, 1],
    [
      ["mq", "mkgroup", `${tmp.path}/h`, "--replay", "sometimes"],
      /Cannot use "sometimes" for "--replay"/,
      2,
    ],
    [["mq", "frob"], /Unknown command "frob" for "fsbus mq"/, 2],
  ];
  for (const [args, re, code] of cases) {
    const r = await fsbus(args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.text, "");
  }
  assert.deepEqual(Deno.readFileSync(`${g}/order`), before);
  assert.equal(Deno.readTextFileSync(`${g}/ctl`), "data message\nreplay off\n");
  assert.deepEqual([...Deno.readDirSync(g)].map((e) => e.name).sort(), [
    ".mq",
    "0",
    "ctl",
    "order",
  ]);
});

Deno.test("fsbus mq: tail -f follows a stream, cat shows its bytes", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "1", "first\n"])).code, 0);
  const tail = new Deno.Command("tail", {
    args: ["-n", "+1", "-f", `${g}/1`],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const got = collect(tail.stdout);
  try {
    assert.equal((await fsbus(["mq", "write", g, "1", "second\n"])).code, 0);
    await waitFor(() => got.text() === "first\nsecond\n", "tail -f to show both messages");
    assert.equal((await sh(`cat ${g}/1`)).text, "first\nsecond\n");
  } finally {
    tail.kill();
    await tail.status;
    await got.done;
  }
});

Deno.test("fsbus mq check: explains damage, --repair repairs it, the data reads back whole", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  for (const m of ["one\n", "two\n", "three\n"]) {
    const w = await fsbus(["mq", "write", g, "s", m]);
    assert.equal(w.code, 0, `mq write ${JSON.stringify(m)}: ${w.stderr}`);
  }
  let r = await fsbus(["mq", "check", g]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.text, `${g}: 3 messages, 1 streams, format 2: sound\n`);
  // One flipped state byte in the first record.
  await sh(`printf '\\x05' | dd of=${g}/.mq/index bs=1 seek=4096 conv=notrunc 2>/dev/null`);
  r = await fsbus(["mq", "read", g, "s", "-n", "3"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    `fsbus: Cannot read group "${g}": ".mq/index" record 0 is damaged (checksum mismatch); ` +
      `see "fsbus mq check ${g}"\n`,
  );
  r = await fsbus(["mq", "check", g]);
  assert.equal(r.code, 1);
  assert.match(r.text, /\.mq\/index: record 0: checksum mismatch \(repair would: rebuild it/);
  r = await fsbus(["mq", "check", g, "--repair", "--json"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.text).repaired, true);
  r = await fsbus(["mq", "read", g, "s", "-n", "3"]);
  assert.equal(r.text, "one\ntwo\nthree\n");
});

Deno.test("fsbus mq mkgroup: --mode and --group share a group; the same settings again succeed", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  let r = await fsbus(["mq", "mkgroup", g, "--group", "0", "--replay", "all"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(Deno.statSync(g).mode! & 0o7777, 0o2770);
  await fsbus(["mq", "write", g, "s", "x"]);
  assert.equal(Deno.statSync(`${g}/s`).mode! & 0o777, 0o660);
  assert.equal(Deno.statSync(`${g}/.mq/index`).mode! & 0o777, 0o660);
  r = await fsbus(["mq", "mkgroup", g, "--replay", "all"]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["mq", "mkgroup", g]);
  assert.equal(r.code, 0, r.stderr);
  r = await fsbus(["mq", "mkgroup", g, "--replay", "off", "--mode", "0700"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    `fsbus: Cannot make group "${g}": already a group with other settings (replay all, mode 2770)\n`,
  );
  r = await fsbus(["mq", "mkgroup", `${tmp.path}/h`, "--group", "fsbt-mq-nosuchgroup"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use "fsbt-mq-nosuchgroup" for "--group": no such group/);
  r = await fsbus(["mq", "mkgroup", `${tmp.path}/h`, "--mode", "9z"]);
  assert.equal(r.code, 2);
  assert.deepEqual([...Deno.readDirSync(tmp.path)].map((e) => e.name), ["g"]);
});

Deno.test("fsbus mq read and cat wait for a stream that does not exist yet", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g])).code, 0);
  const read = spawnFsbus(["mq", "read", g, "later", "-n", "1"]);
  const cat = spawnFsbus(["mq", "cat", g, "later", "other"]);
  read.stdin.close();
  cat.stdin.close();
  // Both are reading before the stream is made: a reader watches the group before it looks.
  await waitFor(() => inotifyWatches(read.pid) >= 2 && inotifyWatches(cat.pid) >= 2, "readers");
  assert.equal((await fsbus(["mq", "write", g, "later", "hi\n"])).code, 0);
  assert.equal((await fsbus(["mq", "write", g, "other", "there\n"])).code, 0);
  await fsbus(["mq", "write", g, "later"], { stdin: "" });
  await fsbus(["mq", "write", g, "other"], { stdin: "" });
  const r = await read.output();
  assert.equal(r.code, 0);
  assert.equal(dec.decode(r.stdout), "hi\n");
  const c = await cat.output();
  assert.equal(c.code, 0, dec.decode(c.stderr));
  assert.equal(dec.decode(c.stdout), "hi\nthere\n");
});

Deno.test("fsbus mq cat exits 1 saying so when its group is removed", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  await fsbus(["mq", "write", g, "a", "x\n"]);
  const cat = spawnFsbus(["mq", "cat", g, "a", "b"]);
  cat.stdin.close();
  const out = collect(cat.stdout);
  await waitFor(() => out.text() === "x\n", "cat to print the history");
  await sh(`rm -rf ${g}`);
  const { code } = await cat.status;
  await out.done;
  const err = dec.decode(await new Response(cat.stderr).arrayBuffer());
  assert.equal(code, 1);
  assert.equal(err, `fsbus: Cannot read group "${g}": it was removed\n`);
});

Deno.test("fsbus mq: echo three > G/s (a stream rewritten in place) is never mis-split", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  await sh(`echo one >> ${g}/s; echo two >> ${g}/s`);
  assert.equal((await fsbus(["mq", "write", g, "s", "four\n"])).code, 0);
  await sh(`echo three > ${g}/s`);
  assert.equal((await fsbus(["mq", "write", g, "s", "five\n"])).code, 0);
  const r = await fsbus(["mq", "read", g, "s", "--json", "-n", "2"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.text.trim().split("\n").map((l) => JSON.parse(l).data), ["three\n", "five\n"]);
});

Deno.test("fsbus mq read fails naming a message whose bytes changed; check --repair cannot make it whole (exit 1)", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  assert.equal((await fsbus(["mq", "mkgroup", g, "--replay", "all"])).code, 0);
  for (const m of ["one\n", "two\n"]) await fsbus(["mq", "write", g, "s", m]);
  await sh(`printf 'T' | dd of=${g}/s bs=1 seek=4 conv=notrunc 2>/dev/null`); // "two" → "Two"
  let r = await fsbus(["mq", "read", g, "s", "-n", "2"]);
  assert.equal(r.code, 1);
  assert.equal(r.text, "one\n"); // what is whole comes first, the damaged message never
  assert.equal(
    r.stderr,
    `fsbus: Cannot read stream "${g}/s": its message 1 (4 bytes at offset 4) differs from ` +
      `what was written (checksum mismatch); see "fsbus mq check ${g}"\n`,
  );
  r = await fsbus(["mq", "check", g, "--repair"]);
  assert.equal(r.code, 1);
  assert.match(r.text, /\/s: the bytes of message 1 \(4 bytes at offset 4\) differ from those/);
  assert.match(r.text, /: 1 problems, 1 of them cannot be repaired\n$/);
});
