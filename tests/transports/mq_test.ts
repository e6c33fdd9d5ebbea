import assert from "node:assert/strict";
import { MqGroup, type MqMessage, MqReader } from "../../transports/mq/mod.ts";
import { checkGroup } from "../../transports/mq/check.ts";
import { FsbusError, OverrunError } from "../../types.ts";
import { sh, spawnFsbus, stop, tempDir, waitFor } from "../_helpers.ts";

const dec = new TextDecoder();
const text = (m: MqMessage) => dec.decode(m.data);
const MOD = new URL("../../transports/mq/mod.ts", import.meta.url).href;

async function readAll(r: MqReader): Promise<MqMessage[]> {
  const got: MqMessage[] = [];
  for await (const m of r) got.push(m);
  return got;
}

async function take(r: MqReader, n: number): Promise<MqMessage[]> {
  const got: MqMessage[] = [];
  if (n === 0) return got;
  for await (const m of r) {
    got.push(m);
    if (got.length >= n) break;
  }
  return got;
}

Deno.test("MqGroup.ctl() changes the settings ctl shows as mq's, and rejects bad commands", () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    assert.equal(Deno.readTextFileSync(`${g.path}/ctl`), "data message\nreplay off\n");
    g.ctl("replay on");
    g.ctl("data coalesce");
    g.ctl("depth 64K");
    assert.equal(
      Deno.readTextFileSync(`${g.path}/ctl`),
      "data coalesce\nreplay all\ndepth 64K\n",
    );
    g.ctl("depth 0");
    assert.equal(Deno.readTextFileSync(`${g.path}/ctl`), "data coalesce\nreplay all\n");
    for (
      const [bad, msg] of [
        ["replay sometimes", "usage: replay off|last|all"],
        ["data lines", "usage: data message|coalesce"],
        ["depth lots", "usage: depth count|size[K|M|G]"],
        ["replay", "usage: replay off|last|all"],
      ]
    ) {
      assert.throws(() => g.ctl(bad!), (e) => e instanceof FsbusError && e.message === msg);
    }
    assert.throws(
      () => g.ctl("frobnicate 1"),
      /Cannot apply control message "frobnicate 1": unknown/,
    );
    assert.equal(Deno.readTextFileSync(`${g.path}/ctl`), "data coalesce\nreplay all\n");
  } finally {
    g.close();
  }
});

Deno.test("MqGroup.settings applies a shell's write to ctl, or rejects it and restores ctl", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    await sh(`echo replay all > ${g.path}/ctl`);
    assert.equal(g.settings.replay, "all");
    assert.equal(Deno.readTextFileSync(`${g.path}/ctl`), "data message\nreplay all\n");
    const other = MqGroup.open(g.path);
    assert.equal(other.settings.replay, "all");
    other.close();
    await sh(`echo replay sometimes > ${g.path}/ctl`);
    assert.equal(g.settings.replay, "all");
    assert.equal(Deno.readTextFileSync(`${g.path}/ctl`), "data message\nreplay all\n");
    assert.match(g.takeRejected() ?? "", /"replay sometimes": usage: replay off\|last\|all/);
  } finally {
    g.close();
  }
});

Deno.test("MqReader.open() starts where replay off, last and all say", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    for (const t of ["a", "b", "c"]) g.write("s", t);
    g.write("t", "other");
    const all = MqReader.open(g, ["s"], { replay: "all" });
    const last = MqReader.open(g, ["s"], { replay: "last" });
    const off = MqReader.open(g, ["s"], { replay: "off" });
    g.write("s", "d");
    g.write("s", "");
    assert.deepEqual((await readAll(all)).map(text), ["a", "b", "c", "d"]);
    assert.deepEqual((await readAll(last)).map(text), ["c", "d"]);
    assert.deepEqual((await readAll(off)).map(text), ["d"]);
    // The default comes from ctl.
    g.ctl("replay last");
    const byCtl = MqReader.open(g, ["t"]);
    assert.deepEqual((await take(byCtl, 1)).map(text), ["other"]);
    await byCtl.close();
  } finally {
    g.close();
  }
});

Deno.test("MqReader.poll() returns what is readable even behind thousands of other streams' records", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    // More records than one read of the index takes, none of them for the reader's stream.
    for (let i = 0; i < 3000; i++) g.write("other", `o${i}`);
    g.write("s", "mine");
    for (const from of [g, `${tmp.path}/g`]) {
      const r = MqReader.open(from, ["s"], { replay: "all" });
      try {
        assert.deepEqual(r.poll().map(text), ["mine"]);
        assert.deepEqual(r.poll(), []);
      } finally {
        await r.close();
      }
    }
  } finally {
    g.close();
  }
});

