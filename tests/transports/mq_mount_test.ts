import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import { MqGroup } from "../../transports/mq/mod.ts";
import { mountGroups, type MqMount } from "../../transports/mq/mount.ts";
import { HAVE_FUSE as HAVE_DEV_FUSE, sh, tempDir, waitFor } from "../_helpers.ts";

const HAVE_FUSE = HAVE_DEV_FUSE && Deno.uid() === 0;
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

/** Waits on a stream with select, poll and epoll in turn (python3), printing what it saw. */
const POLLER = `
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
r, _, _ = select.select([fd], [], [], 0)
print("select-now", len(r), flush=True)
r, _, _ = select.select([fd], [], [], 30)
print("select", len(r), os.read(fd, 100).decode().strip(), flush=True)
p = select.poll(); p.register(fd, select.POLLIN)
print("poll-now", len(p.poll(0)), flush=True)
print("poll", len(p.poll(30000)), os.read(fd, 100).decode().strip(), flush=True)
e = select.epoll(); e.register(fd, select.EPOLLIN)
print("epoll-now", len(e.poll(0)), flush=True)
print("epoll", len(e.poll(30)), os.read(fd, 100).decode().strip(), flush=True)
print("eof", len(p.poll(30000)), len(os.read(fd, 100)), flush=True)
`;

Deno.test({
  name: "mountGroups: select, poll and epoll on a stream wait for the next message, and EOF",
  ignore: !HAVE_FUSE,
  async fn() {
    await withMount(async (_m, mp) => {
      const s = `${mp}/g/s`;
      const made = await sh(`: > '${s}'`);
      assert.equal(made.code, 0, made.stderr);
      const child = new Deno.Command("python3", {
        args: ["-c", POLLER, s],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      const expect = async (line: string) => {
        const deadline = Date.now() + 20_000;
        while (!seen.includes(`${line}\n`)) {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const late = new Promise<never>((_, fail) => {
            timer = setTimeout(
              () => fail(new Error(`no "${line}" from the poller; saw:\n${seen}`)),
              Math.max(0, deadline - Date.now()),
            );
          });
          try {
            const { value, done } = await Promise.race([reader.read(), late]);
            if (done) assert.fail(`poller ended; saw:\n${seen}`);
            seen += value;
          } finally {
            clearTimeout(timer);
          }
        }
      };
      let ok = false;
      try {
        await expect("select-now 0"); // nothing yet: not readable
        await sh(`echo one > '${s}'`);
        await expect("select 1 one");
        await expect("poll-now 0");
        await sh(`echo two > '${s}'`);
        await expect("poll 1 two");
        await expect("epoll-now 0");
        await sh(`echo three > '${s}'`);
        await expect("epoll 1 three");
        await sh(`: > '${s}'`); // end of file: readable, read returns nothing
        await expect("eof 1 0");
        ok = true;
      } finally {
        if (!ok) child.kill("SIGKILL");
        await reader.cancel();
        const err = await new Response(child.stderr).text();
        const st = await child.status;
        if (ok) assert.equal(st.code, 0, err);
      }
    });
  },
});
