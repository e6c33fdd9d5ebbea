import assert from "node:assert/strict";
import { collect, ROOT, spawnFsbus, tempDir, waitFor } from "../_helpers.ts";
import {
  createTopic,
  describeTopic,
  DeviceReader,
  DeviceWriter,
  FANOUT_IOCTL,
  fanoutIoctl,
  FsbusError,
  isUnsupportedIoctl,
  listTopics,
  openReader,
  openWriter,
  OverrunError,
  removeTopic,
  resolveTopic,
  subscribe,
} from "../../transports/fanout/mod.ts";
import { planWrites, splitChunks } from "../../transports/fanout/_chunks.ts";
import { readError } from "../../transports/fanout/device.ts";
import { SysError } from "../../sys/errno.ts";
import { closeFd, O, openFd } from "../../sys/fs.ts";
import { futexWaitv, futexWaitvSupported } from "../../sys/futex.ts";
import { record } from "./_fanout_peer.ts";

const PEER = `${ROOT}/tests/transports/_fanout_peer.ts`;
const enc = new TextEncoder();
const dec = new TextDecoder();

function peer(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", PEER, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await child.status;
  await child.stdout.cancel().catch(() => {});
  await child.stderr.cancel().catch(() => {});
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

/** Checks a stream of records: every line whole, each writer's sequence without gaps. */
function checkRecords(text: string, writers: Record<string, number>): void {
  const next: Record<string, number> = {};
  const lines = text.split("\n");
  assert.equal(lines.pop(), "", "the stream ends with a whole record");
  for (const line of lines) {
    const m = line.match(/^(\w+):(\d+):(\d+):(x*)$/);
    assert.ok(m, `a whole record, not an interleaved one: ${JSON.stringify(line.slice(0, 80))}`);
    const [, id, seq, len, fill] = m;
    assert.equal(line.length + 1, Number(len), "record length");
    assert.ok(fill !== undefined);
    assert.equal(Number(seq), next[id!] ?? 0, `writer ${id} in order, nothing lost`);
    next[id!] = Number(seq) + 1;
  }
  for (const [id, count] of Object.entries(writers)) assert.equal(next[id] ?? 0, count, id);
}

Deno.test("RingReader.take() reads what was written since it opened (a new reader starts at now)", () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root });
  using w = openWriter("t", { root });
  w.write("before\n");
  using r = openReader("t", { root });
  assert.deepEqual(r.take(), []);
  w.write("after\n");
  w.writeBatch([enc.encode("a\n"), enc.encode("b\n")]);
  assert.equal(dec.decode(concat(r.take())), "after\na\nb\n");
  assert.equal(w.backend, "ring");
  assert.equal(w.maxWrite, 4096);
});

Deno.test("openReader() with fromOldest reads exactly what the ring still holds", () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("b", { root, size: 4096 });
  createTopic("m", { root, size: 4096, messages: true });
  using wb = openWriter("b", { root });
  using wm = openWriter("m", { root });
  const written: Uint8Array[] = [];
  for (let i = 0; i < 300; i++) {
    const rec = record("w", i, 40 + (i % 17));
    written.push(rec);
    wb.write(rec);
    wm.write(rec);
  }
  const all = concat(written);
  using rb = openReader("b", { root, fromOldest: true });
  const got = concat(rb.take(1 << 20));
  assert.equal(got.length, 4096, "a byte ring holds exactly its size");
  assert.deepEqual(got, all.subarray(all.length - 4096));
  using rm = openReader("m", { root, fromOldest: true });
  const msgs = rm.take(1 << 20);
  assert.ok(msgs.length > 0);
  // Whole messages, the newest last, fitting in the ring with their 4-byte prefixes.
  const tail = written.slice(written.length - msgs.length);
  assert.deepEqual(msgs, tail);
  const held = msgs.reduce((n, m) => n + m.length + 4, 0);
  assert.ok(held <= 4096);
  assert.ok(held + written[written.length - msgs.length - 1]!.length + 4 > 4096);
});

