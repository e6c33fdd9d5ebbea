import assert from "node:assert/strict";
import { IN, Inotify, InotifyQueue } from "../../sys/inotify.ts";
import { POLL, Waiter } from "../../sys/poll.ts";
import { FileLock } from "../../sys/flock.ts";
import {
  closeFd,
  closeFds,
  fstat,
  lstatPath,
  O,
  openFd,
  readAllFd,
  renamePath,
  unlinkPath,
  writeAllFd,
} from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";
import { fdEnd, fdPosition, fdSize } from "../../sys/fd_io.ts";
import { cpath, cstring } from "../../sys/libc.ts";
import { monotonicMs, monotonicNs } from "../../sys/clock.ts";
import { collect, sh, stop, tempDir, waitFor } from "../_helpers.ts";

// --- Inotify ----------------------------------------------------------------------------------

Deno.test("Inotify.read() returns every queued event, in order, with names", async () => {
  using dir = tempDir();
  await using ino = new Inotify();
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
});

Deno.test("InotifyQueue names of 36 characters (fsbus's ids) and of other lengths read back exactly", async () => {
  using dir = tempDir();
  await using ino = new Inotify();
  ino.add(dir.path, IN.CLOSE_WRITE);
  const names = [
    "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", // 36: the id's shape
    "Z".repeat(35) + "~", // 36, other characters
    "a".repeat(35),
    "b".repeat(37),
    "é".repeat(18), // 36 bytes, not ASCII
    "x".repeat(34) + "é", // 36 characters, 37 bytes
    "y",
  ];
  for (const name of names) Deno.writeTextFileSync(`${dir.path}/${name}`, "x");
  assert.equal(await ino.wait(5000), "ready");
  const queue = new InotifyQueue(ino);
  queue.fill();
  const got: string[] = [];
  while (queue.next()) got.push(queue.name);
  assert.deepEqual(got, names);
});

Deno.test("Inotify.read() surfaces IN_Q_OVERFLOW when the queue was full", async () => {
  using dir = tempDir();
  const max = Number(Deno.readTextFileSync("/proc/sys/fs/inotify/max_queued_events").trim());
  await using ino = new Inotify();
  ino.add(dir.path, IN.CREATE);
  // One more file than the queue holds, with nobody reading.
  for (let i = 0; i <= max; i++) Deno.writeFileSync(`${dir.path}/${i}`, new Uint8Array(0));
  const events = ino.read();
  assert.ok(events.length <= max + 1);
  assert.ok(events.some((e) => e.mask & IN.Q_OVERFLOW), "an overflow event is reported");
  assert.equal(events.find((e) => e.mask & IN.Q_OVERFLOW)!.wd, -1);
});

Deno.test("Inotify.add() throws a SysError for a missing path", async () => {
  using dir = tempDir();
  await using ino = new Inotify();
  assert.throws(() => ino.add(`${dir.path}/nope`, IN.CLOSE_WRITE), { code: "ENOENT" });
});

Deno.test("Inotify.wait() ends without hanging", async (t) => {
  using dir = tempDir();
  await t.step("with 'woken' when Inotify.wake() is called", async () => {
    await using ino = new Inotify();
    ino.add(dir.path, IN.CLOSE_WRITE);
    const waiting = ino.wait();
    ino.wake();
    assert.equal(await waiting, "woken");
  });
  await t.step("with 'timeout' when nothing happens", async () => {
    await using ino = new Inotify();
    ino.add(dir.path, IN.CLOSE_WRITE);
    assert.equal(await ino.wait(10), "timeout");
  });
  await t.step("with 'woken' when the instance is closed", async () => {
    const ino = new Inotify();
    ino.add(dir.path, IN.CLOSE_WRITE);
    const pending = ino.wait();
    await ino.close();
    assert.equal(await pending, "woken");
  });
});

Deno.test("Inotify[Symbol.asyncDispose]() closes the instance and ends a pending wait", async () => {
  let pending: Promise<string> | undefined;
  let closed: Inotify | undefined;
  {
    await using ino = new Inotify();
    closed = ino;
    pending = ino.wait();
  }
  assert.equal(await pending, "woken");
  assert.equal(await closed.wait(), "woken", "a closed instance never waits");
  assert.deepEqual(closed.read(), []);
});

// --- Waiter -----------------------------------------------------------------------------------

Deno.test("Waiter.wait() reports 'ready' only once a watched descriptor is readable", async () => {
  using dir = tempDir();
  await using ino = new Inotify();
  ino.add(dir.path, IN.CLOSE_WRITE);
  await using w = new Waiter([ino.fd], POLL.IN);
  assert.equal(await w.wait(20), "timeout");
  Deno.writeTextFileSync(`${dir.path}/x`, "x");
  assert.equal(await w.wait(5000), "ready");
  assert.equal(w.revents(0) & POLL.IN, POLL.IN);
});

