import assert from "node:assert/strict";
import {
  collect,
  fsbus,
  inotifyWatches,
  sh,
  spawnFsbus,
  stop,
  tempDir,
  waitFor,
} from "../_helpers.ts";

/** The inode numbers a process watches with inotify (from /proc/PID/fdinfo). */
function watchedInodes(pid: number): number[] {
  const inodes: number[] = [];
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`) !== "anon_inode:inotify") continue;
        const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
        for (const m of info.matchAll(/^inotify wd:\S+ ino:([0-9a-f]+)/gm)) {
          inodes.push(parseInt(m[1]!, 16));
        }
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // gone
  }
  return inodes;
}

/** A joined `fsbus messagefs join` node with its output collected. */
async function startJoin(root: string, args: string[]) {
  const child = spawnFsbus(["messagefs", "join", "--root", root, ...args]);
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  await waitFor(() => /joined network|fsbus: Cannot/.test(err.text()), "the node to join", 20_000);
  assert.match(err.text(), /joined network/);
  return { child, out, err };
}

Deno.test("messagefs join takes the shared reader options: lines, --raw, --json, -n, --exec", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/net`;
  Deno.mkdirSync(root, { mode: 0o700 });
  const log = `${tmp.path}/log`;
  const script =
    `printf '%s|%s|%s|' "$FSBUS_FROM" "$FSBUS_GROUP" "$FSBUS_TOPIC" >> ${log}; cat >> ${log}; echo >> ${log}`;
  const lines = await startJoin(root, ["--name", "lines", "--group", "ops", "-n", "2"]);
  const raw = await startJoin(root, ["--name", "raw", "--raw", "-n", "2"]);
  const json = await startJoin(root, ["--name", "json", "--group", "ops", "--json", "-n", "1"]);
  const exec = await startJoin(root, [
    "--name",
    "exec",
    "--group",
    "ops",
    "-n",
    "1",
    "--exec",
    script,
  ]);
  try {
    // A writer: MESSAGE, standard input, --lines.
    let r = await fsbus(["messagefs", "send", "--root", root, "--name", "a", "@ops", "deploying"]);
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["messagefs", "send", "--root", root, "--name", "b", "lines"], {
      stdin: "one\ntwo\n",
    });
    assert.equal(r.code, 0, r.stderr);
    r = await fsbus(["messagefs", "send", "--root", root, "--name", "c", "raw", "--lines"], {
      stdin: "x\ny",
    });
    assert.equal(r.code, 0, r.stderr);

    for (const n of [lines, raw, json, exec]) assert.equal((await n.child.status).code, 0);
    await Promise.all([lines.out.done, raw.out.done, json.out.done, exec.out.done]);
    // One message per line, after its sender; a newline added only where there is none.
    assert.equal(lines.out.text(), "a @/ops: deploying\nb: one\ntwo\n");
    // Exact bytes, nothing added.
    assert.equal(raw.out.text(), "xy");
    const o = JSON.parse(json.out.text().trim().split("\n").find((l) => !l.includes('"event"'))!);
    assert.deepEqual(Object.keys(o), [
      "id",
      "topic",
      "time",
      "size",
      "from",
      "from_id",
      "group",
      "seq",
      "data",
      "encoding",
    ]);
    assert.deepEqual([o.topic, o.from, o.group, o.seq, o.data, o.size], [
      "ops",
      "a",
      "/ops",
      1,
      "deploying",
      9,
    ]);
    assert.match(o.id, /:1$/);
    assert.ok(!Number.isNaN(Date.parse(o.time)));
    assert.equal(exec.out.text(), "");
    assert.equal(Deno.readTextFileSync(log), "a|/ops|ops|deploying\n");
  } finally {
    for (const n of [lines, raw, json, exec]) await stop(n.child);
  }
});

