import assert from "node:assert/strict";
import { Uring, URING_ENV } from "../../sys/uring.ts";
import { openDir } from "../../sys/dirfd.ts";
import { closeFd, fstat, O } from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";
import { tempDir } from "../_helpers.ts";

const dec = new TextDecoder();

/** A ring, or undefined (with a notice) where io_uring is not allowed (a seccomp filter,
 * kernel.io_uring_disabled): the fallback's tests cover those machines. */
function ring(entries = 8): Uring | undefined {
  const r = Uring.open(entries);
  if (!r) console.warn("io_uring is not available here: the ring's own checks are skipped");
  return r;
}

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

Deno.test("uring: opens, reads and closes in batches, each call's result by its tag", () => {
  using dir = tempDir();
  for (let i = 0; i < 5; i++) Deno.writeTextFileSync(`${dir.path}/m${i}`, `message ${i}`);
  const before = openFds();
  const r = ring(16);
  if (!r) return;
  const bus = openDir(dir.path);
  try {
    for (let i = 0; i < 5; i++) r.openAt(bus, `m${i}`, O.RDONLY | O.NONBLOCK, i);
    r.openAt(bus, "missing", O.RDONLY, 5);
    const fds: number[] = [];
    r.submit((tag, res) => (fds[tag] = res));
    assert.equal(fds[5], -2); // -ENOENT
    const bufs: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) {
      assert.ok(fds[i]! >= 0, `open ${i}: ${fds[i]}`);
      // O_CLOEXEC is always added.
      const flags = Deno.readTextFileSync(`/proc/self/fdinfo/${fds[i]}`).match(/flags:\s+(\d+)/);
      assert.ok((parseInt(flags![1]!, 8) & 0o2000000) !== 0, "O_CLOEXEC");
      bufs[i] = new Uint8Array(i === 0 ? 8 : 64); // the first one a short buffer (on V8's heap)
      r.read(fds[i]!, bufs[i]!, i, { close: true });
    }
    const got: number[] = [];
    let closes = 0;
    r.submit((tag, res) => tag === -1 ? (assert.equal(res, 0), closes++) : (got[tag] = res));
    assert.equal(closes, 5);
    assert.equal(dec.decode(bufs[0]!.subarray(0, got[0])), "message ");
    for (let i = 1; i < 5; i++) {
      assert.equal(dec.decode(bufs[i]!.subarray(0, got[i])), `message ${i}`);
    }
    for (const fd of fds.slice(0, 5)) assert.throws(() => fstat(fd)); // closed by the ring
  } finally {
    r.close();
    r.close(); // a second close is ignored
    closeFd(bus);
  }
  assert.equal(openFds(), before); // the ring's own descriptor too
  assert.throws(() => r.closeFd(0), /after close/);
});

Deno.test("uring: never follows a symlink, takes one path segment, never creates", () => {
  using dir = tempDir();
  using outside = tempDir();
  Deno.writeTextFileSync(`${outside.path}/secret`, "SECRET");
  Deno.symlinkSync(`${outside.path}/secret`, `${dir.path}/link`);
  Deno.mkdirSync(`${dir.path}/sub`);
  Deno.writeTextFileSync(`${dir.path}/sub/f`, "x");
  const r = ring();
  if (!r) return;
  const bus = openDir(dir.path);
  try {
    r.openAt(bus, "link", O.RDONLY, 0);
    const res: number[] = [];
    r.submit((tag, v) => (res[tag] = v));
    assert.equal(res[0], -40); // -ELOOP
    // A "/" or NUL after non-ASCII characters, or in a name too long for the byte-by-byte
    // copy, is found too.
    const late = ["é/f", "é\0", "/", "\0", "x".repeat(260) + "/f", "sub/é"];
    for (const bad of ["", ".", "..", "sub/f", "a\0b", ...late]) {
      assert.throws(
        () => r.openAt(bus, bad, O.RDONLY, 0),
        (e) => e instanceof SysError && e.code === "EINVAL",
      );
    }
    assert.throws(
      () => r.openAt(bus, "new", O.WRONLY | O.CREAT, 0),
      (e) => e instanceof SysError && e.code === "EINVAL",
    );
    assert.throws(() => r.openAt(bus, "x".repeat(300), O.RDONLY, 0), (e) => e instanceof SysError);
    r.submit(() => assert.fail("nothing was queued"));
    assert.equal(Deno.readDirSync(dir.path).toArray().length, 2); // nothing created
  } finally {
    r.close();
    closeFd(bus);
  }
});

Deno.test("uring: a full ring refuses more until submitted", () => {
  using dir = tempDir();
  Deno.writeTextFileSync(`${dir.path}/f`, "x");
  const r = ring(2);
  if (!r) return;
  const bus = openDir(dir.path);
  try {
    assert.equal(r.entries, 2);
    r.openAt(bus, "f", O.RDONLY, 0);
    assert.equal(r.room, 1);
    r.openAt(bus, "f", O.RDONLY, 1);
    assert.throws(() => r.openAt(bus, "f", O.RDONLY, 2), RangeError);
    const fds: number[] = [];
    r.submit((tag, fd) => (fds[tag] = fd));
    assert.equal(r.room, 2);
    r.read(fds[0]!, new Uint8Array(8), 0, { close: true }); // a read and its close: 2 entries
    assert.equal(r.room, 0);
    assert.throws(() => r.read(fds[1]!, new Uint8Array(8), 1, { close: true }), RangeError);
    const got: number[] = [];
    r.submit((tag, n) => (got[tag] = n));
    assert.equal(got[0], 1);
    assert.throws(() => fstat(fds[0]!)); // closed by the ring
    closeFd(fds[1]!);
  } finally {
    r.close();
    closeFd(bus);
  }
});

Deno.test(`uring: ${URING_ENV}=0 says no, and callers fall back`, () => {
  const old = Deno.env.get(URING_ENV);
  Deno.env.set(URING_ENV, "0");
  try {
    assert.equal(Uring.open(8), undefined);
  } finally {
    if (old === undefined) Deno.env.delete(URING_ENV);
    else Deno.env.set(URING_ENV, old);
  }
});

Deno.test("uring: opens names of every length and script a file system allows, and no longer ones", () => {
  using dir = tempDir();
  const names = ["m", "é-ü-名前", "a".repeat(255), "é".repeat(127), "short"];
  for (const name of names) Deno.writeTextFileSync(`${dir.path}/${name}`, "");
  const r = ring(8);
  if (!r) return;
  const bus = openDir(dir.path);
  try {
    // Each slot reused after a longer name: no byte of the earlier one may stay in it.
    for (let round = 0; round < 3; round++) {
      for (const [i, name] of names.entries()) r.openAt(bus, name, O.RDONLY, i);
      const fds: number[] = [];
      r.submit((tag, res) => (fds[tag] = res));
      for (const [i, fd] of fds.entries()) {
        assert.ok(fd >= 0, `open ${names[i]!.slice(0, 8)}: ${fd}`);
        assert.equal(Deno.readLinkSync(`/proc/self/fd/${fd}`), `${dir.path}/${names[i]}`);
        closeFd(fd);
      }
    }
    for (const long of ["a".repeat(256), "é".repeat(128)]) {
      assert.throws(() => r.openAt(bus, long, O.RDONLY, 0), (e) => e instanceof SysError);
    }
  } finally {
    r.close();
    closeFd(bus);
  }
});