Deno.test("MqReader keeps messages whole in message mode and joins them in coalesce mode", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`, { replay: "all" });
  try {
    const big = new Uint8Array(300_000).fill(7);
    g.write("s", "one\n");
    g.write("s", big);
    g.write("s", "two\n");
    g.write("s", "");
    const msgs = await readAll(MqReader.open(g, ["s"]));
    assert.deepEqual(msgs.map((m) => m.data.length), [4, 300_000, 4]);
    assert.deepEqual(msgs[1]!.data, big);
    const co = await readAll(MqReader.open(g, ["s"], { data: "coalesce" }));
    const joined = new Uint8Array(co.reduce((n, m) => n + m.data.length, 0));
    let off = 0;
    for (const m of co) {
      joined.set(m.data, off);
      off += m.data.length;
    }
    assert.equal(joined.length, 300_008);
    assert.ok(co.length < 3);
    assert.equal(dec.decode(joined.subarray(0, 4)), "one\n");
    assert.equal(dec.decode(joined.subarray(300_004)), "two\n");
  } finally {
    g.close();
  }
});

Deno.test("MqReader ends at a zero-length write and at the removal of its stream", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    g.write("a", "x");
    g.write("b", "y");
    const ra = MqReader.open(g, ["a"], { replay: "all" });
    const rb = MqReader.open(g, ["b"], { replay: "all" });
    const pa = readAll(ra);
    const pb = readAll(rb);
    g.write("a", "more");
    g.write("a", new Uint8Array());
    assert.deepEqual((await pa).map(text), ["x", "more"]);
    // Removed by a plain rm: the reader (waiting in inotify) ends.
    await sh(`rm ${g.path}/b`);
    assert.deepEqual((await pb).map(text), ["y"]);
    // A reader of a stream that does not exist (any more) waits for it.
    const again = MqReader.open(g, ["b"], { replay: "all" });
    const it = again[Symbol.asyncIterator]();
    const first = it.next();
    g.write("b", "again");
    assert.equal(text((await first).value as MqMessage), "again");
    await again.close();
  } finally {
    g.close();
  }
});

Deno.test("MqGroup.sync() indexes plain appends as messages, in the order", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`, { replay: "all" });
  try {
    g.write("0", "first\n");
    const r = MqReader.open(g, ["0"]);
    await sh(`echo foreign >> ${g.path}/0`);
    const got: string[] = [];
    const it = r[Symbol.asyncIterator]();
    got.push(text((await it.next()).value as MqMessage));
    got.push(text((await it.next()).value as MqMessage));
    assert.deepEqual(got, ["first\n", "foreign\n"]);
    // A new stream made by the shell is a stream; its content is its first message.
    await sh(`printf 'new' > ${g.path}/1`);
    g.write("0", "last\n");
    assert.equal(text((await it.next()).value as MqMessage), "last\n");
    await r.close();
    assert.equal(Deno.readTextFileSync(`${g.path}/0`), "first\nforeign\nlast\n");
    assert.equal(Deno.readTextFileSync(`${g.path}/order`), "0\x000\x001\x000\x00");
    const r1 = MqReader.open(g, ["1"], { replay: "all" });
    assert.deepEqual(r1.poll().map(text), ["new"]);
    await r1.close();
  } finally {
    g.close();
  }
});

