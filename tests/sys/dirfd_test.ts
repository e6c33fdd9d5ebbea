import assert from "node:assert/strict";
import { closeFd, O, statAt } from "../../sys/fs.ts";
import {
  fchmod,
  mkdirAt,
  openAt,
  openDir,
  readDirFd,
  readSized,
  renameAt,
  statusAt,
  statusFd,
  touchFd,
  unlinkAt,
} from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";
import { tempDir } from "../_helpers.ts";

Deno.test("dirfd: *at calls never follow a symlink and take one path segment", () => {
  using dir = tempDir();
  Deno.mkdirSync(`${dir.path}/real`);
  Deno.writeTextFileSync(`${dir.path}/real/f`, "x");
  Deno.symlinkSync(`${dir.path}/real`, `${dir.path}/link`);
  Deno.symlinkSync(`${dir.path}/real/f`, `${dir.path}/flink`);
  const fd = openDir(dir.path);
  try {
    // O_DIRECTORY|O_NOFOLLOW on a symlink: ENOTDIR (ELOOP on some kernels).
    assert.throws(
      () => openDir("link", fd),
      (e) => e instanceof SysError && (e.code === "ENOTDIR" || e.code === "ELOOP"),
    );
    assert.throws(
      () => openAt(fd, "flink", O.RDONLY),
      (e) => e instanceof SysError && e.code === "ELOOP",
    );
    assert.throws(() => openAt(fd, "real/f", O.RDONLY), (e) => e instanceof SysError);
    assert.throws(() => openAt(fd, "..", O.RDONLY), (e) => e instanceof SysError);
    assert.equal(statAt(fd, "link")?.kind, "symlink");
    assert.equal(statAt(fd, "nope"), undefined);
    // unlinkAt removes the symlink itself, never its target.
    assert.equal(unlinkAt(fd, "flink"), true);
    assert.equal(unlinkAt(fd, "flink"), false);
    assert.equal(Deno.readTextFileSync(`${dir.path}/real/f`), "x");
    // mkdirAt, fchmod beyond the umask, renameAt, touchFd.
    assert.equal(mkdirAt(fd, "d", 0o700), true);
    assert.equal(mkdirAt(fd, "d", 0o700), false);
    const d = openDir("d", fd);
    fchmod(d, 0o3770);
    touchFd(d);
    closeFd(d);
    assert.equal(Deno.statSync(`${dir.path}/d`).mode! & 0o7777, 0o3770);
    const real = openDir("real", fd);
    renameAt(real, "f", fd, "g");
    closeFd(real);
    assert.equal(Deno.readTextFileSync(`${dir.path}/g`), "x");
    assert.equal(unlinkAt(fd, "d", true), true);
  } finally {
    closeFd(fd);
  }
});

Deno.test("dirfd: readDirFd lists a big directory in batches, each name once, with kinds", () => {
  using dir = tempDir();
  const n = 5000;
  for (let i = 0; i < n; i++) Deno.writeFileSync(`${dir.path}/file-${i}`, new Uint8Array());
  Deno.mkdirSync(`${dir.path}/sub`);
  const fd = openDir(dir.path);
  try {
    let batches = 0;
    const names = new Map<string, string | undefined>();
    for (const batch of readDirFd(fd)) {
      batches++;
      for (const e of batch) {
        assert.equal(names.has(e.name), false);
        names.set(e.name, e.kind);
      }
    }
    assert.equal(names.size, n + 1);
    assert.ok(batches > 1);
    assert.equal(names.get("sub"), "directory");
    assert.equal(names.get("file-0"), "file");
    // A second listing starts from the beginning again.
    let again = 0;
    for (const batch of readDirFd(fd)) again += batch.length;
    assert.equal(again, n + 1);
  } finally {
    closeFd(fd);
  }
});

Deno.test("dirfd: statusFd and statusAt report what lstat does, in plain numbers; readSized reads a file that holds what its status said", () => {
  using dir = tempDir();
  const data = new Uint8Array(3000).map((_, i) => i & 0xff);
  Deno.writeFileSync(`${dir.path}/file`, data);
  Deno.symlinkSync(`${dir.path}/file`, `${dir.path}/link`);
  const info = Deno.lstatSync(`${dir.path}/file`);
  const dfd = openDir(dir.path);
  const fd = openAt(dfd, "file", O.RDONLY);
  try {
    const st = statusFd(fd);
    assert.deepEqual([st.kind, st.size, st.ino, st.nlink], ["file", 3000, info.ino, 1]);
    assert.equal(st.mtimeSec * 1000 + Math.floor(st.mtimeNsec / 1e6), info.mtime!.getTime());
    assert.equal(Math.floor(st.ctimeMs / 1000), Math.floor(info.ctime!.getTime() / 1000));
    assert.deepEqual(statusAt(dfd, "file"), st);
    assert.equal(statusAt(dfd, "link")?.kind, "symlink");
    assert.equal(statusAt(dfd, "missing"), undefined);
    assert.deepEqual(readSized(fd, 3000), data);
    // Longer than its status said (written to meanwhile): nothing.
    const longer = openAt(dfd, "file", O.RDONLY);
    assert.equal(readSized(longer, 2999), undefined);
    closeFd(longer);
    // Shorter (truncated meanwhile): nothing either.
    Deno.truncateSync(`${dir.path}/file`, 100);
    const again = openAt(dfd, "file", O.RDONLY);
    assert.equal(readSized(again, 3000), undefined);
    closeFd(again);
    Deno.truncateSync(`${dir.path}/file`, 0);
    const empty = openAt(dfd, "file", O.RDONLY);
    assert.deepEqual(readSized(empty, 0), new Uint8Array(0));
    closeFd(empty);
    Deno.removeSync(`${dir.path}/file`);
    assert.equal(statusFd(fd).nlink, 0);
  } finally {
    closeFd(fd);
    closeFd(dfd);
  }
});
