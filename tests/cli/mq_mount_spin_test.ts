import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import { collect, fsbus, HAVE_FUSE, sh, stop, tempDir, waitOpened } from "../_helpers.ts";
import { assertEachWriterInOrder, burstWithDirWriter, startMount } from "./_mq_mount.ts";

if (!HAVE_FUSE) console.error("fsbus mq mount --spin-us tests skipped: /dev/fuse is missing");

/** The CPU time a process has used so far (user and system), in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

Deno.test("fsbus mq mount --help: --spin-us is documented; a bad value is a usage error", async () => {
  const r = await fsbus(["mq", "mount", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.text, /--spin-us N\s+While writes come back to back, keep polling/);
  using tmp = tempDir();
  for (const bad of ["abc", "-5", "5000"]) {
    const b = await fsbus(["mq", "mount", tmp.path, `${tmp.path}/mnt`, "--spin-us", bad]);
    assert.equal(b.code, 2, `${bad}: ${b.text}${b.stderr}`);
    assert.match(b.stderr, /--spin-us/);
  }
  assert.equal(mountAt(`${tmp.path}/mnt`), undefined);
});

Deno.test({
  name: "fsbus mq mount --spin-us: a burst through the mount (a shell as fast as it can, and " +
    "fsbus mq write on DIR between its writes) reaches a blocked cat whole and in order; the " +
    "idle mount then uses no CPU",
  ignore: !HAVE_FUSE,
  async fn() {
    using tmp = tempDir();
    const data = `${tmp.path}/data`;
    const mp = `${tmp.path}/fsbt-mqspin-mnt`;
    Deno.mkdirSync(mp);
    const made = await fsbus(["mq", "mkgroup", `${data}/g`]);
    assert.equal(made.code, 0, made.stderr);
    const { server, log } = await startMount(data, mp, ["--spin-us", "200"]);
    try {
      const s = `${mp}/g/s`;
      const touched = await sh(`touch '${s}'`);
      assert.equal(touched.code, 0, touched.stderr);
      const cat = new Deno.Command("cat", { args: [s], stdout: "piped", stderr: "null" }).spawn();
      const out = collect(cat.stdout);
      const n = 2000;
      const k = n / 10;
      try {
        await waitOpened(cat.pid, s);
        await burstWithDirWriter(s, `${data}/g`, "s", n, k);
        const eof = await sh(`: > '${s}'`);
        assert.equal(eof.code, 0, eof.stderr);
        assert.equal((await cat.status).code, 0);
        await out.done;
      } finally {
        await stop(cat);
      }
      const got = out.text().split("\n").slice(0, -1);
      assertEachWriterInOrder(got, n, k);
      assert.equal(Deno.readTextFileSync(`${data}/g/s`), out.text());
      // Idle: the server sleeps in poll(2) (a spin that never stopped would use the whole
      // second: 100 ticks).
      const before = cpuTicks(server.pid);
      await new Promise((r) => setTimeout(r, 1000));
      const used = cpuTicks(server.pid) - before;
      assert.ok(used < 20, `the idle server used ${used} ticks of CPU in a second`);
    } finally {
      await stop(server);
      if (mountAt(mp) !== undefined) {
        await sh(`umount -l '${mp}'`);
        assert.fail(`the server left ${mp} mounted: ${log.text()}`);
      }
    }
    const check = await fsbus(["mq", "check", `${data}/g`]);
    assert.equal(check.code, 0, check.text + check.stderr);
  },
});
