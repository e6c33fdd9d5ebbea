import assert from "node:assert/strict";
import * as msgfs from "../../transports/msgfs/mod.ts";
import { MessageFiles, READ_BATCH, type ReadOutcome } from "../../transports/msgfs/read.ts";
import { openDir } from "../../sys/dirfd.ts";
import { closeFd } from "../../sys/fs.ts";
import { URING_ENV } from "../../sys/uring.ts";
import { tempDir } from "../_helpers.ts";

const dec = new TextDecoder();

/** Runs `f` with io_uring allowed ("1") or refused ("0") for what opens its ring meanwhile. */
async function withUring<T>(on: boolean, f: () => T | Promise<T>): Promise<T> {
  const old = Deno.env.get(URING_ENV);
  Deno.env.set(URING_ENV, on ? "1" : "0");
  try {
    return await f();
  } finally {
    if (old === undefined) Deno.env.delete(URING_ENV);
    else Deno.env.set(URING_ENV, old);
  }
}

function openMessageFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (target.startsWith(`${dir}/`)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/**
 * Plants, beside good messages, what a bus shared with others may hold: a symlink to a
 * secret, a FIFO, a socket, a file over the size limit, a directory name. Returns the names,
 * in order, and the listener to close.
 */
function plant(bus: string, outside: string): { names: string[]; listener: Deno.Listener } {
  Deno.writeTextFileSync(`${outside}/secret`, "SECRET");
  Deno.symlinkSync(`${outside}/secret`, `${bus}/link`);
  const fifo = new Deno.Command("mkfifo", { args: [`${bus}/fifo`] }).outputSync();
  assert.equal(fifo.code, 0);
  const listener = Deno.listen({ transport: "unix", path: `${bus}/socket` });
  Deno.writeTextFileSync(`${bus}/big`, "x".repeat(100));
  Deno.mkdirSync(`${bus}/dir`);
  for (let i = 0; i < 3; i++) Deno.writeTextFileSync(`${bus}/m${i}`, `message ${i}`);
  return { names: ["m0", "link", "fifo", "socket", "big", "dir", "gone", "m1", "m2"], listener };
}

for (const on of [true, false]) {
  const path = on ? "io_uring" : "plain calls";
  Deno.test(`MessageFiles.readMany (${path}): reads what read() reads and refuses what it refuses`, async () => {
    using bus = tempDir();
    using outside = tempDir();
    const { names, listener } = plant(bus.path, outside.path);
    try {
      await withUring(on, () => {
        const files = new MessageFiles(true);
        assert.equal(files.batches(), on && files.batches()); // off: never
        const fd = openDir(bus.path);
        try {
          const out: (ReadOutcome | undefined)[] = [];
          const fds = names.map(() => fd);
          files.readMany(fds, names, names.length, 50, out);
          assert.deepEqual(openMessageFiles(bus.path), []); // every file closed
          const single = names.map((n) => files.read(fd, n, "", 50));
          files.flush();
          const show = (r: ReadOutcome | undefined) =>
            r === undefined
              ? "unchanged"
              : r.ok
              ? `ok ${dec.decode(r.data)}`
              : r.why === "gone"
              ? "gone"
              : `skip ${r.reason}`;
          assert.deepEqual(out.map(show), single.map(show));
          assert.deepEqual(out.map(show), [
            "ok message 0",
            "skip a symbolic link",
            "skip not a regular file",
            "skip no such device or address", // a socket cannot be opened
            "skip larger than the 50-byte limit",
            "skip not a regular file",
            "gone",
            "ok message 1",
            "ok message 2",
          ]);
          // A batch's states are those read() gives.
          const r0 = out[0]!;
          assert.ok(r0.ok && single[0]?.ok && r0.state.ino === single[0].state.ino);
          // No directory descriptor: no outcome, nothing opened.
          files.readMany([undefined], ["m0"], 1, 50, out);
          assert.deepEqual(out, [undefined]);
          assert.throws(() => files.readMany(fds, names, READ_BATCH + 1, 50, out), RangeError);
        } finally {
          files.close();
          closeFd(fd);
        }
      });
    } finally {
      listener.close();
    }
  });

  Deno.test(`subscribe() reading a queued batch (${path}) delivers the messages in order and skips what was planted`, async () => {
    using bus = tempDir();
    using outside = tempDir();
    await withUring(on, async () => {
      const skipped: msgfs.SkippedFile[] = [];
      const sub = msgfs.subscribe(bus.path, { maxSize: 50, onSkip: (s) => skipped.push(s) });
      const it = sub[Symbol.asyncIterator]();
      let next = it.next(); // sets up the watch; nothing is read until this turn ends
      const pub = new msgfs.Publisher(bus.path, { sweep: false });
      const sent: string[] = [];
      for (let i = 0; i < 30; i++) sent.push(pub.publish(`before ${i}`).id);
      // Planted beside them, renamed in (IN_MOVED_TO), as another user could.
      Deno.writeTextFileSync(`${outside.path}/secret`, "SECRET");
      Deno.symlinkSync(`${outside.path}/secret`, `${outside.path}/link`);
      Deno.renameSync(`${outside.path}/link`, `${bus.path}/link`);
      assert.equal(
        new Deno.Command("mkfifo", { args: [`${outside.path}/fifo`] }).outputSync().code,
        0,
      );
      Deno.renameSync(`${outside.path}/fifo`, `${bus.path}/fifo`);
      const listener = Deno.listen({ transport: "unix", path: `${outside.path}/socket` });
      Deno.renameSync(`${outside.path}/socket`, `${bus.path}/socket`);
      pub.publish("x".repeat(51));
      for (let i = 0; i < 100; i++) sent.push(pub.publish(`after ${i}`).id); // more than a batch
      await pub.close();
      const deadline = setTimeout(() => void sub.close(), 20_000); // then `next` says done
      try {
        const got: string[] = [];
        while (got.length < 130) {
          const r = await next;
          assert.ok(!r.done);
          got.push(r.value.id);
          assert.equal(
            dec.decode(r.value.data),
            got.length <= 30 ? `before ${got.length - 1}` : `after ${got.length - 31}`,
          );
          // A batch read through the ring is closed whole before its first message is handed on;
          // the plain calls hold up to 16 files.
          assert.ok(openMessageFiles(bus.path).length <= (on ? 0 : 16));
          if (got.length < 130) next = it.next();
        }
        assert.deepEqual(got, sent);
        assert.deepEqual(skipped.map((s) => s.reason).sort(), [
          "a symbolic link",
          "larger than the 50-byte limit",
          "no such device or address",
          "not a regular file",
        ]);
        assert.equal(sub.stats.skipped, 4);
      } finally {
        clearTimeout(deadline);
        listener.close();
        await sub.close();
      }
    });
  });

  Deno.test(`subscribe() stopped inside a queued batch (${path}) counts and remembers only what it handed on`, async () => {
    using bus = tempDir();
    await withUring(on, async () => {
      const sub = msgfs.subscribe(bus.path);
      const it = sub[Symbol.asyncIterator]();
      const next = it.next(); // sets up the watch
      const pub = new msgfs.Publisher(bus.path, { sweep: false });
      const sent: string[] = [];
      for (let i = 0; i < 40; i++) sent.push(pub.publish(`m ${i}`).id);
      await pub.close();
      const deadline = setTimeout(() => void sub.close(), 20_000);
      try {
        const got: string[] = [];
        let r = await next;
        while (!r.done) {
          got.push(r.value.id);
          if (got.length === 3) break;
          r = await it.next();
        }
        assert.deepEqual(got, sent.slice(0, 3));
        await sub.close();
        assert.equal(sub.stats.delivered, 3);
        assert.equal(sub.stats.remembered, 3);
        assert.deepEqual(openMessageFiles(bus.path), []);
      } finally {
        clearTimeout(deadline);
        await sub.close();
      }
    });
  });
}