Deno.test("Waiter[Symbol.asyncDispose]() ends a pending wait and closes the waiter", async () => {
  let pending: Promise<string> | undefined;
  let waiter: Waiter | undefined;
  {
    await using w = new Waiter([], POLL.IN);
    waiter = w;
    pending = w.wait();
  }
  assert.equal(await pending, "woken");
  assert.equal(waiter.closed, true);
});

// --- FileLock ---------------------------------------------------------------------------------

/** Holds `path` locked with flock(1) until its stdin closes; resolves once it holds it. */
async function holdWithFlock(path: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("flock", {
    args: [path, "-c", "echo held; read -r _"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const out = collect(child.stdout);
  await waitFor(() => out.text().includes("held"), "flock(1) to hold the lock");
  return child;
}

Deno.test("FileLock.tryLock() fails while flock(1) holds the lock", async () => {
  using dir = tempDir();
  const path = `${dir.path}/lock`;
  const holder = await holdWithFlock(path);
  try {
    using lock = FileLock.open(path);
    assert.equal(lock.tryLock(), false);
    assert.equal(lock.held, false);
  } finally {
    await stop(holder);
  }
});

Deno.test("FileLock.lock() waits without blocking the event loop", async () => {
  using dir = tempDir();
  const path = `${dir.path}/lock`;
  const holder = await holdWithFlock(path);
  try {
    using lock = FileLock.open(path);
    let granted = false;
    const locking = lock.lock().then(() => (granted = true));
    // Timers still fire while the lock is awaited.
    await new Promise((resolve) => setTimeout(resolve, 1));
    assert.equal(granted, false);
    await holder.stdin.close();
    await locking;
    assert.equal(lock.held, true);
  } finally {
    await stop(holder);
  }
});

Deno.test("FileLock[Symbol.dispose]() releases the lock", async () => {
  using dir = tempDir();
  const path = `${dir.path}/lock`;
  {
    using lock = FileLock.open(path);
    assert.equal(lock.tryLock(), true);
    assert.equal((await sh(`flock -n "${path}" true`)).code, 1, "held while in scope");
  }
  assert.equal((await sh(`flock -n "${path}" true`)).code, 0, "free after the scope");
});

Deno.test("FileLock.trySoon() gives up after its time while flock(1) holds the lock", async () => {
  using dir = tempDir();
  const path = `${dir.path}/lock`;
  const holder = await holdWithFlock(path);
  try {
    using lock = FileLock.open(path);
    assert.equal(lock.trySoon(2000), false);
    assert.equal(lock.trySoon(10, 50, 20_000), false, "with naps too");
    assert.equal(lock.held, false);
    await holder.stdin.close();
    await holder.status;
    assert.equal(lock.trySoon(2000), true, "free once flock(1) ended");
  } finally {
    await stop(holder);
  }
});

Deno.test("FileLock.trySoon() with naps takes the lock once its holder lets go", async () => {
  using dir = tempDir();
  const path = `${dir.path}/lock`;
  // flock(1) holds the lock for a moment and lets go on its own: the thread, blocked in
  // trySoon's sleeps, cannot tell it to.
  const holder = new Deno.Command("flock", {
    args: [path, "-c", "echo held; sleep 0.2"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const out = collect(holder.stdout);
    await waitFor(() => out.text().includes("held"), "flock(1) to hold the lock");
    using lock = FileLock.open(path);
    assert.equal(lock.trySoon(10, 50, 60_000_000), true, "taken within the minute");
    assert.equal(lock.held, true);
  } finally {
    await stop(holder);
  }
});

// --- fs ---------------------------------------------------------------------------------------

Deno.test("openFd() with O.NOFOLLOW refuses a symlink with ELOOP", () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/file`, "x");
  Deno.symlinkSync(`${dir.path}/file`, `${dir.path}/link`);
  assert.throws(() => openFd(`${dir.path}/link`, O.RDONLY | O.NOFOLLOW), { code: "ELOOP" });
  assert.equal(lstatPath(`${dir.path}/link`).kind, "symlink");
});

Deno.test("openFd() with O.EXCL refuses an existing file with EEXIST", () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/file`, "x");
  assert.throws(() => openFd(`${dir.path}/file`, O.WRONLY | O.CREAT | O.EXCL), {
    code: "EEXIST",
  });
});

Deno.test("openFd() names the path and the errno's text in its SysError", () => {
  using dir = tempDir();
  assert.throws(() => openFd(`${dir.path}/missing`, O.RDONLY), (err: unknown) => {
    assert.ok(err instanceof SysError);
    assert.equal(err.code, "ENOENT");
    assert.equal(err.message, `open "${dir.path}/missing": no such file or directory`);
    return true;
  });
});

Deno.test("fstat() and readAllFd() read back what writeAllFd() wrote", () => {
  using dir = tempDir();
  const file = `${dir.path}/file`;
  const data = new Uint8Array(100_000).map((_, i) => i % 251);
  const fd = openFd(file, O.WRONLY | O.CREAT | O.EXCL, 0o640);
  writeAllFd(fd, data);
  closeFd(fd);
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
});

Deno.test("readAllFd() returns undefined for a file over the limit", () => {
  using dir = tempDir();
  Deno.writeFileSync(`${dir.path}/file`, new Uint8Array(2000));
  const fd = openFd(`${dir.path}/file`, O.RDONLY);
  try {
    assert.equal(readAllFd(fd, 0, 1000), undefined);
  } finally {
    closeFd(fd);
  }
});

// --- libc and clock ---------------------------------------------------------------------------

Deno.test("cstring() and cpath() encode UTF-8 with a final NUL", () => {
  assert.deepEqual([...cstring("/é")], [47, 0xc3, 0xa9, 0]);
  // cpath() gives its scratch buffer itself: the bytes up to the NUL are the path.
  const upToNul = (b: Uint8Array) => [...b.subarray(0, b.indexOf(0) + 1)];
  assert.deepEqual(upToNul(cpath("/é")), [47, 0xc3, 0xa9, 0]);
  assert.deepEqual(upToNul(cpath("/tmp")), [47, 116, 109, 112, 0]);
  cpath("/a/much/longer/path");
  assert.deepEqual(upToNul(cpath("/x")), [47, 120, 0]); // a shorter one after a longer one
});

Deno.test("monotonicNs() is positive and never goes back", () => {
  const a = monotonicNs();
  const b = monotonicNs();
  assert.ok(b >= a);
  assert.ok(a > 0n);
});

Deno.test("monotonicMs() is monotonicNs() in milliseconds, and never goes back", () => {
  const a = monotonicNs();
  const m = monotonicMs();
  const b = monotonicNs();
  assert.ok(m >= Number(a) / 1e6 - 1e-6 && m <= Number(b) / 1e6 + 1e-6, `${a} ${m} ${b}`);
  let last = m;
  for (let i = 0; i < 1000; i++) {
    const t = monotonicMs();
    assert.ok(t >= last);
    last = t;
  }
});

Deno.test("unlinkPath() removes a symlink itself and says false when nothing is there", () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/target`, "kept");
  Deno.symlinkSync(`${dir.path}/target`, `${dir.path}/link`);
  assert.equal(unlinkPath(`${dir.path}/link`), true);
  assert.equal(Deno.readTextFileSync(`${dir.path}/target`), "kept");
  assert.equal(unlinkPath(`${dir.path}/link`), false);
  Deno.mkdirSync(`${dir.path}/sub`);
  assert.throws(() => unlinkPath(`${dir.path}/sub`), { code: "EISDIR" });
});

Deno.test("renamePath() replaces the target, and names it in its SysError", () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/new`, "fresh");
  Deno.writeTextFileSync(`${dir.path}/file`, "old");
  renamePath(`${dir.path}/new`, `${dir.path}/file`);
  assert.equal(Deno.readTextFileSync(`${dir.path}/file`), "fresh");
  assert.throws(
    () => renamePath(`${dir.path}/new`, `${dir.path}/file`),
    (e) => e instanceof SysError && e.code === "ENOENT" && e.message.includes("/file"),
  );
});

Deno.test("closeFds() closes every descriptor given, consecutive runs and strays, and no other", () => {
  const before = openFd("/dev/null", O.RDONLY);
  const run = Array.from({ length: 5 }, () => openFd("/dev/null", O.RDONLY));
  const stray = openFd("/dev/null", O.RDONLY);
  const after = openFd("/dev/null", O.RDONLY);
  try {
    // A run out of order, a stray between, and only the first 6 of 7 entries.
    const fds = [run[0]!, run[1]!, stray, run[2]!, run[3]!, run[4]!, after];
    closeFds(fds, 6);
    for (const fd of [...run, stray]) {
      assert.throws(() => fstat(fd), (e: unknown) => e instanceof SysError && e.code === "EBADF");
    }
    assert.equal(fstat(before).kind, "char");
    assert.equal(fstat(after).kind, "char");
  } finally {
    closeFd(before);
    closeFd(after);
  }
});

Deno.test("fdEnd gives the size statx gives; an O_APPEND write after it still lands at the end and fdPosition says where it ended", () => {
  using tmp = tempDir();
  const path = `${tmp.path}/stream`;
  const fd = openFd(path, O.RDWR | O.APPEND | O.CREAT);
  const other = openFd(path, O.WRONLY | O.APPEND); // a plain program appending meanwhile
  try {
    assert.equal(fdEnd(fd), 0);
    writeAllFd(fd, new TextEncoder().encode("one\n"));
    assert.equal(fdEnd(fd), fdSize(fd));
    writeAllFd(other, new TextEncoder().encode("foreign\n"));
    assert.equal(fdEnd(fd), 12);
    assert.equal(fdSize(fd), 12);
    writeAllFd(other, new TextEncoder().encode("more\n")); // after the check, before the write
    writeAllFd(fd, new TextEncoder().encode("two\n"));
    assert.equal(fdPosition(fd), 21); // where this write ended, past the foreign bytes
    assert.equal(Deno.readTextFileSync(path), "one\nforeign\nmore\ntwo\n");
  } finally {
    closeFd(other);
    closeFd(fd);
  }
});
