/**
 * `fsbus init`, `gc` and `pub` on a bus's settings and retention: re-running init changes only
 * what is named, publishers sweep, and failed commands leave nothing behind.
 *
 * @module
 */

import assert from "node:assert/strict";
import { newId } from "../../transports/msgfs/names.ts";
import { fsbus, sh, tempDir } from "../_helpers.ts";

const settings = (bus: string) => JSON.parse(Deno.readTextFileSync(`${bus}/.fsbus.json`));
const mode = (path: string) => Deno.statSync(path).mode! & 0o7777;

Deno.test("re-running fsbus init changes only what is named: --ttl keeps mode and group, --shared keeps the TTL", async () => {
  const group = `fsbt-msgfs-${Deno.pid}-${Math.floor(Math.random() * 1e6)}`;
  assert.equal((await sh(`groupadd ${group}`)).code, 0);
  try {
    using dir = tempDir();
    const bus = `${dir.path}/bus`;
    let r = await fsbus(["init", bus, "--group", group, "--ttl", "10m"]);
    assert.equal(r.code, 0, r.stderr);
    const gid = Deno.statSync(bus).gid;
    assert.notEqual(gid, 0);
    assert.equal(mode(bus), 0o3770);
    r = await fsbus(["init", bus, "--ttl", "5m"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(bus), 0o3770, "--ttl kept the mode");
    assert.equal(Deno.statSync(bus).gid, gid, "--ttl kept the group");
    assert.deepEqual(settings(bus), { ttl_ms: 300_000 });
    assert.equal(mode(`${bus}/.fsbus.json`), 0o640);
    r = await fsbus(["init", bus]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(bus), 0o3770);
    assert.deepEqual(settings(bus), { ttl_ms: 300_000 });

    const other = `${dir.path}/other`;
    r = await fsbus(["init", other, "--ttl", "10m"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(other), 0o700);
    r = await fsbus(["init", other, "--shared"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(other), 0o3770);
    assert.deepEqual(settings(other), { ttl_ms: 600_000 }, "--shared kept the TTL");
    assert.equal(mode(`${other}/.fsbus.json`), 0o640, "members may read the settings");
    r = await fsbus(["init", other, "--private"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(other), 0o700);
    assert.deepEqual(settings(other), { ttl_ms: 600_000 });
    assert.equal(mode(`${other}/.fsbus.json`), 0o600);
    r = await fsbus(["init", other, "--private", "--shared"]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'fsbus: Cannot use "--private" together with "--shared" (or "--group"): choose one\n',
    );
  } finally {
    await sh(`groupdel ${group}`);
  }
});

Deno.test("fsbus pub sweeps expired messages before it exits, as the sweep marker says", async () => {
  using dir = tempDir();
  const bus = `${dir.path}/bus`;
  assert.equal((await fsbus(["init", bus, "--ttl", "2s"])).code, 0);
  const old = [newId(Date.now() - 10_000), newId(Date.now() - 9_000)];
  for (const id of old) Deno.writeTextFileSync(`${bus}/${id}`, "expired");
  Deno.writeTextFileSync(`${bus}/shell-old`, "expired too");
  const past = new Date(Date.now() - 10_000);
  Deno.utimeSync(`${bus}/shell-old`, past, past);
  const r = await fsbus(["pub", bus, "fresh"]);
  assert.equal(r.code, 0, r.stderr);
  const left = [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith("."));
  assert.equal(left.length, 1, `left: ${left}`);
  assert.equal(Deno.readTextFileSync(`${bus}/${left[0]}`), "fresh");
  assert.ok(Deno.statSync(`${bus}/.fsbus-gc`).isDirectory);
});

Deno.test("failed commands leave nothing behind: init with an unknown group, wildcard topics", async () => {
  using dir = tempDir();
  let r = await fsbus(["init", `${dir.path}/a/b/bus`, "--group", "fsbt-msgfs-no-such-group"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'fsbus: Cannot find group "fsbt-msgfs-no-such-group": no such group\n');
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);

  const bus = `${dir.path}/bus`;
  assert.equal((await fsbus(["init", bus])).code, 0);
  for (const topic of ["sensors/+", "sensors/#", "*"]) {
    r = await fsbus(["sub", bus, "--topic", topic]);
    assert.equal(r.code, 1, topic);
    const seg = topic.split("/").at(-1);
    assert.equal(
      r.stderr,
      `fsbus: Cannot use "${topic}" as a topic: "${seg}" is not a wildcard (topics are directories: ` +
        "subscribe recursively to the topic above instead)\n",
    );
    r = await fsbus(["pub", bus, "--topic", topic, "x"]);
    assert.equal(r.code, 1, topic);
  }
  const left = [...Deno.readDirSync(bus)].map((e) => e.name).filter((n) => !n.startsWith("."));
  assert.deepEqual(left, [], "no topic directory was made");
});
