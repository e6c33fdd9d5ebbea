import assert from "node:assert/strict";
import { type FileSystem, FuseError, mount, mountAt } from "../../sys/fuse/mod.ts";
import { HAVE_FUSE, tempDir } from "../_helpers.ts";

if (!HAVE_FUSE) console.error("fuse tests skipped: /dev/fuse is missing");

async function run(cmd: string, ...args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: out.code,
    text: new TextDecoder().decode(out.stdout),
    err: new TextDecoder().decode(out.stderr),
  };
}

const text = new TextEncoder().encode("hello, world\n");
function helloFs(): FileSystem {
  return {
    lookup(parent, name) {
      if (parent === 1 && name === "hello") {
        return { node: 2, attr: { mode: 0o100444, size: text.length } };
      }
      if (parent === 1 && name === "sub") return { node: 3, attr: { mode: 0o040755 } };
      throw new FuseError(2);
    },
    getattr(node) {
      if (node === 2) return { mode: 0o100444, size: text.length };
      return { mode: 0o040755 };
    },
    readdir(node) {
      if (node !== 1) return [];
      return [{ name: "hello", ino: 2, mode: 0o100444 }, { name: "sub", ino: 3, mode: 0o040755 }];
    },
    read: (_node, _fh, offset, size) => text.subarray(offset, offset + size),
  };
}

