import assert from "node:assert/strict";
import { type FileSystem, FuseError, mount, mountAt } from "../../sys/fuse/mod.ts";
import { tempDir } from "../_helpers.ts";

const HAVE_FUSE = (() => {
  try {
    Deno.statSync("/dev/fuse");
    return true;
  } catch {
    return false;
  }
})();
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
