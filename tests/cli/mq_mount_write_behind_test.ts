import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import { collect, fsbus, HAVE_FUSE, sh, stop, tempDir, waitFor, waitOpened } from "../_helpers.ts";
import {
  assertEachWriterInOrder,
  burstWithDirWriter,
  type Mounted,
  startMount,
} from "./_mq_mount.ts";

if (!HAVE_FUSE) console.error("fsbus mq mount --write-behind tests skipped: /dev/fuse is missing");
const ROOT = Deno.uid() === 0;

/** `fsbus mq mount DATA MP --write-behind` (or without it), once the mount is there. */
function mountWriteBehind(data: string, mp: string, behind = true): Promise<Mounted> {
  return startMount(data, mp, behind ? ["--write-behind"] : []);
}

async function unmount(m: Mounted): Promise<void> {
  await stop(m.server);
  if (mountAt(m.mp) !== undefined) {
    await sh(`umount -l '${m.mp}'`);
    assert.fail(`the server left ${m.mp} mounted: ${m.log.text()}`);
  }
}

async function run(script: string): Promise<void> {
  const r = await sh(script);
  assert.equal(r.code, 0, `${script}: ${r.stderr}`);
}

/** A small file system to fill: group "g" (replay all) in DATA on a 1 MiB tmpfs, served at a
 * mount point; `fn` may unmount the server itself (`stop`). Both are unmounted at the end. */
async function onSmallTmpfs(
  behind: boolean,
  fn: (
    t: { small: string; data: string; s: string; m: Mounted; stop(): Promise<void> },
  ) => Promise<void>,
): Promise<void> {
  using tmp = tempDir();
  const small = `${tmp.path}/fsbt-mqwb-tmpfs`;
  const mp = `${tmp.path}/fsbt-mqwb-mnt`;
  Deno.mkdirSync(small);
  Deno.mkdirSync(mp);
  await run(`mount -t tmpfs -o size=1m,mode=0755 fsbt-mqwb '${small}'`);
  let m: Mounted | undefined;
  try {
    const data = `${small}/data`;
    const made = await fsbus(["mq", "mkgroup", `${data}/g`, "--replay", "all"]);
    assert.equal(made.code, 0, made.stderr);
    const mounted = m = await mountWriteBehind(data, mp, behind);
    const stop = async () => {
      m = undefined;
      await unmount(mounted);
    };
    await fn({ small, data, s: `${mp}/g/s`, m: mounted, stop });
  } finally {
    if (m !== undefined) await unmount(m);
    await sh(`umount '${small}' || umount -l '${small}'`);
  }
}