Deno.test("messagefs and bridge: usage errors, suggestions, help order and completions", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/net`;
  Deno.mkdirSync(root, { mode: 0o700 });
  let r = await fsbus(["messagefs", "jion"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown command "jion" for "fsbus messagefs" \(did you mean "join"\?\)/);
  r = await fsbus(["messagefs", "join", "--jsno"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown option "--jsno" .*\(did you mean "--json"\?\)/);
  r = await fsbus(["messagefs", "join", "--raw", "--json", "--root", root]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use "--raw" and "--json" together/);
  r = await fsbus(["messagefs", "send", "--root", root, "bob", "hi", "--lines"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot use "--lines" with a MESSAGE/);
  assert.deepEqual([...Deno.readDirSync(root)], [], "a usage error joins nothing");
  r = await fsbus(["bridge", "dir:/a", "dir:/b", "--stauts", "1s"]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /Unknown option "--stauts" for "fsbus bridge" \(did you mean "--status"\?\)/,
  );

  r = await fsbus(["pin", "--hlep"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown argument "--hlep" for "fsbus pin" \(did you mean "--help"\?\)/);

  r = await fsbus(["help", "messagefs", "join"]);
  assert.equal(r.code, 0);
  const help = r.text.slice(r.text.indexOf("Options:"));
  const at = ["--raw", "--json", "--count", "--exec"].map((o) => help.indexOf(o));
  assert.ok(at.every((i, k) => i > 0 && (k === 0 || i > at[k - 1]!)), `${at}`);
  assert.match(r.text, /Examples:/);
  r = await fsbus(["help", "messagefs", "send"]);
  assert.match(r.text, /--lines/);
  assert.match(r.text, /standard input/);
  assert.match((await fsbus(["help", "bridge"])).text, /Examples:/);

  const bash = await fsbus(["completions", "bash"]);
  Deno.writeTextFileSync(`${tmp.path}/c.bash`, bash.text);
  const complete = async (...words: string[]) => {
    const res = await sh(`source ${tmp.path}/c.bash
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
_fsbus; printf '%s\\n' "\${COMPREPLY[@]}"`);
    assert.equal(res.code, 0, res.stderr);
    return res.text.trim().split("\n").sort();
  };
  assert.deepEqual(await complete("fsbus", "messagefs", "j"), ["join"]);
  assert.deepEqual(await complete("fsbus", "messagefs", "join", "--e"), ["--exec"]);
  assert.deepEqual(await complete("fsbus", "messagefs", "send", "x", "--li"), ["--lines"]);
  assert.deepEqual(await complete("fsbus", "bridge", "--bo"), ["--both"]);
  const fish = await fsbus(["completions", "fish"]);
  assert.match(
    fish.text,
    /__fish_seen_subcommand_from messagefs; and __fish_seen_subcommand_from join' -l exec/,
  );
  assert.match(fish.text, /__fish_seen_subcommand_from bridge' -l both/);
});

Deno.test("submsg follows the root with inotify: a topic made later is opened on its creation", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/rings`;
  const child = spawnFsbus(["submsg", "--root", root, "--prefix", "-n", "2"]);
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  try {
    // The root does not exist yet: its parent is watched, not listed over and over.
    const parent = Deno.statSync(tmp.path).ino!;
    await waitFor(() => watchedInodes(child.pid).includes(parent), "a watch on the parent");
    await waitFor(() => err.text().includes("waiting for one"), "the notice");
    Deno.mkdirSync(root);
    const rootIno = Deno.statSync(root).ino!;
    await waitFor(() => watchedInodes(child.pid).includes(rootIno), "a watch on the root");
    assert.equal(inotifyWatches(child.pid), 1, "the parent's watch is given up");
    assert.equal((await fsbus(["fanout", "create", "a", "--root", root])).code, 0);
    assert.equal((await fsbus(["pubmsg", "a", "--root", root, "hello"])).code, 0);
    await waitFor(() => out.text() === "a: hello\n", "the first topic's line");
    // While it sleeps on a ring, a new topic still wakes it.
    assert.equal((await fsbus(["fanout", "create", "b", "--root", root])).code, 0);
    assert.equal((await fsbus(["pubmsg", "b", "--root", root, "again"])).code, 0);
    assert.equal((await child.status).code, 0, err.text());
    await out.done;
    assert.equal(out.text(), "a: hello\nb: again\n");
  } finally {
    await stop(child);
  }
});

Deno.test("filebus consumer: chunks exactly by default (as the original); -n, --json, --exec", async () => {
  using tmp = tempDir();
  const lossy = `${tmp.path}/stream`;
  // A chunk placed with plain shell: printed exactly, no newline added.
  Deno.writeTextFileSync(lossy, "x");
  let r = await fsbus(["filebus", "--filename", lossy, "consumer", "-n", "1"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.text, "x");
  r = await fsbus(["filebus", "--filename", lossy, "producer", "--json"]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /Cannot use "--json" with "fsbus filebus producer": it is a consumer's option/,
  );

  // A lossless queue of three one-byte chunks: -n 1 takes one and leaves the rest.
  const jobs = `${tmp.path}/jobs`;
  const producer = spawnFsbus([
    "filebus",
    "--lossless",
    "--filename",
    jobs,
    "producer",
    "--block-size",
    "1",
    "--blocking-read",
  ]);
  const w = producer.stdin.getWriter();
  await w.write(new TextEncoder().encode("abc"));
  await w.close();
  try {
    r = await fsbus(["filebus", "--loss", "--filename", jobs, "consumer", "-n", "1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "a");
    r = await fsbus(["filebus", "--loss", "--filename", jobs, "consumer", "--json", "-n", "1"]);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.text);
    assert.deepEqual([o.id, o.topic, o.size, o.data, o.encoding], ["1", jobs, 1, "b", "utf-8"]);
    const script = `cat; printf ' %s\\n' "$FSBUS_ID"`;
    r = await fsbus(["filebus", "--loss", "--filename", jobs, "consumer", "--exec", script]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.text, "c 1\n", "the last chunk, then the EOF marker ends the consumer");
    assert.equal((await producer.status).code, 0);
  } finally {
    await stop(producer);
  }
});