Deno.test("MqGroup.holdLock() keeps the lock across writes: others wait, plain appends still come first", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`, { replay: "all" });
  let other: Deno.ChildProcess | undefined;
  try {
    g.write("0", "a\n");
    g.holdLock();
    assert.equal(g.holdsLock, true);
    g.write("0", "b\n");
    // Another fsbus writer waits for the lock (its flock is listed as blocked).
    other = spawnFsbus(["mq", "write", g.path, "0", "e\n"]);
    const pid = other.pid;
    await waitFor(
      () =>
        Deno.readTextFileSync("/proc/locks").split("\n").some((l) =>
          l.includes("-> FLOCK") && l.includes(` ${pid} `)
        ),
      "the other writer to wait for the lock",
    );
    // A plain append while the lock is held is still indexed before the next write.
    await sh(`echo c >> ${g.path}/0`);
    g.write("0", "d\n");
    const r = MqReader.open(g, ["0"], { replay: "all" });
    assert.deepEqual(r.poll().map(text), ["a\n", "b\n", "c\n", "d\n"]);
    g.releaseLock();
    assert.equal(g.holdsLock, false);
    assert.equal((await other.output()).code, 0);
    other = undefined;
    g.sync();
    assert.deepEqual(r.poll().map(text), ["e\n"]);
    await r.close();
    assert.equal(Deno.readTextFileSync(`${g.path}/order`), "0\x000\x000\x000\x000\x00");
  } finally {
    if (other) await stop(other);
    g.close();
  }
});

Deno.test("MqGroup.holdLock(unchanged): a full sync unless the caller says nothing changed; plain appends are indexed either way", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`, { replay: "all" });
  const other = MqGroup.open(g.path);
  try {
    g.holdLock();
    g.write("0", "a\n");
    g.releaseLock();
    // Another writer commits (to a stream it makes) while the lock is free: the caller
    // says something changed.
    other.write("2", "b\n");
    g.holdLock(() => false);
    g.write("0", "c\n");
    g.releaseLock();
    // Nothing but a plain append to another stream (which no index watch reports): the
    // hold is resumed without a full sync, and the append still comes first.
    g.createStream("1");
    Deno.writeTextFileSync(`${g.path}/1`, "p\n", { append: true });
    let asked = 0;
    g.holdLock(() => ++asked > 0);
    assert.equal(asked, 1);
    g.write("0", "d\n");
    g.write("0", "e\n");
    g.releaseLock();
    other.write("1", "q\n");
    g.holdLock(() => false);
    g.write("0", "f\n");
    g.releaseLock();
    const r = MqReader.open(g, ["0", "1", "2"], { replay: "all" });
    assert.deepEqual(r.poll().map((m) => `${m.stream}:${text(m)}`), [
      "0:a\n",
      "2:b\n",
      "0:c\n",
      "1:p\n",
      "0:d\n",
      "0:e\n",
      "1:q\n",
      "0:f\n",
    ]);
    await r.close();
    assert.equal(
      Deno.readTextFileSync(`${g.path}/order`),
      "0\x002\x000\x001\x000\x000\x001\x000\x00",
    );
    assert.deepEqual(checkGroup(g.path).problems, []);
  } finally {
    other.close();
    g.close();
  }
});

Deno.test("MqGroup.open() finds the history again after a restart, in order", async () => {
  using tmp = tempDir();
  const path = `${tmp.path}/g`;
  const g = MqGroup.create(path);
  for (let i = 0; i < 50; i++) g.write(String(i % 3), `m${i}`);
  g.close();
  const script = `
    import { MqGroup, MqReader } from "${MOD}";
    const g = MqGroup.open("${path}");
    for (const s of ["0", "1", "2"]) g.write(s, "");
    const out = [];
    for await (const m of MqReader.open(g, ["0", "1", "2"], { replay: "all" })) {
      out.push(new TextDecoder().decode(m.data));
    }
    console.log(out.join(","));
  `;
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(res.code, 0, dec.decode(res.stderr));
  assert.equal(
    dec.decode(res.stdout).trim(),
    Array.from({ length: 50 }, (_, i) => `m${i}`).join(","),
  );
});