Deno.test("fsbus mq mount --help: --write-behind is documented, with an example", async () => {
  const r = await fsbus(["mq", "mount", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.text, /--write-behind\s+Answer each write\(2\) to a stream once checked/);
  assert.match(r.text, /fsbus mq mount \S+ \S+ --write-behind/);
});

Deno.test({
  name: "fsbus mq mount --write-behind: a blocked cat gets messages written through the mount " +
    "and by fsbus mq write on DIR in one order, during a burst too; history survives a remount",
  ignore: !HAVE_FUSE,
  async fn() {
    using tmp = tempDir();
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-mqwb-mnt`;
    Deno.mkdirSync(mp);
    const made = await fsbus(["mq", "mkgroup", `${data}/g`]);
    assert.equal(made.code, 0, made.stderr);
    const s = `${mp}/g/s`;
    const n = 1500;
    const k = n / 10;
    let m: Mounted | undefined = await mountWriteBehind(data, mp);
    try {
      await run(`touch '${s}'`);
      const cat = new Deno.Command("cat", { args: [s], stdout: "piped", stderr: "null" }).spawn();
      const out = collect(cat.stdout);
      try {
        await waitOpened(cat.pid, s);
        await run(`echo one > '${s}'`);
        const w = await fsbus(["mq", "write", `${data}/g`, "s", "two\n"]);
        assert.equal(w.code, 0, w.stderr);
        await run(`echo three > '${s}'`);
        await waitFor(() => out.text() === "one\ntwo\nthree\n", "three messages in order");
        // A shell writing through one descriptor as fast as it can (each write acknowledged
        // before its commit) while another process commits between its writes.
        await burstWithDirWriter(s, `${data}/g`, "s", n, k);
        await run(`: > '${s}'`); // end of file
        assert.equal((await cat.status).code, 0);
        await out.done;
        // The reader saw each writer's messages in its own order, and everything committed.
        const got = out.text().split("\n").slice(3, -1);
        assertEachWriterInOrder(got, n, k);
        // ... in the group's order: what the stream file holds, message by message.
        assert.equal(Deno.readTextFileSync(`${data}/g/s`), out.text());
        assert.equal(Deno.readTextFileSync(`${data}/g/order`), "s\0".repeat(3 + n + k + 1));
      } finally {
        await stop(cat);
      }
      await unmount(m);
      m = undefined;
      const check = await fsbus(["mq", "check", `${data}/g`]);
      assert.equal(check.code, 0, check.text + check.stderr);
      // Remounted: the whole history replays, up to the end of file written above.
      const history = Deno.readTextFileSync(`${data}/g/s`);
      m = await mountWriteBehind(data, mp);
      await run(`echo replay all > '${mp}/g/ctl'`);
      const all = await sh(`timeout 20 cat '${s}'`);
      assert.equal(all.code, 0, all.stderr);
      assert.equal(all.text, history);
      await run(`echo four > '${s}'`);
      await unmount(m);
      m = undefined;
      assert.equal(Deno.readTextFileSync(`${data}/g/s`), `${history}four\n`);
      const again = await fsbus(["mq", "check", `${data}/g`]);
      assert.equal(again.code, 0, again.text + again.stderr);
    } finally {
      if (m !== undefined) await unmount(m);
    }
  },
});

Deno.test({
  name: "fsbus mq mount --write-behind: a commit that fails (a full tmpfs) reaches the writer " +
    "at its next write(2), close(2) or fsync(2), once (while a reader waits, at the write " +
    "itself); nothing committed is lost",
  ignore: !HAVE_FUSE || !ROOT,
  async fn() {
    await onSmallTmpfs(true, async ({ small, data, s, m, stop: stopServer }) => {
      await run(`echo a > '${s}' && echo b > '${s}' && echo c > '${s}'`);
      // Fill the file system (dd ends with ENOSPC).
      await sh(`dd if=/dev/zero of='${small}/fill' bs=64k 2>/dev/null`);
      const script = [
        "import os, sys",
        `s = ${JSON.stringify(s)}`,
        "big = b'x' * 65536",
        "def tell(what, f):",
        "    try:",
        "        r = f()",
        "        print(what, 'ok' if r is None else r)",
        "    except OSError as e:",
        "        print(what, 'errno', e.errno)",
        "fd = os.open(s, os.O_WRONLY)",
        "tell('write', lambda: os.write(fd, big))", // acknowledged; its commit fails
        "tell('close', lambda: os.close(fd))", // ... which close reports
        "fd = os.open(s, os.O_WRONLY)",
        "tell('write', lambda: os.write(fd, big))",
        "tell('write', lambda: os.write(fd, big))", // reports the first one's failure
        "tell('close', lambda: os.close(fd))", // reported once: close succeeds
        "fd = os.open(s, os.O_WRONLY)",
        "tell('write', lambda: os.write(fd, big))",
        "tell('fsync', lambda: os.fsync(fd))",
        "tell('close', lambda: os.close(fd))",
      ].join("\n");
      const py = await new Deno.Command("python3", { args: ["-c", script] }).output();
      assert.equal(py.code, 0, new TextDecoder().decode(py.stderr));
      assert.equal(
        new TextDecoder().decode(py.stdout),
        [
          "write 65536",
          "close errno 28",
          "write 65536",
          "write errno 28",
          "close ok",
          "write 65536",
          "fsync errno 28",
          "close ok",
          "",
        ].join("\n"),
      );
      // A plain program sees it as well: dd's write is acknowledged, its close fails.
      const dd = await sh(`dd if=/dev/zero of='${s}' bs=64k count=1 conv=notrunc`);
      assert.equal(dd.code, 1);
      assert.match(dd.stderr, /No space left on device/);
      assert.match(m.log.text(), /no space left on device \(acknowledged already/);
      // While a reader waits for the group, a write is committed before it is answered: the
      // write itself fails.
      const cat = new Deno.Command("cat", { args: [s], stdout: "null", stderr: "null" }).spawn();
      try {
        await waitFor(() => {
          try {
            return Deno.readTextFileSync(`/proc/${cat.pid}/wchan`) === "request_wait_answer";
          } catch {
            return false;
          }
        }, "cat blocked in read(2) on the mount");
        const waited = await sh(`dd if=/dev/zero of='${s}' bs=64k count=1 conv=notrunc`);
        assert.equal(waited.code, 1);
        assert.match(waited.stderr, /error writing .*No space left on device/);
      } finally {
        await stop(cat);
      }
      // Room again: nothing committed before was lost, nothing that failed shows.
      Deno.removeSync(`${small}/fill`);
      await run(`echo d > '${s}'`);
      const all = await sh(`timeout 20 head -n 4 '${s}'`);
      assert.equal(all.text, "a\nb\nc\nd\n");
      await stopServer();
      assert.equal(Deno.readTextFileSync(`${data}/g/s`), "a\nb\nc\nd\n");
      const check = await fsbus(["mq", "check", `${data}/g`]);
      assert.equal(check.code, 0, check.text + check.stderr);
    });
  },
});

Deno.test({
  name: "fsbus mq mount (default, written through): a write(2) that fails on a full tmpfs " +
    "fails at once, and closing that file is no end of file for the stream's readers",
  ignore: !HAVE_FUSE || !ROOT,
  async fn() {
    await onSmallTmpfs(false, async ({ small, s }) => {
      await run(`echo a > '${s}'`);
      await sh(`dd if=/dev/zero of='${small}/fill' bs=64k 2>/dev/null`);
      // Opened with truncation (as `>` does), written, refused: the write itself fails.
      const dd = await sh(`dd if=/dev/zero of='${s}' bs=64k count=1`);
      assert.equal(dd.code, 1);
      assert.match(dd.stderr, /No space left on device/);
      Deno.removeSync(`${small}/fill`);
      await run(`echo b > '${s}'`);
      // An end of file after "a" would end this read there.
      const all = await sh(`timeout 20 head -n 2 '${s}'`);
      assert.equal(all.text, "a\nb\n");
    });
  },
});
