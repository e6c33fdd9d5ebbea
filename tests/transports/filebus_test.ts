import assert from "node:assert/strict";
import { type ByteReader, consumer, producer, readChunks } from "../../transports/filebus/mod.ts";
import { FsbusError } from "../../types.ts";
import { exists, sh, tempDir, waitFor } from "../_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (b: Uint8Array) => dec.decode(b);

/** A byte source the test feeds by hand: reads resolve when data is pushed. */
function feeder(): ByteReader & { push(s: string | Uint8Array): void; end(): void } {
  const queue: (Uint8Array | null)[] = [];
  let wake: (() => void) | undefined;
  return {
    push(s) {
      queue.push(typeof s === "string" ? enc.encode(s) : s);
      wake?.();
    },
    end() {
      queue.push(null);
      wake?.();
    },
    async read(p) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      wake = undefined;
      const head = queue[0]!;
      if (head === null) return null;
      const n = Math.min(p.length, head.length);
      p.set(head.subarray(0, n));
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
      return n;
    },
  };
}

Deno.test("consumer() in lossless mode takes each chunk once, in order, and ends at EOF", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const got: string[] = [];
  const taking = (async () => {
    for await (const c of consumer(file, { lossless: true })) got.push(text(c));
  })();
  const out = producer(file, { lossless: true });
  const sent = Array.from({ length: 200 }, (_, i) => `chunk ${i}\n`);
  for (const s of sent) await out.write(s);
  await out.close();
  await taking;
  assert.deepEqual(got, sent);
  // The EOF marker was taken too; the lock file stays; nothing else is left.
  assert.deepEqual(Array.from(Deno.readDirSync(dir.path), (e) => e.name).sort(), ["bus.lock"]);
});

Deno.test("FilebusProducer.write() in lossless mode waits while FILE is unconsumed", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  await using out = producer(file, { lossless: true });
  await out.write("first");
  assert.equal(Deno.readTextFileSync(file), "first");
  let second = false;
  const writing = out.write("second").then(() => (second = true));
  // A shell peer takes the first chunk the protocol's way: under the lock, read and remove.
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(second, false);
  assert.equal(Deno.readTextFileSync(file), "first");
  const r = await sh(`flock "${file}.lock" sh -c 'cat "${file}"; rm -f "${file}"'`);
  assert.equal(r.text, "first");
  await writing;
  assert.equal(Deno.readTextFileSync(file), "second");
  await sh(`flock "${file}.lock" rm -f "${file}"`);
  await out.close();
  assert.equal(Deno.readFileSync(file).length, 0, "EOF marker: an empty FILE");
});

Deno.test("consumer() in lossy mode yields the current chunk first, then each new one", async () => {
  await using bus = await lossyBus("before");
  const { file, out, it } = bus;
  for (const s of ["one", "two\0bin\n", "three"]) {
    await out.write(s);
    assert.equal(text((await it.next()).value!), s);
  }
  // The lossy producer leaves the last chunk in place and writes no EOF marker.
  await out.close();
  assert.equal(Deno.readTextFileSync(file), "three");
});

Deno.test("consumer() in lossy mode does not skip a new chunk on a reused inode number (ext4)", async () => {
  using dir = tempDir("/tmp");
  const file = `${dir.path}/bus`;
  await using out = producer(file);
  await using sub = consumer(file);
  const it = sub[Symbol.asyncIterator]();
  await out.write("AAAA");
  assert.equal(text((await it.next()).value!), "AAAA");
  const firstIno = Deno.statSync(file).ino;
  // Same size each time: on ext4 the freed inode number is handed out again at once, and
  // change times can fall in the same clock tick, so only events tell these chunks apart.
  let reused = false;
  for (const s of ["BBBB", "CCCC", "DDDD", "EEEE"]) {
    await out.write(s);
    if (Deno.statSync(file).ino === firstIno) reused = true;
  }
  assert.equal(text((await it.next()).value!), "EEEE");
  if (!reused) console.log("  (the file system did not reuse the inode number this time)");
});

Deno.test("consumer() in lossy mode sees a shell rename that reuses the inode", async () => {
  using dir = tempDir("/tmp");
  const file = `${dir.path}/bus`;
  await using sub = consumer(file);
  const it = sub[Symbol.asyncIterator]();
  const put = (s: string) =>
    sh(
      `( flock -x 9; printf '${s}' > "${file}.__new__"; mv "${file}.__new__" "${file}" ) 9>"${file}.lock"`,
    );
  await put("xxxx");
  assert.equal(text((await it.next()).value!), "xxxx");
  await put("yyyy");
  await put("zzzz");
  assert.equal(text((await it.next()).value!), "zzzz");
});

