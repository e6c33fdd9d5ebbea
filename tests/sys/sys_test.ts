import assert from "node:assert/strict";
import { IN, Inotify } from "../../sys/inotify.ts";
import { POLL, Waiter } from "../../sys/poll.ts";
import { closeFd, fstat, lstatPath, O, openFd, readAllFd, writeAllFd } from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";
import { cpath, cstring } from "../../sys/libc.ts";
import { monotonicNs } from "../../sys/clock.ts";
import { tempDir } from "../_helpers.ts";

Deno.test("inotify: every event of a read, in order, with names", async () => {
  using dir = tempDir();
  const ino = new Inotify();
  try {
    ino.add(dir.path, IN.CLOSE_WRITE | IN.MOVED_TO);
    for (let i = 0; i < 50; i++) Deno.writeTextFileSync(`${dir.path}/f${i}`, "x");
    Deno.writeTextFileSync(`${dir.path}/.tmp`, "y");
    Deno.renameSync(`${dir.path}/.tmp`, `${dir.path}/moved-é`);
    assert.equal(await ino.wait(5000), "ready");
    const events = ino.read();
    assert.deepEqual(
      events.map((e) => e.name),
      [...Array.from({ length: 50 }, (_, i) => `f${i}`), ".tmp", "moved-é"],
    );
    assert.ok(events.slice(0, 51).every((e) => e.mask & IN.CLOSE_WRITE));
    assert.ok(events[51]!.mask & IN.MOVED_TO);
    assert.deepEqual(ino.read(), []);
  } finally {
    await ino.close();
  }
});

Deno.test("inotify: a full queue surfaces IN_Q_OVERFLOW", async () => {
  using dir = tempDir();
  const max = Number(Deno.readTextFileSync("/proc/sys/fs/inotify/max_queued_events").trim());
  const ino = new Inotify();
  try {
    ino.add(dir.path, IN.CREATE);
    // One more file than the queue holds, with nobody reading.
    for (let i = 0; i <= max; i++) Deno.writeFileSync(`${dir.path}/${i}`, new Uint8Array(0));
    const events = ino.read();
    assert.ok(events.length <= max + 1);
    assert.ok(events.some((e) => e.mask & IN.Q_OVERFLOW), "an overflow event is reported");
    assert.equal(events.find((e) => e.mask & IN.Q_OVERFLOW)!.wd, -1);
  } finally {
    await ino.close();
  }
});

Deno.test("inotify: a pending wait ends when woken or closed, so nothing hangs", async () => {
  using dir = tempDir();
  const ino = new Inotify();
  ino.add(dir.path, IN.CLOSE_WRITE);
  const waiting = ino.wait();
  ino.wake();
  assert.equal(await waiting, "woken");
  assert.equal(await ino.wait(10), "timeout");
  const pending = ino.wait();
  await ino.close();
  assert.equal(await pending, "woken");
  assert.throws(() => ino.add(`${dir.path}/nope`, IN.CLOSE_WRITE), SysError);
});

Deno.test("poll waiter: ready when a watched descriptor is readable, timeout otherwise", async () => {
  using dir = tempDir();
  const ino = new Inotify();
  ino.add(dir.path, IN.CLOSE_WRITE);
  const w = new Waiter([ino.fd], POLL.IN);
  try {
    assert.equal(await w.wait(20), "timeout");
    Deno.writeTextFileSync(`${dir.path}/x`, "x");
    assert.equal(await w.wait(5000), "ready");
    assert.equal(w.revents(0) & POLL.IN, POLL.IN);
  } finally {
    await w.close();
    await ino.close();
  }
});

Deno.test("fs: O_NOFOLLOW refuses symlinks; statx and whole reads on descriptors", () => {
  using dir = tempDir();
  const file = `${dir.path}/file`;
  const data = new Uint8Array(100_000).map((_, i) => i % 251);
  const fd = openFd(file, O.WRONLY | O.CREAT | O.EXCL, 0o640);
  writeAllFd(fd, data);
  closeFd(fd);
  assert.throws(() => openFd(file, O.WRONLY | O.CREAT | O.EXCL), { code: "EEXIST" });
  Deno.symlinkSync(file, `${dir.path}/link`);
  assert.throws(() => openFd(`${dir.path}/link`, O.RDONLY | O.NOFOLLOW), { code: "ELOOP" });
  assert.equal(lstatPath(`${dir.path}/link`).kind, "symlink");
  const rfd = openFd(file, O.RDONLY | O.NOFOLLOW);
  try {
    const st = fstat(rfd);
    assert.equal(st.kind, "file");
    assert.equal(st.size, data.length);
    assert.equal(st.mode, 0o640 & ~0o022 & 0o640);
    assert.equal(st.ino, BigInt(Deno.statSync(file).ino!));
    assert.deepEqual(readAllFd(rfd, st.size, data.length), data);
  } finally {
    closeFd(rfd);
  }
  const small = openFd(file, O.RDONLY);
  try {
    assert.equal(readAllFd(small, 0, 1000), undefined, "over the limit");
  } finally {
    closeFd(small);
  }
  assert.throws(() => openFd(`${dir.path}/missing`, O.RDONLY), (err: unknown) => {
    assert.ok(err instanceof SysError);
    assert.equal(err.code, "ENOENT");
    assert.equal(err.message, `open "${dir.path}/missing": no such file or directory`);
    return true;
  });
});

Deno.test("C strings and the monotonic clock", () => {
  assert.deepEqual([...cstring("/é")], [47, 0xc3, 0xa9, 0]);
  assert.deepEqual([...cpath("/é")], [47, 0xc3, 0xa9, 0]);
  assert.deepEqual([...cpath("/tmp")], [47, 116, 109, 112, 0]);
  const a = monotonicNs();
  const b = monotonicNs();
  assert.ok(b >= a);
  assert.ok(a > 0n);
});
