import assert from "node:assert/strict";
import * as msgfs from "../../transports/msgfs/mod.ts";
import { idTime, newId, newIdInto } from "../../transports/msgfs/names.ts";
import { SEEN_SLACK_MS } from "../../transports/msgfs/subscribe.ts";
import { CLI, fsbus, inotifyWatches, openWatchFds, tempDir, waitFor } from "../_helpers.ts";

const dec = new TextDecoder();

/** Takes `n` messages from a subscription (with a deadline), then closes it. */
async function take(
  sub: msgfs.BusSubscription,
  n: number,
  timeoutMs = 20_000,
): Promise<msgfs.BusMessage[]> {
  const got: msgfs.BusMessage[] = [];
  const timer = setTimeout(() => void sub.close(), timeoutMs);
  try {
    for await (const m of sub) {
      got.push(m);
      if (got.length >= n) break;
    }
  } finally {
    clearTimeout(timer);
    await sub.close();
  }
  return got;
}

Deno.test("newId() makes UUIDv7 names, strictly increasing, that carry their time", () => {
  const ids = Array.from({ length: 10_000 }, () => newId());
  for (let i = 1; i < ids.length; i++) {
    assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} < ${ids[i]}`);
  }
  assert.match(ids[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const t = idTime(newId(1_700_000_000_123.25))!;
  assert.equal(Math.floor(t), 1_700_000_000_123);
  assert.ok(Math.abs(t - 1_700_000_000_123.25) < 1 / 4096 + 1e-9);
  assert.equal(idTime("hello"), undefined);
});

Deno.test("idTime() takes exactly the UUIDv7 pattern: lowercase hex, version 7, variant 8-b", () => {
  const id = "0190a1b2-c3d4-7e5f-8a6b-0123456789ab";
  assert.equal(idTime(id), 0x0190a1b2c3d4 + 0xe5f / 4096);
  for (
    const bad of [
      id.toUpperCase(),
      id.replace("-7", "-6"), // version
      id.replace("-8a6b", "-ca6b"), // variant
      id.replace("c3d4-", "c3d4x"), // a dash
      id.slice(0, 35) + "g",
      id.slice(0, 35),
      id + "0",
    ]
  ) {
    assert.equal(idTime(bad), undefined, bad);
  }
  for (const v of ["8", "9", "a", "b"]) assert.ok(idTime(id.replace("-8a6b", `-${v}a6b`)));
  // Any place made wrong: a dash, the version, the variant or any digit (with an ASCII
  // character that is no hex digit, and with one beyond ASCII).
  for (let i = 0; i < 36; i++) {
    const wrong = [8, 13, 18, 23].includes(i) ? ["0"] : i === 14 ? ["8"] : ["g", "-", "\u0130"];
    for (const c of wrong) {
      const bad = id.slice(0, i) + c + id.slice(i + 1);
      assert.equal(idTime(bad), undefined, bad);
    }
  }
});

Deno.test("newIdInto() writes the id's bytes, and ids carry the wall clock's time", () => {
  const name = new Uint8Array(37);
  for (let i = 0; i < 1000; i++) {
    const id = newIdInto(name);
    assert.equal(new TextDecoder().decode(name.subarray(0, 36)), id);
    assert.equal(name[36], 0);
  }
  const before = Date.now();
  const t = idTime(newId())!;
  assert.ok(t >= before - 1 && t <= Date.now() + 1, `${t} near ${before}`);
});

Deno.test("Publisher.publish() names each file by the id it returns, made or given, in turn", async () => {
  using bus = tempDir();
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const given = i % 3 === 1 ? newId() : undefined;
    const p = pub.publish(String(i), given === undefined ? undefined : { id: given });
    if (given !== undefined) assert.equal(p.id, given);
    assert.equal(p.path, `${bus.path}/${p.id}`);
    assert.equal(Deno.readTextFileSync(p.path), String(i));
    ids.push(p.id);
  }
  assert.deepEqual([...Deno.readDirSync(bus.path)].map((e) => e.name).sort(), [...ids].sort());
  await pub.close();
});

Deno.test("subscribe() with since all delivers published bytes exactly, with id, topic and time", async () => {
  using bus = tempDir();
  const payloads = [
    new Uint8Array([0, 1, 0, 255]),
    new Uint8Array(0),
    new TextEncoder().encode("héllo"),
  ];
  const ids = payloads.map((p) => msgfs.publish(bus.path, p).id);
  const got = await take(msgfs.subscribe(bus.path, { since: "all" }), 3);
  assert.deepEqual(got.map((m) => m.id), ids);
  assert.deepEqual(got.map((m) => [...m.data]), payloads.map((p) => [...p]));
  for (const m of got) {
    assert.equal(m.topic, "");
    assert.ok(Math.abs(m.time.getTime() - Date.now()) < 60_000);
  }
});

Deno.test("subscribe() delivers live messages from publish() and plain file writes, rename-ins included", async () => {
  using bus = tempDir();
  using outside = tempDir();
  const sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  const first = it.next(); // starts the watch
  msgfs.publish(bus.path, "one");
  Deno.writeTextFileSync(`${bus.path}/plain`, "two");
  Deno.writeTextFileSync(`${outside.path}/moved`, "three");
  Deno.renameSync(`${outside.path}/moved`, `${bus.path}/moved`);
  msgfs.publish(bus.path, "four", { atomic: true });
  const texts = [dec.decode((await first).value!.data)];
  for (let i = 0; i < 3; i++) texts.push(dec.decode((await it.next()).value!.data));
  await sub.close();
  assert.deepEqual(texts, ["one", "two", "three", "four"]);
  assert.deepEqual(
    [...Deno.readDirSync(bus.path)].filter((e) => e.name === ".fsbus-tmp").length,
    1,
  );
});

Deno.test("subscribe() never follows a symlink or opens a FIFO planted in the bus", async () => {
  using bus = tempDir();
  using outside = tempDir();
  const secret = `${outside.path}/secret`;
  Deno.writeTextFileSync(secret, "SECRET");
  const skipped: msgfs.SkippedFile[] = [];
  const sub = msgfs.subscribe(bus.path, { onSkip: (s) => skipped.push(s) });
  const it = sub[Symbol.asyncIterator]();
  const next = it.next();
  Deno.symlinkSync(secret, `${outside.path}/link`);
  Deno.renameSync(`${outside.path}/link`, `${bus.path}/link`);
  const fifo = new Deno.Command("mkfifo", { args: [`${outside.path}/fifo`] }).outputSync();
  assert.equal(fifo.code, 0);
  Deno.renameSync(`${outside.path}/fifo`, `${bus.path}/fifo`);
  msgfs.publish(bus.path, "after");
  const m = (await next).value!;
  await sub.close();
  assert.equal(dec.decode(m.data), "after");
  assert.deepEqual(skipped.map((s) => s.reason).sort(), ["a symbolic link", "not a regular file"]);
  assert.equal(sub.stats.skipped, 2);
});

Deno.test("subscribe() skips and reports messages over maxSize, later ones still arrive", async () => {
  using bus = tempDir();
  const skipped: msgfs.SkippedFile[] = [];
  const sub = msgfs.subscribe(bus.path, {
    maxSize: 10,
    onSkip: (s) => skipped.push(s),
    since: "all",
  });
  msgfs.publish(bus.path, "x".repeat(11));
  msgfs.publish(bus.path, "y".repeat(10));
  const [m] = await take(sub, 1);
  assert.equal(dec.decode(m!.data), "y".repeat(10));
  assert.equal(skipped.length, 1);
  assert.match(skipped[0]!.reason, /larger than the 10-byte limit/);
});

Deno.test("subscribe() replays since all, then live: no gap and no duplicate at the seam", async () => {
  using bus = tempDir();
  for (let i = 0; i < 200; i++) msgfs.publish(bus.path, `${i}`);
  const sub = msgfs.subscribe(bus.path, { since: "all" });
  const it = sub[Symbol.asyncIterator]();
  const got: string[] = [];
  const first = it.next();
  // Publish while the replay is under way.
  for (let i = 200; i < 400; i++) msgfs.publish(bus.path, `${i}`);
  got.push(dec.decode((await first).value!.data));
  while (got.length < 400) got.push(dec.decode((await it.next()).value!.data));
  await sub.close();
  assert.deepEqual(got, Array.from({ length: 400 }, (_, i) => `${i}`));
});

Deno.test("subscribe() with since a duration skips older messages", async () => {
  using bus = tempDir();
  const old = `${bus.path}/old`;
  Deno.writeTextFileSync(old, "old");
  const hourAgo = new Date(Date.now() - 3_600_000);
  Deno.utimeSync(old, hourAgo, hourAgo);
  Deno.writeTextFileSync(`${bus.path}/new`, "new");
  const got = await take(msgfs.subscribe(bus.path, { since: 60_000 }), 1);
  assert.equal(dec.decode(got[0]!.data), "new");
});

Deno.test("subscribe() with recursive follows topics created later and reports the topic", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path, { recursive: true });
  const it = sub[Symbol.asyncIterator]();
  const first = it.next();
  msgfs.publish(bus.path, "root");
  msgfs.publish(bus.path, "kitchen", { topic: "sensors/kitchen" });
  msgfs.publish(bus.path, "garage", { topic: "sensors/garage" });
  const got = [(await first).value!, (await it.next()).value!, (await it.next()).value!];
  await sub.close();
  const byTopic = Object.fromEntries(got.map((m) => [m.topic, dec.decode(m.data)]));
  assert.deepEqual(byTopic, {
    "": "root",
    "sensors/kitchen": "kitchen",
    "sensors/garage": "garage",
  });
});

Deno.test("subscribe() finds and watches a topic created while events were lost (rescan)", async () => {
  using bus = tempDir();
  const max = Number(Deno.readTextFileSync("/proc/sys/fs/inotify/max_queued_events").trim());
  const sub = msgfs.subscribe(bus.path, { recursive: true });
  const deadline = setTimeout(() => void sub.close(), 20_000); // ends the loop, not the test
  const it = sub[Symbol.asyncIterator]();
  const first = it.next(); // the watch is set up now; nothing is read until we await
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  for (let i = 0; i <= max; i++) pub.publish("filler");
  pub.publish("early", { topic: "late-topic" });
  let got = (await first).value;
  while (got && got.topic !== "late-topic") got = (await it.next()).value;
  assert.equal(got && dec.decode(got.data), "early");
  // The topic's creation event was lost in the overflow: only the rescan can have watched it.
  pub.publish("after", { topic: "late-topic" });
  got = (await it.next()).value;
  clearTimeout(deadline);
  await sub.close();
  assert.ok(got, "the message published after the overflow arrived");
  assert.ok(sub.stats.rescans >= 1);
  assert.deepEqual([got.topic, dec.decode(got.data)], ["late-topic", "after"]);
});

Deno.test("subscribe() with a topic sees only that topic", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path, { topic: "a" });
  const it = sub[Symbol.asyncIterator]();
  const first = it.next();
  msgfs.publish(bus.path, "b", { topic: "b" });
  msgfs.publish(bus.path, "root");
  msgfs.publish(bus.path, "a", { topic: "a" });
  const m = (await first).value!;
  await sub.close();
  assert.equal(m.topic, "a");
  assert.equal(dec.decode(m.data), "a");
});

Deno.test("publish() and subscribe() refuse invalid topics", () => {
  using bus = tempDir();
  assert.throws(
    () => msgfs.publish(bus.path, "x", { topic: "../escape" }),
    /Cannot use "..\/escape" as a topic/,
  );
  assert.throws(
    () => msgfs.publish(bus.path, "x", { topic: "a/.hidden" }),
    /Cannot use "a\/.hidden" as a topic/,
  );
});

Deno.test("Publisher.publish() takes an id made beforehand (atomic or not), and refuses one that is not an id", async () => {
  using bus = tempDir();
  for (const atomic of [false, true]) {
    const pub = new msgfs.Publisher(bus.path, { atomic });
    const id = newId();
    const p = pub.publish("x", { id, topic: "t" });
    assert.equal(p.id, id);
    assert.equal(Deno.readTextFileSync(`${bus.path}/t/${id}`), "x");
    assert.throws(() => pub.publish("y", { id: "../escape" }), {
      name: "FsbusError",
      code: "invalid",
      message: 'Cannot publish "../escape": not a message id',
    });
    await pub.close();
  }
});

Deno.test("subscribe() of a missing bus or of a file throws FsbusError", () => {
  using dir = tempDir();
  assert.throws(() => msgfs.subscribe(`${dir.path}/nope`), {
    name: "FsbusError",
    code: "not_found",
    message: `Cannot subscribe to "${dir.path}/nope": no such file or directory`,
  });
  Deno.writeTextFileSync(`${dir.path}/file`, "");
  assert.throws(() => msgfs.subscribe(`${dir.path}/file`), { code: "not_a_directory" });
  assert.throws(() => msgfs.publish(`${dir.path}/file`, "x"), { code: "not_a_directory" });
  assert.throws(() => msgfs.publish(`${dir.path}/nope`, "x"), { code: "not_found" });
});

Deno.test("subscribe() counts a file gone before it could be opened, not an error", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  const next = it.next();
  // Write and delete before the subscriber can look, then a real message.
  Deno.writeTextFileSync(`${bus.path}/ephemeral`, "gone");
  Deno.removeSync(`${bus.path}/ephemeral`);
  msgfs.publish(bus.path, "stays");
  assert.equal(dec.decode((await next).value!.data), "stays");
  await sub.close();
  assert.equal(sub.stats.vanished, 1);
});

Deno.test("BusSubscription releases every watch and descriptor on break or abort", async () => {
  using bus = tempDir();
  const before = openWatchFds();
  const sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  const next = it.next();
  assert.ok(openWatchFds() > before);
  msgfs.publish(bus.path, "x");
  await next;
  await sub.close();
  assert.equal(openWatchFds(), before);

  // Abort while waiting, with nothing to deliver.
  const ac = new AbortController();
  const waiting = (async () => {
    const got: msgfs.BusMessage[] = [];
    for await (const m of msgfs.subscribe(bus.path, { signal: ac.signal })) got.push(m);
    return got;
  })();
  await waitFor(() => openWatchFds() > before, "the watch");
  ac.abort();
  assert.deepEqual(await waiting, []);
  assert.equal(openWatchFds(), before);

  // for-await with break.
  const sub2 = msgfs.subscribe(bus.path, { since: "all" });
  for await (const _ of sub2) break;
  assert.equal(openWatchFds(), before);
});

Deno.test("subscribe() with the watchfs backend delivers plain and renamed-in files", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path, { backend: "watchfs" });
  assert.equal(sub.backend, "watchfs");
  const it = sub[Symbol.asyncIterator]();
  const first = it.next(); // the watch is set up now
  using outside = tempDir();
  Deno.writeTextFileSync(`${bus.path}/plain`, "plain");
  Deno.writeTextFileSync(`${outside.path}/moved`, "moved");
  Deno.renameSync(`${outside.path}/moved`, `${bus.path}/moved`);
  const got = [dec.decode((await first).value!.data), dec.decode((await it.next()).value!.data)];
  await sub.close();
  assert.deepEqual(got, ["plain", "moved"]);
});

Deno.test("gc() removes only messages older than the TTL; init() sets modes and TTL", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  msgfs.init(bus, { ttlMs: 60_000 });
  assert.equal(Deno.statSync(bus).mode! & 0o7777, 0o700);
  assert.equal(msgfs.readConfig(bus).ttlMs, 60_000);
  const fresh = msgfs.publish(bus, "fresh", { sweep: false });
  const oldId = newId(Date.now() - 120_000);
  Deno.writeTextFileSync(`${bus}/${oldId}`, "old");
  Deno.writeTextFileSync(`${bus}/shell-old`, "old too");
  const past = new Date(Date.now() - 120_000);
  Deno.utimeSync(`${bus}/shell-old`, past, past);
  const result = await msgfs.gc(bus);
  assert.deepEqual(result, { removed: 2, kept: 1, failed: 0 });
  assert.deepEqual(
    [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith(".")),
    [fresh.id],
  );

  const shared = `${dir.path}/shared`;
  msgfs.init(shared, { access: "shared", group: 0 });
  assert.equal(Deno.statSync(shared).mode! & 0o7777, 0o3770);
  const p = msgfs.publish(shared, "x");
  assert.equal(Deno.statSync(p.path).mode! & 0o777, 0o640);
});

Deno.test("Publisher sweeps expired messages in the background, at most once per interval", async () => {
  using bus = tempDir();
  msgfs.init(bus.path, { ttlMs: 1000 });
  Deno.writeTextFileSync(`${bus.path}/${newId(Date.now() - 10_000)}`, "expired");
  const pub = new msgfs.Publisher(bus.path);
  pub.publish("now");
  await waitFor(
    () => [...Deno.readDirSync(bus.path)].filter((e) => !e.name.startsWith(".")).length === 1,
    "the sweep",
  );
  assert.ok(Deno.statSync(`${bus.path}/.fsbus-gc`).isDirectory);
});

Deno.test({
  name:
    "subscribe() receives a 100,000-message burst from another process complete, once each, in order, across overflows",
  // The subscriber does not read while the publisher runs, so the kernel queue (16384 events
  // by default) overflows and the rescan must deliver the rest.
  async fn() {
    using bus = tempDir();
    const N = 100_000;
    const sub = msgfs.subscribe(bus.path);
    const it = sub[Symbol.asyncIterator]();
    const first = it.next(); // the watch is set up now
    const lines = Array.from({ length: N }, (_, i) => `${i}`).join("\n") + "\n";
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", CLI, "pub", bus.path, "--lines"],
      stdin: "piped",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(lines));
    await w.close();
    assert.equal((await child.status).code, 0);
    const got: number[] = [Number(dec.decode((await first).value!.data))];
    while (got.length < N) {
      const r = await it.next();
      if (r.done) break;
      got.push(Number(dec.decode(r.value.data)));
    }
    await sub.close();
    assert.equal(got.length, N);
    for (let i = 0; i < N; i++) if (got[i] !== i) assert.fail(`message ${i} was ${got[i]}`);
    assert.ok(sub.stats.rescans >= 1, "the queue overflowed at least once");
  },
});

Deno.test("events queued after an overflow for files a rescan delivered seconds earlier are not delivered again: no duplicate, order kept", async () => {
  using bus = tempDir();
  const max = Number(Deno.readTextFileSync("/proc/sys/fs/inotify/max_queued_events").trim());
  const sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  const first = it.next(); // the watch is set up now; nothing is read until we await
  const sent = [pub.publish("0").id];
  const got = [(await first).value!.id];
  // The subscription does not read while this overflows its queue (a local overflow: the
  // queue is this subscription's own, whatever the system's limit).
  for (let i = 0; i <= max; i++) sent.push(pub.publish("filler").id);
  // Taking one message makes the watcher read the whole queue, overflow included; the files
  // published now have their events queued behind it, and the rescan will find them too.
  got.push((await it.next()).value!.id);
  const late = Date.now();
  for (let i = 0; i < 50; i++) sent.push(pub.publish("late").id);
  // Let those files grow older than the time a subscription remembers by (its slack).
  while (Date.now() < late + SEEN_SLACK_MS + 1000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const deadline = setTimeout(() => void sub.close(), 60_000); // ends the loop, not the test
  let end: string | undefined;
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    got.push(r.value.id);
    if (r.value.id === end) break;
    if (end === undefined && got.length >= sent.length) {
      // Everything published arrived (the late ones through the rescan): a last message
      // follows whatever the subscription still had to read.
      end = pub.publish("end").id;
      sent.push(end);
    }
  }
  clearTimeout(deadline);
  await sub.close();
  await pub.close();
  assert.ok(sub.stats.rescans >= 1, "the queue overflowed");
  assert.equal(new Set(got).size, got.length, `${got.length - new Set(got).size} duplicates`);
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1]! < got[i]!, `order broken at ${i}`);
  assert.deepEqual(got, sent);
});

/** The names in a bus's temp directory. */
function tempNames(bus: string): string[] {
  return [...Deno.readDirSync(`${bus}/.fsbus-tmp`)].map((e) => e.name);
}

Deno.test("Publisher with a spare: each message is the ready file renamed in; a spare swept meanwhile or a topic removed costs nothing; close() removes it", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path, { recursive: true, since: "all" });
  const pub = new msgfs.Publisher(bus.path, { atomic: true, spare: true, sweep: false });
  const ids: string[] = [];
  try {
    ids.push(pub.publish("one").id);
    // The next message's file is ready: empty, named as an id, not any message's.
    let [spare] = tempNames(bus.path);
    assert.equal(tempNames(bus.path).length, 1);
    assert.notEqual(idTime(spare!), undefined);
    assert.equal(Deno.statSync(`${bus.path}/.fsbus-tmp/${spare}`).size, 0);
    ids.push(pub.publish("two").id);
    assert.equal(Deno.readTextFileSync(`${bus.path}/${ids[1]}`), "two");
    assert.equal(tempNames(bus.path).includes(spare!), false, "the spare was used");
    // A sweep took the spare: the message is made anew, and a new spare follows.
    [spare] = tempNames(bus.path);
    Deno.removeSync(`${bus.path}/.fsbus-tmp/${spare}`);
    ids.push(pub.publish("three").id);
    assert.equal(tempNames(bus.path).length, 1);
    ids.push(pub.publish("four", { topic: "t" }).id);
    const got = await take(sub, 4);
    assert.deepEqual(got.map((m) => m.id), ids);
    assert.deepEqual(got.map((m) => dec.decode(m.data)), ["one", "two", "three", "four"]);
    // A topic removed between two messages is made again.
    Deno.removeSync(`${bus.path}/t`, { recursive: true });
    const five = pub.publish("five", { topic: "t" }).id;
    assert.equal(Deno.readTextFileSync(`${bus.path}/t/${five}`), "five");
    const again = await take(msgfs.subscribe(bus.path, { recursive: true, since: "all" }), 4);
    assert.deepEqual(again.map((m) => m.id), [...ids.slice(0, 3), five]);
  } finally {
    await sub.close();
    await pub.close();
  }
  assert.deepEqual(tempNames(bus.path), []);
});

/** A small tmpfs mounted for one test, unmounted (and its mountpoint removed) when disposed. */
async function tinyFs(size: string): Promise<{ path: string } & AsyncDisposable> {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "fsbt-msgfs-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "fsbt-msgfs", dir],
    stderr: "piped",
  }).output();
  assert.equal(mount.code, 0, new TextDecoder().decode(mount.stderr));
  return {
    path: dir,
    async [Symbol.asyncDispose]() {
      await new Deno.Command("umount", { args: [dir] }).output();
      Deno.removeSync(dir);
    },
  };
}

Deno.test("Publisher.publish() that fails (ENOSPC) is never delivered, not even truncated, to a live subscriber in another process", async () => {
  await using fs = await tinyFs("1m");
  const bus = fs.path;
  const SIZE = 300 * 1024;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, "sub", bus, "--json"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  let buffered = "";
  const reading = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      lines.push(...parts);
    }
  })();
  await waitFor(() => inotifyWatches(child.pid) > 0, "the subscriber's watch");
  const pub = new msgfs.Publisher(bus, { sweep: false });
  const ok: string[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < 30; i++) {
      const letter = String.fromCharCode(65 + (i % 26));
      try {
        ok.push(pub.publish(letter.repeat(SIZE)).id);
        await waitFor(() => lines.length === ok.length, "the delivery of a complete message");
      } catch (err) {
        failures++;
        assert.match((err as Error).message, /^Cannot publish ".*": no space left on device$/);
        // Free one message's worth, so that the next failures are partial writes.
        if (failures % 2 === 1 && ok.length > 0) Deno.removeSync(`${bus}/${ok.shift()!}`);
      }
    }
    // The CLI says so, and fails.
    const r = await fsbus(["pub", bus], { stdin: "x".repeat(2 << 20) });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^fsbus: Cannot publish ".*": no space left on device\n$/);
    // Nothing of a failed publish is left behind.
    const files = [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith("."));
    assert.deepEqual(files.sort(), [...ok].sort());
    for (const f of files) Deno.removeSync(`${bus}/${f}`);
    const end = pub.publish("end").id;
    await waitFor(() => lines.some((l) => JSON.parse(l).id === end), "the last message");
  } finally {
    await pub.close();
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await child.stderr.cancel();
  }
  assert.ok(failures >= 10, `${failures} publishes failed`);
  for (const line of lines) {
    const m = JSON.parse(line);
    if (m.data === "end") continue;
    assert.equal(m.size, SIZE, `message ${m.id} was delivered with ${m.size} bytes`);
    assert.equal(m.data, m.data[0].repeat(SIZE));
  }
});

Deno.test("BusSubscription forgets delivered messages once seconds old: bounded memory, no duplicate", async () => {
  using bus = tempDir();
  const sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  const first = it.next(); // the watch is set up now
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  const N = 3000;
  for (let i = 0; i < N; i++) pub.publish(`${i}`);
  const got = new Set<string>([(await first).value!.id]);
  while (got.size < N) got.add((await it.next()).value!.id);
  assert.ok(sub.stats.remembered >= 1000, `${sub.stats.remembered} remembered after the burst`);
  // Keep the subscription busy (~50 msgs/s: some 100 within the slack) until it has pruned.
  const deadline = Date.now() + 15_000;
  while (sub.stats.remembered > 300 && Date.now() < deadline) {
    const { id } = pub.publish("tick");
    const m = await it.next();
    assert.equal(m.value!.id, id);
    got.add(id);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(sub.stats.remembered <= 300, `${sub.stats.remembered} still remembered`);
  assert.equal(sub.stats.delivered, got.size, "no duplicate");
  await sub.close();
  await pub.close();
});

Deno.test("BusSubscription and Publisher give back every directory descriptor they hold", async () => {
  using bus = tempDir();
  const fds = () => [...Deno.readDirSync("/proc/self/fd")].length;
  const before = fds();
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  for (let i = 0; i < 100; i++) pub.publish(`${i}`, { topic: `t${i}/sub` }); // more than it keeps open
  const sub = msgfs.subscribe(bus.path, { recursive: true, since: "all" });
  let n = 0;
  for await (const _ of sub) if (++n === 100) break;
  assert.equal(n, 100);
  await pub.close();
  assert.equal(fds(), before);
});

/** The bus's message files this process holds open. */
function openMessageFiles(bus: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (target.startsWith(bus + "/")) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

Deno.test("BusSubscription holds no message file open once the last message of a batch has reached the consumer, nor while it waits", async () => {
  using bus = tempDir();
  await using sub = msgfs.subscribe(bus.path);
  const it = sub[Symbol.asyncIterator]();
  let next = it.next(); // sets up the watch
  // A batch larger than the descriptors held back at once, queued before it is read.
  const pub = new msgfs.Publisher(bus.path, { sweep: false });
  for (let i = 0; i < 40; i++) pub.publish(`m${i}`);
  await pub.close();
  const held: number[] = [];
  for (let i = 0; i < 40; i++) {
    const r = await next;
    assert.equal(dec.decode(r.value!.data), `m${i}`);
    held.push(openMessageFiles(bus.path).length);
    if (i < 39) next = it.next();
  }
  assert.ok(Math.max(...held) <= 16, `held ${Math.max(...held)} files`);
  // The last one is closed right after the consumer's synchronous part: by its next await.
  await null;
  assert.deepEqual(openMessageFiles(bus.path), []);
  next = it.next(); // runs on until it waits
  assert.deepEqual(openMessageFiles(bus.path), []);
  msgfs.publish(bus.path, "after");
  assert.equal(dec.decode((await next).value!.data), "after");
  await null;
  assert.deepEqual(openMessageFiles(bus.path), []);
  // A consumer that keeps a message while it works (timers run) holds no file meanwhile.
  next = it.next();
  msgfs.publish(bus.path, "kept");
  assert.equal(dec.decode((await next).value!.data), "kept");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(openMessageFiles(bus.path), []);
});

Deno.test("Publisher with a spare on a full disk: a failed write leaves nothing in the bus, and publishing goes on once there is room", async () => {
  await using fs = await tinyFs("1m");
  const bus = fs.path;
  const pub = new msgfs.Publisher(bus, { atomic: true, spare: true, sweep: false });
  const ok: string[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < 8; i++) {
      try {
        ok.push(pub.publish(String(i).repeat(300 * 1024)).id);
      } catch (err) {
        failures++;
        assert.match((err as Error).message, /^Cannot publish ".*": no space left on device$/);
      }
    }
    assert.ok(failures > 0, "the disk filled");
    const inBus = () =>
      [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith(".")).sort();
    assert.deepEqual(inBus(), [...ok].sort());
    // At most the spare is left in the temp directory, empty.
    const left = tempNames(bus);
    assert.ok(left.length <= 1, left.join(" "));
    for (const n of left) assert.equal(Deno.statSync(`${bus}/.fsbus-tmp/${n}`).size, 0);
    for (const id of ok) Deno.removeSync(`${bus}/${id}`);
    const end = pub.publish("end").id;
    assert.deepEqual(inBus(), [end]);
    assert.equal(Deno.readTextFileSync(`${bus}/${end}`), "end");
  } finally {
    await pub.close();
  }
  assert.deepEqual(tempNames(bus), []);
});