Deno.test("consumer() in lossy mode sees FILE written in place (not the protocol) within the sleep interval", async () => {
  await using bus = await lossyBus("renamed in", { sleepIntervalMs: 20 });
  const { file, it } = bus;
  // No rename, so no IN_MOVED_TO: the change shows as a new identity at the next interval.
  const lock = await Deno.open(`${file}.lock`);
  await lock.lock(true);
  Deno.writeTextFileSync(file, "written in place");
  await lock.unlock();
  lock.close();
  const next = nextChunk(it);
  await waitFor(() => next.text() !== undefined, "the chunk written in place");
  await next.taken;
  assert.equal(next.text(), "written in place");
});

/**
 * A lossy bus in a new temporary directory: a producer that wrote `first`, and a consumer
 * whose iterator has already taken it. Disposing closes both and removes the directory.
 */
async function lossyBus(first: string, options: { sleepIntervalMs?: number } = {}) {
  const dir = tempDir();
  const file = `${dir.path}/bus`;
  const out = producer(file);
  let sub: ReturnType<typeof consumer> | undefined;
  const dispose = async () => {
    await sub?.close();
    await out.close();
    dir[Symbol.dispose]();
  };
  try {
    await out.write(first); // FILE holds a chunk before the consumer starts
    sub = consumer(file, options);
    const it = sub[Symbol.asyncIterator]();
    assert.equal(text((await it.next()).value!), first);
    return { file, out, it, [Symbol.asyncDispose]: dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** Takes the iterator's next chunk in the background: `text()` is undefined until it came. */
function nextChunk(it: AsyncIterator<Uint8Array>) {
  let got: string | undefined;
  const taken = it.next().then((r) => {
    got = text(r.value!);
  });
  return { text: () => got, taken };
}

/** Runs `script` under flock(1) on `lockPath`; it holds the lock until `release()`. */
async function holdLock(lockPath: string, script: string) {
  const holder = new Deno.Command("flock", {
    args: [lockPath, "sh", "-c", `${script}; echo held; read x`],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = holder.stdout.getReader();
  let out = "";
  while (!out.includes("held")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += dec.decode(value);
  }
  return {
    async release() {
      const w = holder.stdin.getWriter();
      await w.write(enc.encode("\n"));
      await w.close();
      reader.releaseLock();
      await holder.stdout.cancel();
      await holder.status;
    },
  };
}

Deno.test("consumer() in lossy mode takes a chunk renamed in while its writer still holds the lock", async () => {
  await using bus = await lossyBus("first");
  const { file, it } = bus;
  // A renamed-in chunk is whole: the consumer does not wait for the writer's unlock.
  const holder = await holdLock(
    `${file}.lock`,
    `printf 'renamed in' > "${file}.__new__" && mv "${file}.__new__" "${file}"`,
  );
  try {
    const next = nextChunk(it);
    await waitFor(() => next.text() !== undefined, "the chunk, with the lock still held");
    await next.taken;
    assert.equal(next.text(), "renamed in");
  } finally {
    await holder.release();
  }
});

Deno.test("consumer() in lossy mode reads FILE written in place under the lock once the lock is free", async () => {
  await using bus = await lossyBus("renamed in", { sleepIntervalMs: 20 });
  const { file, it } = bus;
  // Written in place (no rename, no event) in two steps under the lock: the consumer sees a
  // new identity at its next interval, and waits for the lock before it opens FILE.
  const holder = await holdLock(`${file}.lock`, `printf 'part' >> "${file}"`);
  const next = nextChunk(it);
  try {
    // The consumer's wait shows in /proc/locks as a blocked request ("->") from this process.
    await waitFor(
      () =>
        Deno.readTextFileSync("/proc/locks").split("\n").some((l) =>
          l.includes("->") && l.includes("FLOCK") && l.split(/\s+/).includes(String(Deno.pid))
        ),
      "the consumer to wait for the lock",
    );
    assert.equal(next.text(), undefined);
    await sh(`printf ' and the rest' >> "${file}"`);
  } finally {
    await holder.release();
  }
  await waitFor(() => next.text() !== undefined, "the chunk");
  await next.taken;
  assert.equal(next.text(), "renamed inpart and the rest");
});

Deno.test("consumer() in lossy mode does not yield a chunk again when it is renamed away and back", async () => {
  await using bus = await lossyBus("once");
  const { file, out, it } = bus;
  // Asked for the next chunk while the same file comes back at FILE (IN_MOVED_TO, a new
  // change time): that is still the same chunk, so the answer is the one written after.
  const next = it.next();
  await sh(`mv "${file}" "${file}.away" && mv "${file}.away" "${file}"`);
  await out.write("next");
  assert.equal(text((await next).value!), "next");
});

Deno.test("consumer() in lossy mode eavesdrops on a lossless producer and consumer", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const takers = [0, 1, 2].map(() => consumer(file, { lossless: true }));
  const eavesdropper = consumer(file);
  const taken: string[][] = [[], [], []];
  const seen: string[] = [];
  const runs = takers.map(async (c, i) => {
    for await (const chunk of c) taken[i]!.push(text(chunk));
  });
  const eaves = (async () => {
    for await (const chunk of eavesdropper) seen.push(text(chunk));
  })();
  const sent = Array.from({ length: 300 }, (_, i) => `c${i}`);
  const out = producer(file, { lossless: true });
  for (const s of sent) await out.write(s);
  await out.close();
  // The EOF marker ends exactly one lossless consumer; stop the others.
  await Promise.race(runs);
  for (const c of takers) await c.close();
  await Promise.all(runs);
  await eavesdropper.close();
  await eaves;
  const all = taken.flat().sort();
  assert.deepEqual(all, [...sent].sort(), "each chunk exactly once across lossless consumers");
  for (const t of taken) {
    assert.deepEqual(t, [...t].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
  }
  assert.ok(seen.length > 0, "the lossy consumer saw chunks");
  assert.ok(seen.every((s) => sent.includes(s)));
});

Deno.test("consumer() and producer() with fileMonitoring false still deliver, by polling", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const sub = consumer(file, { lossless: true, fileMonitoring: false, sleepIntervalMs: 2 });
  assert.equal(sub.monitoring, "polling");
  const got: string[] = [];
  const taking = (async () => {
    for await (const c of sub) got.push(text(c));
  })();
  const out = producer(file, { lossless: true, fileMonitoring: false, sleepIntervalMs: 2 });
  assert.equal(out.monitoring, "polling");
  for (const s of ["a", "b", "c"]) await out.write(s);
  await out.close();
  await taking;
  assert.deepEqual(got, ["a", "b", "c"]);
});

/** How many inotify instances and eventfds this process holds open. */
function watchFds(): number {
  let n = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const t = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
      if (t === "anon_inode:inotify" || t === "anon_inode:[eventfd]") n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/** How many descriptors this process holds open on files under `dir` (removed ones too). */
function fdsUnder(dir: string): number {
  let n = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`).startsWith(`${dir}/`)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

Deno.test("FilebusConsumer ends its iteration and releases its watch", async (t) => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const before = watchFds();
  await t.step("when close() is called while it waits for a chunk", async () => {
    const a = consumer(file);
    const ending = (async () => {
      for await (const _ of a) throw new Error("no chunk expected");
    })();
    await a.close();
    await ending;
  });
  await t.step("when its signal aborts while it waits (lossless)", async () => {
    const ac = new AbortController();
    const b = consumer(file, { lossless: true, signal: ac.signal });
    const endingB = (async () => {
      for await (const _ of b) throw new Error("no chunk expected");
    })();
    ac.abort();
    await endingB;
  });
  await using out = producer(file);
  await out.write("x");
  await t.step("when the loop breaks after a chunk", async () => {
    for await (const c of consumer(file)) {
      assert.equal(text(c), "x");
      break;
    }
  });
  await t.step("when close() is called between chunks, without break", async () => {
    const d = consumer(file);
    const it = d[Symbol.asyncIterator]();
    assert.equal(text((await it.next()).value!), "x");
    await d.close();
    assert.equal((await it.next()).done, true);
  });
  await out.close();
  assert.equal(watchFds(), before, "every inotify instance and eventfd was closed");
  assert.equal(fdsUnder(dir.path), 0, "no chunk, lock file or FILE left open");
});

Deno.test("consumer() and producer() report a bad path at once", () => {
  using dir = tempDir();
  assert.throws(
    () => consumer(`${dir.path}/missing/bus`),
    (e: unknown) =>
      e instanceof FsbusError && e.code === "not_found" &&
      e.message ===
        `Cannot use the directory "${dir.path}/missing": no such file or directory`,
  );
  assert.throws(() => producer(`${dir.path}/missing/bus`), FsbusError);
  Deno.mkdirSync(`${dir.path}/bus`);
  for (const make of [() => consumer(`${dir.path}/bus`), () => producer(`${dir.path}/bus`)]) {
    assert.throws(
      make,
      (e: unknown) =>
        e instanceof FsbusError && e.code === "is_a_directory" &&
        e.message === `Cannot use "${dir.path}/bus" as a filebus file: is a directory`,
    );
  }
});

Deno.test("FilebusProducer.write() fails when a directory appears at FILE", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  await using out = producer(file);
  Deno.mkdirSync(file);
  await assert.rejects(out.write("x"), (e: unknown) => e instanceof FsbusError);
  Deno.removeSync(file);
  await out.write("y");
  assert.equal(Deno.readTextFileSync(file), "y");
});

Deno.test("FilebusProducer locks FILE.lock: made if missing, never deleted, shared with flock(1)", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const out = producer(file);
  assert.ok(exists(`${file}.lock`));
  // While flock(1) holds the lock, the write waits; it completes once released.
  const holder = new Deno.Command("flock", {
    args: [`${file}.lock`, "sh", "-c", "echo locked; read x"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = holder.stdout.getReader();
  await reader.read(); // "locked"
  let done = false;
  const writing = out.write("z").then(() => (done = true));
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  assert.equal(done, false);
  assert.equal(exists(file), false);
  const w = holder.stdin.getWriter();
  await w.write(enc.encode("\n"));
  await w.close();
  reader.releaseLock();
  await holder.stdout.cancel();
  await holder.status;
  await writing;
  assert.equal(Deno.readTextFileSync(file), "z");
  await out.close();
  assert.ok(exists(`${file}.lock`));
});

Deno.test("readChunks() cuts a stream like the original producer", async (t) => {
  const src = feeder();
  const it = readChunks(src, { blockSize: 4, idleMs: 5 });
  await t.step("flushes what is buffered once input is idle", async () => {
    src.push("ab");
    assert.equal(text((await it.next()).value!), "ab");
  });
  await t.step("flushes a full block at once, which a read can make larger", async () => {
    src.push("cdef");
    assert.equal(text((await it.next()).value!), "cdef");
    src.push("g");
    src.push("hijk");
    assert.equal(text((await it.next()).value!), "ghijk");
  });
  await t.step("keeps NUL bytes and binary data", async () => {
    const bin = new Uint8Array([0, 255, 10, 0]);
    src.push(bin);
    assert.deepEqual((await it.next()).value, bin);
  });
  await t.step("flushes a last line without a newline at end of input", async () => {
    src.push("no newline");
    src.end();
    const rest: string[] = [];
    for await (const c of it) rest.push(text(c));
    assert.equal(rest.join(""), "no newline");
    assert.ok(rest.every((c) => c.length >= 4 || c === rest.at(-1)));
  });
});

Deno.test("readChunks() with idleMs Infinity flushes only full blocks and at end of input", async () => {
  const src = feeder();
  const it = readChunks(src, { blockSize: 8, idleMs: Infinity });
  src.push("abc");
  const next = it.next();
  let settled = false;
  next.then(() => (settled = true));
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(settled, false);
  src.push("defgh");
  assert.equal(text((await next).value!), "abcdefgh");
  src.push("ij");
  src.end();
  assert.equal(text((await it.next()).value!), "ij");
  assert.equal((await it.next()).done, true);
});

Deno.test("consumer() in lossless mode waits for a FILE that appears later", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const sub = consumer(file, { lossless: true, sleepIntervalMs: 60_000 });
  const got = (async () => {
    const all: string[] = [];
    for await (const c of sub) all.push(text(c));
    return all;
  })();
  // A shell producer, as PROTOCOLS.md describes it: chunk, then the empty EOF marker.
  await sh(
    `( flock -x 9; printf 'late' > "${file}.__new__"; mv "${file}.__new__" "${file}" ) 9>"${file}.lock"`,
  );
  await waitFor(() => !exists(file), "the chunk to be taken");
  await sh(
    `( flock -x 9; : > "${file}.__new__"; mv "${file}.__new__" "${file}" ) 9>"${file}.lock"`,
  );
  assert.deepEqual(await got, ["late"]);
});

Deno.test({
  name: "FilebusProducer.write() on a full disk leaves FILE as it was and no partial FILE.__new__",
  ignore: Deno.uid() !== 0, // mounting a small tmpfs needs root (CI runs as root)
  async fn() {
    using dir = tempDir();
    const mnt = `${dir.path}/small`;
    Deno.mkdirSync(mnt);
    const mount = await sh(`mount -t tmpfs -o size=64k tmpfs "${mnt}"`);
    assert.equal(mount.code, 0, mount.stderr);
    try {
      const file = `${mnt}/bus`;
      const out = producer(file);
      try {
        await out.write("small");
        await assert.rejects(
          out.write(new Uint8Array(256 << 10)),
          (e: unknown) =>
            e instanceof FsbusError && /bus\.__new__": no space left on device$/.test(e.message),
        );
        assert.equal(Deno.readTextFileSync(file), "small");
        assert.throws(() => Deno.lstatSync(`${file}.__new__`), Deno.errors.NotFound);
        await out.write("after");
        assert.equal(Deno.readTextFileSync(file), "after");
      } finally {
        await out.close();
      }
    } finally {
      await sh(`umount "${mnt}"`);
    }
  },
});
