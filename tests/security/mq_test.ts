/**
 * mq groups attacked by a second user (uid 65534 through setpriv): a reader with read
 * permission only, and a member of a shared group (a Unix group made by the test, named
 * `fsbt-mq-...`) who plants symbolic links, FIFOs and damage for root to trip on.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fsbus, runnableByOthers, sh, tempDir } from "../_helpers.ts";

const isRoot = Deno.uid() === 0;

/** A Unix group made for the test, removed when disposed. */
async function unixGroup(): Promise<{ name: string; gid: number } & AsyncDisposable> {
  const name = `fsbt-mq-${Deno.pid}-${Math.floor(Math.random() * 1e6)}`;
  const r = await sh(`groupadd ${name} && getent group ${name}`);
  assert.equal(r.code, 0, r.stderr);
  const gid = Number(r.text.split(":")[2]);
  return {
    name,
    gid,
    async [Symbol.asyncDispose]() {
      await sh(`groupdel ${name}`);
    },
  };
}

/** Runs a shell line as uid/gid 65534, with supplementary groups `groups`. */
function asOther(
  denoDir: string,
  line: string,
  groups: number[] = [],
): ReturnType<typeof sh> {
  const { deno, cli } = runnableByOthers();
  const who = groups.length > 0 ? `--groups ${groups.join(",")}` : "--clear-groups";
  const fsbusCmd = `"${deno}" run -A --quiet "${cli}"`;
  return sh(
    `exec setpriv --reuid 65534 --regid 65534 ${who} bash -c ${JSON.stringify(line)}`,
    {
      env: {
        DENO_DIR: denoDir,
        HOME: denoDir,
        NO_COLOR: "1",
        PATH: Deno.env.get("PATH") ?? "",
        FSBUS: fsbusCmd,
      },
    },
  );
}

