import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import { MqGroup } from "../../transports/mq/mod.ts";
import { mountGroups, type MqMount } from "../../transports/mq/mount.ts";
import { sh, tempDir, waitFor } from "../_helpers.ts";

const HAVE_FUSE = (() => {
  try {
    Deno.statSync("/dev/fuse");
    return Deno.uid() === 0;
  } catch {
    return false;
  }
})();
if (!HAVE_FUSE) console.error("mountGroups tests skipped: they need /dev/fuse and root");

/** Mounts a fresh data directory holding group "g" in this process (all I/O on the mount
 * is done by child processes: the server never touches its own mount). */
async function withMount(fn: (m: MqMount, mp: string) => Promise<void>): Promise<void> {
  using tmp = tempDir();
  MqGroup.create(`${tmp.path}/data/g`).close();
  const mp = `${tmp.path}/fsbt-fuse-mnt`;
  Deno.mkdirSync(mp);
  const m = await mountGroups(`${tmp.path}/data`, mp);
  try {
    await fn(m, mp);
  } finally {
    await m.stop();
    if (mountAt(mp) !== undefined) {
      await sh(`umount -l '${mp}'`);
      assert.fail(`${mp} was left mounted`);
    }
  }
}

Deno.test({
  name: "mountGroups frees the nodes the kernel forgets: create/remove cycles stay bounded",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async (m, mp) => {
      const cycles = await sh(
        `cd '${mp}/g' && for i in $(seq 100); do : > s$i && ls s$i >/dev/null && rm s$i || exit 1; done`,
      );
      assert.equal(cycles.code, 0, cycles.stderr);
      // 100 streams were made and removed; the kernel forgets each removed one.
      await waitFor(() => m.nodeCount() < 20, `a bounded node table (${m.nodeCount()})`);
      const ls = await sh(`ls -i '${mp}/g' && stat -c %i '${mp}/g/ctl'`);
      assert.equal(ls.code, 0, ls.stderr);
      const [listed, stated] = [ls.text.match(/(\d+) ctl/)?.[1], ls.text.trim().split("\n").pop()];
      assert.equal(listed, stated, "readdir and stat give the same inode number");
    });
  },
});
