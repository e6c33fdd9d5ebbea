/**
 * filebus shared by users who do not trust each other: a member of a shared directory plants
 * symlinks or FIFOs at FILE, FILE.__new__ or FILE.lock, and root's producer or consumer must
 * neither follow them nor hang. The attacker is uid 65534 (setpriv); the victim is root.
 */

import assert from "node:assert/strict";
import { collect, exists, fsbus, sh, spawnFsbus, stop, tempDir, waitFor } from "../_helpers.ts";

/** Runs a shell command as nobody (uid/gid 65534, no supplementary groups). */
async function asNobody(command: string): Promise<void> {
  const r = await sh(`setpriv --reuid 65534 --regid 65534 --clear-groups sh -c '${command}'`);
  assert.equal(r.code, 0, `as nobody: ${command}: ${r.stderr}`);
}

/** A directory everyone may write (not sticky, so links there are followed unless refused). */
function sharedDir(): { path: string } & Disposable {
  const dir = tempDir();
  Deno.chmodSync(dir.path, 0o777);
  return dir;
}

/** A root-only directory holding a secret and a file others must not change. */
function privateFiles(): { path: string; secret: string; target: string } & Disposable {
  const dir = tempDir();
  Deno.chmodSync(dir.path, 0o700);
  Deno.writeTextFileSync(`${dir.path}/secret`, "TOPSECRET\n", { mode: 0o600 });
  Deno.writeTextFileSync(`${dir.path}/target`, "ORIGINAL\n", { mode: 0o644 });
  return Object.assign(dir, { secret: `${dir.path}/secret`, target: `${dir.path}/target` });
}

Deno.test("filebus consumer: refuses a FILE that another user made a symlink", async () => {
  using bus = sharedDir();
  using priv = privateFiles();
  await asNobody(`ln -s ${priv.secret} ${bus.path}/chan`);
  for (const mode of [[], ["--lossless"]]) {
    const r = await fsbus(["filebus", ...mode, "--filename", `${bus.path}/chan`, "consumer"]);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.text, /TOPSECRET/);
    assert.match(r.stderr, /^fsbus: Cannot use ".*\/chan" as a filebus file: is a symbolic link/);
  }
});

Deno.test("filebus consumer: a symlink renamed in while running is not followed", async () => {
  using bus = sharedDir();
  using priv = privateFiles();
  const child = spawnFsbus(["filebus", "--filename", `${bus.path}/chan`, "consumer"]);
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  try {
    // The consumer is up once a protocol chunk reaches it.
    const first = await fsbus(["filebus", "--filename", `${bus.path}/chan`, "producer"], {
      stdin: "hello\n",
    });
    assert.equal(first.code, 0);
    await waitFor(() => out.text().includes("hello"), "the first chunk");
    await asNobody(
      `ln -s ${priv.secret} ${bus.path}/tmp && mv -f ${bus.path}/tmp ${bus.path}/chan`,
    );
    const status = await child.status;
    assert.equal(status.code, 1, "the consumer stops with an error");
    assert.doesNotMatch(out.text(), /TOPSECRET/);
    assert.match(err.text(), /is a symbolic link/);
  } finally {
    await stop(child);
  }
});

Deno.test("filebus producer: a symlink planted at FILE.__new__ is replaced, not followed", async () => {
  using bus = sharedDir();
  using priv = privateFiles();
  for (const lossless of [false, true]) {
    try {
      Deno.removeSync(`${bus.path}/chan`);
    } catch {
      // first round
    }
    await asNobody(`ln -sf ${priv.target} ${bus.path}/chan.__new__`);
    const mode = lossless ? ["--lossless"] : [];
    // A lossless producer waits for its chunks (and EOF) to be taken: a consumer takes them.
    const taker = lossless
      ? fsbus(["filebus", "--lossless", "--filename", `${bus.path}/chan`, "consumer"])
      : undefined;
    const r = await fsbus(["filebus", ...mode, "--filename", `${bus.path}/chan`, "producer"], {
      stdin: "payload\n",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Deno.readTextFileSync(priv.target), "ORIGINAL\n", "the link's target is intact");
    assert.equal(exists(`${bus.path}/chan.__new__`), false);
    if (taker) {
      const t = await taker;
      assert.equal(t.code, 0, t.stderr);
      assert.equal(t.text, "payload\n");
    } else {
      const chan = Deno.lstatSync(`${bus.path}/chan`);
      assert.ok(chan.isFile && chan.uid === 0, "FILE is root's own new file");
      assert.equal(Deno.readTextFileSync(`${bus.path}/chan`), "payload\n");
    }
  }
});

Deno.test("filebus: a symlink or FIFO planted at FILE.lock is refused at once", async () => {
  using bus = sharedDir();
  using priv = privateFiles();
  const created = `${priv.path}/created`;
  await asNobody(`ln -s ${created} ${bus.path}/chan.lock`);
  for (const role of ["producer", "consumer"]) {
    const r = await fsbus(["filebus", "--filename", `${bus.path}/chan`, role], { stdin: "x" });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^fsbus: Cannot use ".*\/chan\.lock" as a filebus file: is a symbolic link/,
    );
  }
  assert.equal(exists(created), false, "nothing was created through the link");
  Deno.removeSync(`${bus.path}/chan.lock`);
  await asNobody(`mkfifo ${bus.path}/chan.lock`);
  const r = await fsbus(["filebus", "--filename", `${bus.path}/chan`, "producer"], { stdin: "x" });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^fsbus: Cannot use ".*\/chan\.lock" as a filebus file: is a FIFO/);
  assert.equal(exists(`${bus.path}/chan`), false);
});

Deno.test("filebus producer: a FILE.lock swapped for a symlink after start is not followed", async () => {
  using bus = sharedDir();
  using priv = privateFiles();
  const created = `${priv.path}/created`;
  // A lossless producer waits while FILE exists; meanwhile the lock file is replaced.
  Deno.writeTextFileSync(`${bus.path}/chan`, "pending");
  const child = spawnFsbus(["filebus", "--lossless", "--filename", `${bus.path}/chan`, "producer"]);
  const err = collect(child.stderr);
  try {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("next\n"));
    await w.close();
    await waitFor(() => exists(`${bus.path}/chan.lock`), "the producer's lock file");
    await asNobody(`ln -s ${created} ${bus.path}/l && mv -f ${bus.path}/l ${bus.path}/chan.lock`);
    Deno.removeSync(`${bus.path}/chan`); // "consumed": the producer now locks and writes
    const status = await child.status;
    assert.equal(status.code, 1);
    assert.match(err.text(), /chan\.lock" as a filebus file: is a symbolic link/);
    assert.equal(exists(created), false);
  } finally {
    await stop(child);
  }
});