Deno.test({
  name: "mount() serves a static tree (ls, stat, cat) and stop() unmounts it",
  ignore: !HAVE_FUSE,
  async fn() {
    using dir = tempDir();
    const mp = `${dir.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    const server = await mount(mp, helloFs(), { fsname: "fsbt-fuse-hello", subtype: "fsbt" });
    try {
      assert.equal(mountAt(mp)?.fstype, "fuse.fsbt");
      const ls = await run("ls", "-1", mp);
      assert.equal(ls.text, "hello\nsub\n");
      const cat = await run("cat", `${mp}/hello`);
      assert.equal(cat.text, "hello, world\n");
      const st = await run("stat", "-c", "%s %F", `${mp}/hello`, `${mp}/sub`);
      assert.equal(st.text, "13 regular file\n0 directory\n");
      const missing = await run("cat", `${mp}/nope`);
      assert.notEqual(missing.code, 0);
      assert.match(missing.err, /No such file or directory/);
    } finally {
      await server.stop();
    }
    assert.equal(mountAt(mp), undefined);
    assert.deepEqual([...Deno.readDirSync(mp)], []);
  },
});

Deno.test({
  name:
    "mount() with useFusermount mounts through fusermount3 (the descriptor passed back over a socket)",
  ignore: !HAVE_FUSE || !(() => {
    try {
      Deno.statSync("/usr/bin/fusermount3");
      return Deno.uid() === 0; // as another user, /dev/fuse may be closed to fusermount3
    } catch {
      return false;
    }
  })(),
  async fn() {
    using dir = tempDir();
    const mp = `${dir.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    const server = await mount(mp, helloFs(), {
      fsname: "fsbt-fuse-hello",
      subtype: "fsbt",
      useFusermount: true,
    });
    try {
      assert.equal(server.connection.method, "fusermount3");
      const cat = await run("cat", `${mp}/hello`);
      assert.equal(cat.text, "hello, world\n");
    } finally {
      await server.stop();
    }
    assert.equal(mountAt(mp), undefined);
  },
});

Deno.test({
  name: "afterReply runs after each reply, before the next request is read; fsync reaches " +
    "the file system, and its error reaches the caller",
  ignore: !HAVE_FUSE,
  async fn() {
    using dir = tempDir();
    const mp = `${dir.path}/fsbt-fuse-mnt`;
    Deno.mkdirSync(mp);
    const events: string[] = [];
    let pending: Uint8Array | undefined;
    const fs: FileSystem = {
      lookup(parent, name) {
        if (parent === 1 && name === "log") return { node: 2, attr: { mode: 0o100644 } };
        throw new FuseError(2);
      },
      getattr: (node) => node === 1 ? { mode: 0o040755 } : { mode: 0o100644 },
      open: () => ({ fh: 7, directIo: true }),
      write(_node, _fh, _offset, data) {
        events.push(`write ${data.length}`);
        pending = data.slice();
        return data.length;
      },
      afterReply() {
        if (pending === undefined) return;
        events.push(`stored ${new TextDecoder().decode(pending)}`);
        pending = undefined;
      },
      flush: () => void events.push("flush"),
      fsync(_node, fh, datasync) {
        events.push(`fsync ${fh} ${datasync}`);
        if (datasync) throw new FuseError(28); // ENOSPC
      },
    };
    const server = await mount(mp, fs, { fsname: "fsbt-fuse-after", subtype: "fsbt" });
    try {
      const py = await run(
        "python3",
        "-c",
        [
          "import os",
          `fd = os.open(${JSON.stringify(`${mp}/log`)}, os.O_WRONLY)`,
          "os.write(fd, b'one')",
          "os.write(fd, b'two')",
          "os.fsync(fd)",
          "try:",
          "    os.fdatasync(fd)",
          "except OSError as e:",
          "    print(e.errno)",
          "os.close(fd)",
        ].join("\n"),
      );
      assert.equal(py.code, 0, py.err);
      assert.equal(py.text, "28\n");
      assert.deepEqual(events, [
        "write 3",
        "stored one",
        "write 3",
        "stored two",
        "fsync 7 false",
        "fsync 7 true",
        "flush",
      ]);
    } finally {
      await server.stop();
    }
  },
});

/** This process's CPU time so far (user and system), in clock ticks. */
function cpuTicks(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}

for (const blockMs of [0, 250]) {
  Deno.test({
    name: `spinUs (blockMs ${blockMs}): back-to-back writes are all served in order, the ` +
      "event loop still turns, and the idle server uses no CPU",
    ignore: !HAVE_FUSE,
    async fn() {
      using dir = tempDir();
      const mp = `${dir.path}/fsbt-fuse-mnt`;
      Deno.mkdirSync(mp);
      const got: number[] = [];
      const fs: FileSystem = {
        lookup(parent, name) {
          if (parent === 1 && name === "log") return { node: 2, attr: { mode: 0o100644 } };
          throw new FuseError(2);
        },
        getattr: (node) => node === 1 ? { mode: 0o040755 } : { mode: 0o100644 },
        open: () => ({ fh: 1, directIo: true }),
        write(_node, _fh, _offset, data) {
          got.push(new DataView(data.buffer, data.byteOffset).getUint32(0, true));
          return data.length;
        },
      };
      const server = await mount(mp, fs, {
        fsname: "fsbt-fuse-spin",
        subtype: "fsbt",
        blockMs,
        spinUs: 200,
      });
      try {
        let turns = 0;
        const timer = setInterval(() => turns++, 1);
        // Fewer with blockMs: a writer that is a child of the serving process is slow to
        // come back then (some 1 ms a write, spin or not; a writer from elsewhere is not).
        const n = blockMs > 0 ? 1000 : 5000;
        const py = run(
          "python3",
          "-c",
          [
            "import os, struct",
            `fd = os.open(${JSON.stringify(`${mp}/log`)}, os.O_WRONLY)`,
            `for i in range(${n}): os.write(fd, struct.pack('<I', i))`,
            "os.close(fd)",
          ].join("\n"),
        );
        const r = await py;
        clearInterval(timer);
        assert.equal(r.code, 0, r.err);
        assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
        assert.ok(turns > 0, "the event loop never turned during the writes");
        // Idle: the server sleeps (a spin that never stopped would use the whole second).
        const before = cpuTicks();
        await new Promise((r) => setTimeout(r, 1000));
        const used = cpuTicks() - before;
        assert.ok(used < 20, `the idle server used ${used} ticks of CPU in a second`);
      } finally {
        await server.stop();
      }
      assert.equal(mountAt(mp), undefined);
    },
  });
}