Deno.test("MqGroup.write() trims history to the depth, bounds disk use, and overruns a reader behind", async () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`, { depth: 100 });
  try {
    g.createStream("s");
    const slow = MqReader.open(g, ["s"], { replay: "all" });
    const payload = new Uint8Array(1024).fill(65);
    for (let i = 0; i < 3000; i++) {
      payload[0] = 48 + (i % 10);
      g.write("s", payload);
    }
    // Only the last 100 remain for a new reader.
    const fresh = MqReader.open(g, ["s"], { replay: "all" });
    const kept = fresh.poll();
    assert.equal(kept.length, 100);
    assert.equal(kept[0]!.seq, 2900);
    await fresh.close();
    // Disk use is bounded: allocated blocks stay near the depth, not 3 MB.
    const st = Deno.statSync(`${g.path}/s`);
    assert.equal(st.size, 3000 * 1024);
    assert.ok(st.blocks! * 512 < 400 * 1024, `stream uses ${st.blocks! * 512} bytes`);
    // The reader that never read is told, not skipped silently.
    await assert.rejects(
      () => take(slow, 1),
      (e) => e instanceof OverrunError && e.lost === 2900 && /fell behind/.test(e.message),
    );
    // A size depth keeps the newest bytes.
    g.ctl("depth 10K");
    g.write("s", payload);
    const sized = MqReader.open(g, ["s"], { replay: "all" });
    assert.equal(sized.poll().length, 10);
    await sized.close();
  } finally {
    g.close();
  }
});

Deno.test("MqGroup refuses bad input with clear errors and writes nothing", () => {
  using tmp = tempDir();
  const g = MqGroup.create(`${tmp.path}/g`);
  try {
    g.write("0", "x");
    const orderBefore = Deno.readFileSync(`${g.path}/order`);
    const indexBefore = Deno.statSync(`${g.path}/.mq/index`).size;
    assert.throws(() => g.write("order", "x"), /Cannot write to "order"/);
    assert.throws(() => g.write("a/b", "x"), /cannot contain "\/"/);
    assert.throws(() => g.write("ctl", "x"), /control file/);
    assert.throws(() => g.write(".mq", "x"), /reserved/);
    assert.deepEqual(Deno.readFileSync(`${g.path}/order`), orderBefore);
    assert.equal(Deno.statSync(`${g.path}/.mq/index`).size, indexBefore);
    // The last name found good is not checked again; any other name still is.
    g.write("0", "y");
    g.write("0", "z");
    assert.throws(() => g.write("a/b", "x"), /cannot contain "\/"/);
    assert.throws(() => g.write("order", "x"), /Cannot write to "order"/);
    assert.equal(g.stream("0")?.count, 3);
    assert.throws(
      () => MqGroup.open(`${tmp.path}/nope`),
      (e) => e instanceof FsbusError && e.code === "not_found",
    );
    Deno.mkdirSync(`${tmp.path}/plain`);
    assert.throws(() => MqGroup.open(`${tmp.path}/plain`), /not an mq group/);
    MqGroup.create(g.path).close(); // the same settings: made already, fine
    assert.throws(
      () => MqGroup.create(g.path, { replay: "all" }),
      /Cannot make group ".*": already a group with other settings \(replay off\)/,
    );
  } finally {
    g.close();
  }
});

Deno.test("MqGroup.create() makes nested groups that are independent", async () => {
  using tmp = tempDir();
  const outer = MqGroup.create(`${tmp.path}/g`, { replay: "all" });
  const inner = MqGroup.create(`${tmp.path}/g/sub`, { replay: "all" });
  try {
    outer.write("0", "outer");
    inner.write("0", "inner");
    assert.deepEqual(outer.streamNames(), ["0"]);
    inner.write("0", "");
    assert.deepEqual((await readAll(MqReader.open(inner, ["0"]))).map(text), ["inner"]);
  } finally {
    outer.close();
    inner.close();
  }
});

/** Kills a writer of 16 MiB messages inside a write, and checks nothing torn is left. */
async function killedWriterLeavesNoTornMessage(hold: boolean): Promise<void> {
  using tmp = tempDir();
  const path = `${tmp.path}/g`;
  MqGroup.create(path).close();
  const size = 16 << 20;
  // With hold, one burst under the lock: its intents after the first are stored through a
  // shared mapping of .mq/intent, not written with pwrite.
  const script = `
    import { MqGroup } from "${MOD}";
    const g = MqGroup.open("${path}");
    if (${hold}) g.holdLock();
    const big = new Uint8Array(${size});
    for (let i = 0; ; i++) { big.fill(i & 255); g.write("s", big); }
  `;
  let torn = 0;
  for (let attempt = 0; attempt < 6 && torn === 0; attempt++) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const target = (attempt + 1) * 2;
      await waitFor(() => {
        try {
          return Deno.statSync(`${path}/s`).size > target * size + size / 4;
        } catch {
          return false;
        }
      }, "the writer to be inside a write");
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    const g = MqGroup.open.bind(MqGroup);
    // Before anyone syncs: is there a partial message at the end of the stream?
    const fileSize = Deno.statSync(`${path}/s`).size;
    if (fileSize % size !== 0) torn++;
    const opened = g(path);
    try {
      assert.equal(Deno.statSync(`${path}/s`).size % size, 0, "torn bytes removed");
      const r = MqReader.open(opened, ["s"], { replay: "all" });
      const msgs = r.poll();
      await r.close();
      for (const m of msgs) {
        assert.equal(m.data.length, size);
        assert.equal(m.data[0], m.data[size - 1]);
      }
      assert.equal(msgs.length * size, Deno.statSync(`${path}/s`).size);
      assert.equal(Deno.readTextFileSync(`${path}/order`), "s\0".repeat(msgs.length));
    } finally {
      opened.close();
    }
  }
  assert.ok(torn > 0, "a kill landed inside a write at least once");
}

Deno.test("MqGroup.write() leaves no torn message when the writer is killed", async () => {
  await killedWriterLeavesNoTornMessage(false);
});

Deno.test("MqGroup.write() holding the lock leaves no torn message when the writer is killed", async () => {
  await killedWriterLeavesNoTornMessage(true);
});
