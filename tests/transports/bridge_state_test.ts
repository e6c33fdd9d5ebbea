import assert from "node:assert/strict";
import { Position, Seen } from "../../transports/bridge/_state.ts";
import { tempDir, waitFor } from "../_helpers.ts";
import { FileLock } from "../../sys/flock.ts";

function fileLines(path: string): number {
  return Deno.readTextFileSync(path).split("\n").filter((l) => l !== "").length;
}

Deno.test("Seen: bridges sharing a list see each other's ids, and the list stays bounded while running", async (t) => {
  using dir = tempDir();
  const path = `${dir.path}/written`;
  const keep = 100;
  using writer = new Seen(path, { keep });
  using reader = new Seen(path, { keep });

  await t.step("an id added under guard by one is known to the other", async () => {
    await writer.guard(() => writer.add("first"));
    assert.equal(reader.has("first"), false, "not yet read");
    assert.equal(await reader.known("first"), true);
    assert.equal(await reader.known("never"), false);
  });

  await t.step("10,000 ids later the file and memory are bounded, recent ids known", async () => {
    let maxFile = 0;
    for (let i = 0; i < 10_000; i++) {
      await writer.guard(() => writer.add(`id-${i}`));
      if (i % 7 === 0) {
        // The other side follows, across compactions (a new file each time).
        assert.equal(await reader.known(`id-${i}`), true, `id-${i} seen by the reader`);
      }
      if (i % 500 === 0) maxFile = Math.max(maxFile, fileLines(path));
      // Sent ids (outside guard) are recorded too.
      if (i % 100 === 0) reader.add(`sent-${i}`);
    }
    maxFile = Math.max(maxFile, fileLines(path));
    assert.ok(maxFile <= 2 * keep + 1, `file held ${maxFile} ids`);
    assert.ok(writer.size <= 2 * keep, `writer held ${writer.size} ids`);
    assert.ok(reader.size <= 2 * keep, `reader held ${reader.size} ids`);
    assert.equal(await reader.known("id-9999"), true);
    using fresh = new Seen(path, { keep });
    for (let i = 10_000 - keep / 2; i < 10_000; i++) {
      assert.equal(fresh.has(`id-${i}`), true, `id-${i} kept`);
    }
    assert.equal(fresh.has("id-0"), false, "the oldest were dropped");
  });
});

Deno.test("Seen: sent ids added in a burst are all recorded, one line each, and known to another bridge", async () => {
  using dir = tempDir();
  const path = `${dir.path}/written`;
  using sender = new Seen(path, { keep: 10_000 });
  using other = new Seen(path, { keep: 10_000 });
  const ids = Array.from({ length: 300 }, (_, i) => `sent-${i}`);
  for (const id of ids) sender.add(id); // outside guard: written later, in one batch
  await waitFor(() => fileLines(path) >= ids.length, "the batch to be written", 10_000);
  assert.equal(fileLines(path), ids.length);
  for (const id of ids) assert.equal(await other.known(id), true, `${id} known`);
  assert.equal(await other.known("sent-300"), false);
});

Deno.test("Seen: ids another bridge adds across compactions are all found", async () => {
  using dir = tempDir();
  const path = `${dir.path}/written`;
  const keep = 50;
  using writer = new Seen(path, { keep });
  using reader = new Seen(path, { keep });
  const from = (n: number) => ({ from: "nats:x", origin: "o", id: `m-${n}`, host: "h" });
  for (let i = 1; i <= 1000; i++) {
    await writer.guard(() => writer.add(`id-${i}`, from(i)));
    if (i % 3 === 0) assert.deepEqual(await reader.lookup(`id-${i}`), from(i), `id-${i} found`);
  }
  assert.ok(reader.size <= 2 * keep, `reader held ${reader.size} ids`);
  assert.equal(await reader.lookup("other"), undefined);
});

Deno.test("Seen: a burst's writes keep the lock from one to the next; it is let go after the last, or by release()", async () => {
  using dir = tempDir();
  const path = `${dir.path}/written`;
  using writer = new Seen(path);
  using other = new Seen(path);
  using probe = FileLock.open(`${path}.lock`);
  const from = (id: string) => ({ from: "nats:x", origin: "o", id, host: "h" });
  const free = () => {
    const got = probe.tryLock();
    if (got) probe.unlock();
    return got;
  };
  // Three messages of one read: held from the first to the last, each id in the file at once.
  await writer.guard(() => writer.add("a", from("a")), true);
  assert.equal(free(), false, "kept after the first");
  assert.match(Deno.readTextFileSync(path), /^a\t/);
  await writer.guard(() => writer.add("b", from("b")), true);
  assert.equal(free(), false, "kept after the second");
  await writer.guard(() => writer.add("c", from("c")));
  assert.equal(free(), true, "let go after the last");
  assert.equal(fileLines(path), 3);
  // Kept, then the next message is not written after all: release() lets go (no timer does).
  await writer.guard(() => writer.add("d", from("d")), true);
  assert.equal(free(), false);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(free(), false, "still kept after the event loop turned");
  const waiting = other.lookup("d"); // another bridge waits for it meanwhile
  writer.release();
  writer.release(); // twice is harmless
  assert.deepEqual(await waiting, from("d"));
  // That bridge then knows every id.
  for (const id of ["a", "b", "c", "d"]) assert.deepEqual(await other.lookup(id), from(id));
  // A write that fails lets go too.
  assert.throws(() =>
    writer.guard(() => {
      throw new Error("full");
    }, true), /full/);
  assert.equal(free(), true, "let go after a failed write");
});

Deno.test("Position: the write ahead and the position survive a reopen; a line too long is refused", () => {
  using dir = tempDir();
  const path = `${dir.path}/pos-x`;
  {
    using pos = new Position(path);
    assert.equal(pos.initial, undefined);
    assert.equal(pos.pending, undefined);
    pos.save("41", "01a2-é-id"); // a file name need not be ASCII
  } // disposed without saying the write ended: as after a crash
  {
    using pos = new Position(path);
    assert.equal(pos.initial, "41");
    assert.equal(pos.pending?.key, "01a2-é-id");
    assert.ok(Math.abs(pos.pending!.since - Date.now()) < 60_000);
    pos.saveSoon("42"); // the write ended; kept within 100 ms, or at dispose
    assert.throws(() => pos.save("1", "é".repeat(80)), /longer than 160 bytes/);
  }
  using pos = new Position(path);
  assert.equal(pos.initial, "42");
  assert.equal(pos.pending, undefined);
  assert.equal(Deno.statSync(path).size, 160);
});