Deno.test("RingReader.take() throws OverrunError a ring behind, until RingReader.resync()", () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root, size: 4096 });
  using w = openWriter("t", { root });
  using r = openReader("t", { root });
  w.write("x".repeat(3000));
  assert.equal(concat(r.take()).length, 3000);
  for (let i = 0; i < 5; i++) w.write("y".repeat(1000));
  assert.throws(() => r.take(), OverrunError);
  assert.throws(() => r.take(), OverrunError, "the overrun sticks, as EPIPE does");
  w.write("z".repeat(10)); // still overrun
  assert.throws(() => r.take(), (err: unknown) => err instanceof OverrunError && err.lost! > 0);
  r.resync();
  assert.deepEqual(r.take(), []);
  w.write("fresh");
  assert.equal(dec.decode(concat(r.take())), "fresh");
});

Deno.test("RingWriter.write() in message mode keeps boundaries and binary data, and limits sizes", () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("m", { root, size: 8192, messages: true });
  using w = openWriter("m", { root });
  using r = openReader("m", { root });
  const all = new Uint8Array(256).map((_, i) => i);
  const msgs = [all, new Uint8Array(0), enc.encode("\n\n"), new Uint8Array(2044).fill(0xff)];
  for (const m of msgs) w.write(m);
  w.writeBatch([enc.encode("one"), enc.encode("two")]);
  assert.deepEqual(r.take(1 << 20), [...msgs, enc.encode("one"), enc.encode("two")]);
  assert.throws(
    () => w.write(new Uint8Array(2045)),
    (err: unknown) =>
      err instanceof FsbusError && err.code === "too_large" &&
      /Cannot write 2045 bytes to topic "m": at most 2044 bytes fit/.test(err.message),
  );
});

Deno.test("RingWriter.write() in byte mode splits writes longer than a quarter ring", () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root, size: 65536 });
  using w = openWriter("t", { root });
  using r = openReader("t", { root });
  const big = new Uint8Array(40000).map((_, i) => i % 251);
  w.write(big);
  assert.deepEqual(concat(r.take(1 << 20)), big);
});

Deno.test("subscribe() delivers several topics asynchronously and ends on abort", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("a", { root });
  createTopic("b", { root, messages: true });
  const ac = new AbortController();
  const sub = subscribe(["a", "b"], { root, signal: ac.signal });
  const got: string[] = [];
  const done = (async () => {
    for await (const m of sub) {
      got.push(`${m.topic}=${dec.decode(m.data)}`);
      if (got.length === 2) ac.abort();
    }
  })();
  // The subscriber sleeps in futex_waitv on a worker thread; wake it from here.
  setTimeout(() => {
    using wa = openWriter("a", { root });
    wa.write("1");
    using wb = openWriter("b", { root });
    wb.write("2");
  }, 20);
  await done;
  assert.deepEqual(got.sort(), ["a=1", "b=2"]);
  assert.equal(sub.closed, true);
  // A closed subscription with a pending wait releases everything.
  const sub2 = subscribe("a", { root });
  const it = sub2[Symbol.asyncIterator]();
  const pending = it.next();
  await sub2.close();
  assert.deepEqual(await pending, { value: undefined, done: true });
});