function sameBytes(a: string, b: string): boolean {
  const x = Deno.readFileSync(a);
  const y = Deno.readFileSync(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

Deno.test({
  name: "mq: a user who may only read a group reads and cats it, and cannot change it",
  ignore: !isRoot,
  fn: async () => {
    using tmp = tempDir();
    using denoDir = tempDir();
    Deno.chmodSync(tmp.path, 0o755);
    Deno.chmodSync(denoDir.path, 0o777);
    const g = `${tmp.path}/g`;
    assert.equal((await fsbus(["mq", "mkgroup", g, "--mode", "0755"])).code, 0);
    await fsbus(["mq", "write", g, "a", "one\n"]);
    await fsbus(["mq", "write", g, "b", "two\n"]);
    await fsbus(["mq", "write", g, "a"], { stdin: "" });
    await fsbus(["mq", "write", g, "b"], { stdin: "" });
    const index = Deno.readFileSync(`${g}/.mq/index`);
    let r = await asOther(denoDir.path, `$FSBUS mq read ${g} a --replay all`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "one\n");
    r = await asOther(denoDir.path, `$FSBUS mq cat ${g} a b`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "one\ntwo\n");
    r = await asOther(denoDir.path, `$FSBUS mq write ${g} a evil`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^fsbus: Cannot change group ".*": opened for reading only/);
    r = await asOther(denoDir.path, `$FSBUS mq ctl ${g} replay all`);
    assert.equal(r.code, 1);
    assert.deepEqual(Deno.readFileSync(`${g}/.mq/index`), index);
    assert.equal(Deno.readTextFileSync(`${g}/ctl`), "data message\nreplay off\n");
  },
});

Deno.test({
  name:
    "mq: a member of a shared group cannot make root follow links, hang on FIFOs, or read forged data",
  ignore: !isRoot,
  fn: async () => {
    await using grp = await unixGroup();
    using tmp = tempDir();
    using denoDir = tempDir();
    Deno.chmodSync(tmp.path, 0o755);
    Deno.chmodSync(denoDir.path, 0o777);
    const g = `${tmp.path}/g`;
    const secret = `${tmp.path}/secret`;
    Deno.writeTextFileSync(secret, "root only\n");
    Deno.chmodSync(secret, 0o600);
    const copy = `${tmp.path}/secret.orig`;
    Deno.copyFileSync(secret, copy);
    let r = await fsbus(["mq", "mkgroup", g, "--group", grp.name, "--replay", "all"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Deno.statSync(g).mode! & 0o7777, 0o2770);
    await fsbus(["mq", "write", g, "s", "hello\n"]);
    // The member takes part as any member may...
    r = await asOther(denoDir.path, `$FSBUS mq write ${g} s member`, [grp.gid]);
    assert.equal(r.code, 0, r.stderr);
    // ...then plants links to root's secret and FIFOs where root's fsbus looks.
    r = await asOther(
      denoDir.path,
      [
        `cd ${g}`,
        `rm -f .mq/settings && ln -s ${secret} .mq/settings`,
        `ln -s ${secret} .mq/rejected`,
        `ln -s ${secret} link`,
        `mkfifo fifo`,
      ].join(" && "),
      [grp.gid],
    );
    assert.equal(r.code, 0, r.stderr);
    r = await sh(
      `timeout 20 ${Deno.execPath()} run -A --quiet ${runnableByOthers().cli} ` +
        `mq ctl ${g} depth 100`,
    );
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["mq", "write", g, "link", "into the secret?"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot write to stream ".*\/link": is a symbolic link/);
    r = await sh(
      `timeout 20 ${Deno.execPath()} run -A --quiet ${runnableByOthers().cli} ` +
        `mq write ${g} fifo x`,
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /fifo": not a regular file/);
    r = await fsbus(["mq", "read", g, "s", "-n", "2", "--raw"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "hello\nmember");
    assert.ok(sameBytes(secret, copy), "the secret was changed");
    assert.ok(Deno.lstatSync(`${g}/.mq/settings`).isFile);
    // A checkpoint that is a link is damage, said so; never followed.
    r = await asOther(denoDir.path, `ln -s ${secret} ${g}/.mq/checkpoint`, [grp.gid]);
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["mq", "read", g, "s", "-n", "1"]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /".mq\/checkpoint" is damaged \(.*is a symbolic link \(not followed\)\)/,
    );
    assert.ok(sameBytes(secret, copy), "the secret was changed");
    await asOther(denoDir.path, `rm ${g}/.mq/checkpoint`, [grp.gid]);
    assert.equal(
      Deno.readTextFileSync(`${g}/.mq/settings`),
      "data message\nreplay all\ndepth 100\n",
    );
    // Forged or damaged index records: root's reader fails clearly, never delivers them.
    r = await asOther(
      denoDir.path,
      `printf 'forged' | dd of=${g}/.mq/index bs=1 seek=$((4096 + 16)) conv=notrunc 2>/dev/null`,
      [grp.gid],
    );
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["mq", "read", g, "s", "-n", "2"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /".mq\/index" record 0 is damaged \(checksum mismatch\)/);
    assert.equal(r.text, "");
    // Emptying .mq/streams does not make root deliver a message twice.
    r = await asOther(denoDir.path, `: > ${g}/.mq/streams`, [grp.gid]);
    r = await fsbus(["mq", "read", g, "s", "-n", "1"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is damaged/);
  },
});

Deno.test({
  name: "mq: a group any user may write is refused, and a read-only member cannot write",
  ignore: !isRoot,
  fn: async () => {
    await using grp = await unixGroup();
    using tmp = tempDir();
    using denoDir = tempDir();
    Deno.chmodSync(tmp.path, 0o755);
    Deno.chmodSync(denoDir.path, 0o777);
    const open = `${tmp.path}/open`;
    assert.equal((await fsbus(["mq", "mkgroup", open])).code, 0);
    Deno.chmodSync(open, 0o777);
    let r = await fsbus(["mq", "write", open, "s", "x"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Cannot open group ".*": ".*" is writable by every user \(mode 0777\)/);
    const ro = `${tmp.path}/ro`;
    r = await fsbus(["mq", "mkgroup", ro, "--group", grp.name, "--mode", "2750"]);
    assert.equal(r.code, 0, r.stderr);
    await fsbus(["mq", "write", ro, "news", "read me\n"]);
    r = await asOther(denoDir.path, `$FSBUS mq read ${ro} news --replay all -n 1`, [grp.gid]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "read me\n");
    r = await asOther(denoDir.path, `$FSBUS mq write ${ro} news forged`, [grp.gid]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /opened for reading only/);
    r = await asOther(denoDir.path, `$FSBUS mq read ${ro} news --replay all -n 1`);
    assert.equal(r.code, 1); // not a member: no access at all
    assert.match(r.stderr, /permission denied/);
  },
});