Deno.test("Subscriber.close() right after a wait starts never hangs", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("a", { root });
  createTopic("b", { root });
  const within = async (p: Promise<unknown>, what: string) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} hung`)), 10_000);
    });
    try {
      await Promise.race([p, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  // The wait is handed to a worker thread; close() may run before it reaches the kernel.
  for (let i = 0; i < 100; i++) {
    const one = subscribe("a", { root });
    const pending = one[Symbol.asyncIterator]().next();
    await within(one.close().then(() => pending), "a one-topic subscription's close");
    const two = subscribe(["a", "b"], { root });
    const pending2 = two[Symbol.asyncIterator]().next();
    await within(two.close().then(() => pending2), "a two-topic subscription's close");
    const r = openReader("a", { root });
    const waiting = r.wait();
    r.wake();
    await within(waiting, "a reader's wake");
    r.close();
  }
});

Deno.test("RingWriter: 8 reader processes see the same stream from 2 concurrent writer processes", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root, size: 8 << 20 });
  using meet = tempDir();
  const perWriter = 1500;
  let total = 0;
  for (const id of ["A", "B"]) {
    let seed = id.charCodeAt(0) * 7919;
    for (let seq = 0; seq < perWriter; seq++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      total += 20 + (seed % (2000 - 20 + 1));
    }
  }
  const readers = Array.from(
    { length: 8 },
    () => spawnFsbus(["fanout", "sub", "t", "--root", root, "--bytes", String(total)]),
  );
  const outs = readers.map((c) => collect(c.stdout));
  const writers: Deno.ChildProcess[] = [];
  try {
    await waitFor(() => describeTopic("t", { root }).readers === 8, "8 readers", 20_000);
    // The writers meet halfway, so their second halves overlap however the machine schedules.
    for (const id of ["A", "B"]) {
      writers.push(peer(["write", root, "t", id, String(perWriter), "20", "2000", meet.path, "2"]));
    }
    const statuses = await Promise.all(readers.map((c) => c.status));
    for (const s of statuses) assert.equal(s.code, 0);
    await Promise.all(outs.map((o) => o.done));
    const first = outs[0]!.text();
    assert.equal(first.length, total);
    for (const o of outs) assert.equal(o.text(), first, "every reader saw the identical stream");
    checkRecords(first, { A: perWriter, B: perWriter });
    // Both writers really interleaved (the test would prove nothing otherwise).
    const ids = first.split("\n").slice(0, -1).map((l) => l[0]);
    let switches = 0;
    for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]) switches++;
    // Halfway they met: at least A...B...A or B...A...B.
    assert.ok(switches >= 2, `writers interleaved (${switches} switches)`);
  } finally {
    for (const c of [...readers, ...writers]) await stop(c);
  }
});

Deno.test("RingWriter.write() is not stalled by a writer killed holding the lock mid-write", async () => {
  using dir = tempDir();
  const root = dir.path;
  const path = createTopic("t", { root, size: 8192 });
  using r = openReader("t", { root });
  using w0 = openWriter("t", { root });
  w0.write("before\n");
  assert.equal(dec.decode(concat(r.take())), "before\n");
  const p = peer(["lock-and-hang", path]);
  const out = collect(p.stdout);
  try {
    await waitFor(() => out.text().includes("locked"), "the peer to hold the lock");
  } finally {
    await stop(p);
  }
  // The lock's owner is dead: the next writer takes it over and nobody sees the garbage
  // the dead writer left past the head.
  // A reader asleep on the ring (on a worker thread) is woken by the next writer's commit.
  const asleep = r.wait();
  using w = openWriter("t", { root });
  w.write("after\n");
  await asleep;
  assert.equal(dec.decode(concat(r.take())), "after\n");
});

Deno.test("RingWriter: writers killed at random moments leave the ring usable", async () => {
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root, size: 1 << 20 });
  using r = openReader("t", { root });
  const received: Uint8Array[] = [];
  const drain = () => {
    for (const c of r.take(1 << 20)) received.push(c);
  };
  for (let round = 0; round < 3; round++) {
    const p = peer(["write", root, "t", `K${round}`, "0", "100", "4000"]);
    try {
      const before = received.length;
      await waitFor(() => {
        drain();
        return received.length > before + 3;
      }, "the killed writer's first records");
    } finally {
      await stop(p);
    }
    drain();
    using w = openWriter("t", { root });
    w.write(`after-${round}\n`);
    const deadline = Date.now() + 10_000;
    while (!dec.decode(concat(received)).includes(`after-${round}\n`)) {
      assert.ok(Date.now() < deadline, "the survivor's write arrives");
      r.waitSync(100);
      drain();
    }
  }
  // Everything delivered is whole records: nothing torn, killed writers' sequences gapless.
  const text = dec.decode(concat(received));
  const lines = text.split("\n").slice(0, -1);
  const next: Record<string, number> = {};
  for (const line of lines) {
    if (/^after-\d$/.test(line)) continue;
    const m = line.match(/^(K\d):(\d+):(\d+):x*$/);
    assert.ok(m, `whole record: ${JSON.stringify(line.slice(0, 60))}`);
    assert.equal(line.length + 1, Number(m[3]));
    assert.equal(Number(m[2]), next[m[1]!] ?? 0);
    next[m[1]!] = Number(m[2]) + 1;
  }
});

for (const c of [2 ** 30 - 8, 2 ** 31 - 8]) {
  Deno.test(`RingReader.take() reads across the commit counter crossing ${c + 8}`, () => {
    using dir = tempDir();
    const root = dir.path;
    const path = createTopic("t", { root, size: 4096 });
    // Put the ring just before the sign flip / the wrap of seq (commit << 1), head 0.
    const f = Deno.openSync(path, { read: true, write: true });
    const header = new DataView(new ArrayBuffer(4096));
    f.readSync(new Uint8Array(header.buffer));
    header.setInt32(64, (c * 2) | 0, true);
    header.setFloat64(192 + (c & 15) * 16, 0, true);
    header.setFloat64(200 + (c & 15) * 16, 0, true);
    f.seekSync(0, Deno.SeekMode.Start);
    f.writeSync(new Uint8Array(header.buffer));
    f.close();
    using w = openWriter("t", { root });
    using r = openReader("t", { root });
    const got: string[] = [];
    for (let i = 0; i < 40; i++) {
      w.write(`m${i};`);
      if (i % 3 === 0) {
        got.push(...r.take().map((b) => dec.decode(b)));
        assert.equal(r.waitSync(0), false, "nothing pending after a take");
      }
    }
    got.push(...r.take().map((b) => dec.decode(b)));
    assert.equal(got.join(""), Array.from({ length: 40 }, (_, i) => `m${i};`).join(""));
  });
}

Deno.test("fanout topics: bad input gives one clear error", async (t) => {
  using dir = tempDir();
  const root = dir.path;
  Deno.writeTextFileSync(`${root}/file`, "x");
  await t.step("openReader() of a missing topic: not_found", () => {
    assert.throws(
      () => openReader("nope", { root }),
      (e: unknown) =>
        e instanceof FsbusError && e.code === "not_found" &&
        /Cannot open topic "nope".*: no such topic/.test(e.message),
    );
  });
  await t.step("openReader() and createTopic() under a root that is a file", () => {
    assert.throws(
      () => openReader("t", { root: `${root}/file` }),
      (e: unknown) =>
        e instanceof FsbusError &&
        /Cannot use topic root ".*file": not a directory/.test(e.message),
    );
    assert.throws(
      () => createTopic("t", { root: `${root}/file` }),
      /Cannot use topic root ".*file": not a directory/,
    );
  });
  await t.step("openReader() of a file that is not a ring", () => {
    Deno.writeTextFileSync(`${root}/junk`, "x".repeat(20000));
    assert.throws(
      () => openReader("junk", { root }),
      /Cannot open topic ".*junk": not an fsbus ring \(bad magic\)/,
    );
    Deno.writeTextFileSync(`${root}/tiny`, "x");
    assert.throws(
      () => openReader("tiny", { root }),
      /not an fsbus ring \(1 bytes is too small\)/,
    );
  });
  await t.step("openWriter() of a truncated ring", () => {
    const path = createTopic("cut", { root });
    Deno.truncateSync(path, 10000);
    assert.throws(() => openWriter("cut", { root }), /wrong size: 10000 bytes, expected 24576/);
  });
  await t.step("createTopic() with a bad size or name", () => {
    assert.throws(() => createTopic("t", { root, size: 100 }), /Ring size "100" is out of range/);
    assert.throws(() => createTopic("a/b", { root }), /Cannot use "a\/b" as a topic name/);
    assert.throws(() => createTopic("x.lock", { root }), /ends with "\.lock"/);
  });
  await t.step("createTopic() of an existing topic", () => {
    createTopic("dup", { root });
    assert.throws(
      () => createTopic("dup", { root }),
      /Cannot create topic "dup" in ".*": it already exists/,
    );
  });
  await t.step("listTopics() marks a file that is not a ring invalid", () => {
    assert.equal(listTopics({ root }).find((t) => t.topic === "junk")?.backend, "invalid");
  });
  await t.step("removeTopic() of a missing topic", () => {
    removeTopic("dup", { root });
    assert.throws(
      () => removeTopic("dup", { root }),
      /Cannot remove topic "dup" from ".*": it does not exist/,
    );
  });
});

Deno.test("openReader() with create makes the topic; describeTopic() counts live readers and writers", () => {
  using dir = tempDir();
  const root = `${dir.path}/sub/root`;
  {
    using r = openReader("t", { root, create: { size: 32768, mode: 0o640 } });
    using w = openWriter("t", { root });
    assert.equal(Deno.statSync(`${root}/t`).mode! & 0o777, 0o640);
    const info = describeTopic("t", { root });
    assert.deepEqual(
      [info.backend, info.size, info.messages, info.readers, info.writers],
      ["ring", 32768, false, 1, 1],
    );
    void r;
    void w;
  }
  const info = describeTopic("t", { root });
  assert.deepEqual([info.readers, info.writers], [0, 0]);
});

Deno.test("fanout device backend", async (t) => {
  using dir = tempDir();
  const root = dir.path;
  Deno.symlinkSync("/dev/null", `${root}/dev`);
  createTopic("ring", { root });
  await t.step("resolveTopic() tells a character device from a ring", () => {
    assert.equal(resolveTopic("dev", { root }).backend, "device");
    assert.equal(resolveTopic("ring", { root }).backend, "ring");
    assert.equal(resolveTopic("/dev/zero").backend, "device");
  });
  await t.step("fanoutIoctl() answers undefined for a device without the fork's ioctls", () => {
    // /dev/null is a character device without fanout's ioctls: ENOTTY means "unsupported".
    const fd = openFd("/dev/null", O.RDONLY);
    try {
      for (const req of Object.values(FANOUT_IOCTL)) {
        assert.equal(fanoutIoctl(fd, req, 1), undefined);
      }
    } finally {
      closeFd(fd);
    }
    assert.ok(isUnsupportedIoctl(25) && isUnsupportedIoctl(14) && !isUnsupportedIoctl(13));
  });
  await t.step("listTopics() lists devices, with counts unknown", () => {
    const listed = listTopics({ root });
    assert.deepEqual(listed.map((t) => [t.topic, t.backend]), [["dev", "device"], [
      "ring",
      "ring",
    ]]);
    assert.equal(listed[0]!.readers, undefined, "counts unknown without the fork's ioctls");
  });
  await t.step("readError() makes EPIPE an overrun, and nothing else", () => {
    assert.ok(readError(new SysError("read", 32), "t", "/dev/x") instanceof OverrunError);
    assert.equal(readError(new SysError("read", 5), "t", "/dev/x").code, "io");
  });
  await t.step("DeviceWriter.write() sends pieces of at most a quarter ring", () => {
    using w = openWriter("dev", { root });
    assert.ok(w instanceof DeviceWriter);
    w.write(new Uint8Array(10000));
    w.writeBatch([enc.encode("a"), new Uint8Array(5000)]);
    assert.deepEqual(planWrites([10, 10, 30], 25), [
      { start: 0, end: 20 },
      { start: 20, end: 45 },
      { start: 45, end: 50 },
    ]);
    assert.deepEqual(planWrites([4096, 1, 4095, 0, 8193], 4096), [
      { start: 0, end: 4096 },
      { start: 4096, end: 8192 },
      { start: 8192, end: 12288 },
      { start: 12288, end: 16384 },
      { start: 16384, end: 16385 },
    ]);
    assert.deepEqual(splitChunks(new Uint8Array(10), 4).map((c) => c.length), [4, 4, 2]);
  });
  await t.step("DeviceReader waits with poll(2) and reads; resync() reopens", async () => {
    // /dev/zero always has data.
    using z = new DeviceReader("z", "/dev/zero");
    assert.ok(z.waitSync(1000));
    assert.deepEqual(z.take(100), [new Uint8Array(100)]);
    await z.wait(); // poll(2) on a worker thread: /dev/zero is always readable
    assert.equal(z.waitSource(), undefined);
    assert.equal(z.resync(), undefined); // reopens the device: "now" again
    assert.equal(z.take(10)[0]!.length, 10);
  });
  await t.step("DeviceReader.take() reports a device's end of file as an error", () => {
    using n = openReader("dev", { root });
    assert.throws(() => n.take(), /reported end of file/);
  });
  await t.step("openReader() with fromOldest is unsupported on a device", () => {
    assert.throws(
      () => openReader("dev", { root, fromOldest: true }),
      (e: unknown) => e instanceof FsbusError && e.code === "unsupported",
    );
  });
});

Deno.test("futexWaitv() sees a changed word at once and times out otherwise", () => {
  if (!futexWaitvSupported()) return;
  using dir = tempDir();
  const root = dir.path;
  createTopic("t", { root });
  using r = openReader("t", { root });
  const src = r.waitSource();
  assert.ok(src && src.kind === "futex");
  assert.equal(futexWaitv([{ addr: src.addr, expected: src.expected }], 10), "timeout");
  assert.equal(futexWaitv([{ addr: src.addr, expected: src.expected + 2 }], 10), "changed");
});
