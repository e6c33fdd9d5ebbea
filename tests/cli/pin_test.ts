import assert from "node:assert/strict";
import { CLI, collect, fsbus, spawnFsbus, tempDir, waitFor } from "../_helpers.ts";
import { alive, ensureGone, readState, sessionProcesses } from "./_pin.ts";

interface Attach {
  child: Deno.ChildProcess;
  out: ReturnType<typeof collect>;
  err: ReturnType<typeof collect>;
}

function attach(root: string, id: string): Attach {
  const child = spawnFsbus(["pin", "-m", root, "-a", id]);
  return { child, out: collect(child.stdout), err: collect(child.stderr) };
}

async function stop(a: Attach): Promise<void> {
  try {
    a.child.kill("SIGKILL");
  } catch {
    // ended
  }
  try {
    await a.child.stdin.close();
  } catch {
    // closed
  }
  await a.child.status;
  await a.out.done;
  await a.err.done;
}

async function pinList(root: string): Promise<string> {
  const r = await fsbus(["pin", "-m", root, "-l"]);
  assert.equal(r.code, 0, r.stderr);
  return r.text;
}

/** The row of session `id` in `pin -l`, as columns split on two or more spaces. */
async function listed(root: string, id: string): Promise<string[] | undefined> {
  const lines = (await pinList(root)).split("\n");
  assert.match(lines[0]!, /^ID +STATE +PID +STARTED +ATTACHED +COMMAND$/);
  const row = lines.find((l) => l.startsWith(`${id} `));
  return row?.split(/ {2,}/);
}

/** Writes input to a piped attach. */
async function type(a: Attach, text: string): Promise<void> {
  const w = a.child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  w.releaseLock();
}

const BASH = ["bash", "--norc", "--noprofile"];
const ENV = { PS1: "inner$ ", HISTFILE: "/dev/null" };

Deno.test("fsbus pin: a bash session on a terminal, piped attaches, history, exit status", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  const created = await fsbus(["pin", "-m", root, "-c", "s1", ...BASH], { env: ENV });
  assert.equal(created.code, 0, created.stderr);
  assert.equal(Deno.statSync(root).mode! & 0o777, 0o700);
  const a1 = attach(root, "s1");
  const a2 = attach(root, "s1");
  try {
    // The shell runs on a terminal: a prompt, and `tty` names a pseudo-terminal.
    await waitFor(() => a1.out.text().includes("inner$ "), "the prompt");
    assert.equal((await fsbus(["pin", "-m", root, "-w", "s1", "tty; echo $((6*7))"])).code, 0);
    await waitFor(
      () => /\n42\r\n/.test(a1.out.text()) && /\n42\r\n/.test(a2.out.text()),
      "both attaches to show the output",
    );
    assert.match(a1.out.text(), /\/dev\/pts\/\d+\r\n/);
    // A line typed into a piped attach goes to the session; both see the result.
    await type(a1, "echo typed $((6 * 7)); echo oops >&2\n");
    await waitFor(
      () => a1.out.text().includes("typed 42\r\n") && a2.out.text().includes("oops\r\n"),
      "typed input to be executed",
    );
    const row = await listed(root, "s1");
    assert.equal(row?.[1], "running");
    assert.equal(row?.[4], "2");
    assert.equal(row?.[5], BASH.join(" "));

    // A late attach sees the whole history.
    const late = attach(root, "s1");
    try {
      await waitFor(() => late.out.text().includes("oops\r\n"), "the late attach to catch up");
      // The shell's next prompt may still be on its way to either attach: wait until they agree.
      await waitFor(() => late.out.text() === a1.out.text(), "both attaches to show the same");
      assert.equal(late.out.text(), a1.out.text());
    } finally {
      await stop(late);
    }

    // A piped attach whose input ends shows the output so far, then detaches.
    const quick = await fsbus(["pin", "-m", root, "-a", "s1"], { stdin: "" });
    assert.equal(quick.code, 0, quick.stderr);
    assert.match(quick.text, /typed 42\r\n(.|\n)*oops\r\n/);
    assert.equal((await listed(root, "s1"))?.[1], "running");

    // The command's exit ends every attach, with its status, and shows in the list.
    await type(a2, "exit 3\n");
    assert.equal((await a1.child.status).code, 3);
    assert.equal((await a2.child.status).code, 3);
    await a1.err.done;
    assert.match(a1.err.text(), /fsbus: session "s1" exited 3\n/);
    assert.equal((await listed(root, "s1"))?.[1], "exited 3");
    // Attaching to an ended session shows its history and how it ended.
    const after = await fsbus(["pin", "-m", root, "-a", "s1"], { stdin: "" });
    assert.equal(after.code, 3);
    assert.equal(after.text, a1.out.text());
    assert.equal(after.stderr, 'fsbus: session "s1" exited 3\n');
    // Its streams have EOF: reading the output ends.
    const out = await fsbus(["mq", "cat", `${root}/s1`, "1"]);
    assert.match(out.text, /typed 42\r\n/);

    // An ended session takes no input, and can be removed.
    const w = await fsbus(["pin", "-m", root, "-w", "s1", "echo late"]);
    assert.equal(w.code, 1);
    assert.match(w.stderr, /Cannot write to pin session "s1": it has ended \(exited 3\)/);
    const k = await fsbus(["pin", "-m", root, "-k", "s1"]);
    assert.equal(k.code, 1);
    assert.match(k.stderr, /it has ended/);
    const r = await fsbus(["pin", "-m", root, "-r", "s1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await listed(root, "s1"), undefined);
  } finally {
    await stop(a1);
    await stop(a2);
    await ensureGone(root, "s1");
  }
});

Deno.test("fsbus pin: an interrupt reaches only the foreground job", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  assert.equal((await fsbus(["pin", "-m", root, "-c", "int", ...BASH], { env: ENV })).code, 0);
  const a = attach(root, "int");
  try {
    await waitFor(() => a.out.text().includes("inner$ "), "the prompt");
    const shell = readState(root, "int")!.pid as number;
    await type(a, "sleep 100\n");
    const sleeping = () => sessionProcesses(shell).find((p) => p.cmd === "sleep 100");
    await waitFor(() => sleeping() !== undefined, "sleep to run");
    a.child.kill("SIGINT"); // a piped attach turns SIGINT into "interrupt" on note
    await waitFor(() => sleeping() === undefined, "sleep to be interrupted");
    assert.ok(alive(shell), "the shell survives the interrupt");
    await type(a, "echo still $((40+2))\n");
    await waitFor(() => a.out.text().includes("still 42"), "the shell to go on");
    assert.equal((await listed(root, "int"))?.[1], "running");
  } finally {
    await stop(a);
    const k = await fsbus(["pin", "-m", root, "-k", "int"]);
    assert.equal(k.code, 0, k.stderr);
    await ensureGone(root, "int");
  }
});

Deno.test("fsbus pin -k: SIGHUP ends a shell; SIGKILL follows when SIGHUP is ignored", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  assert.equal((await fsbus(["pin", "-m", root, "-c", "k1", ...BASH], { env: ENV })).code, 0);
  const stubborn = "trap '' HUP; echo ready; while :; do read -t 1 x; done";
  assert.equal((await fsbus(["pin", "-m", root, "-c", "k2", "bash", "-c", stubborn])).code, 0);
  const a = attach(root, "k1");
  try {
    await waitFor(() => a.out.text().includes("inner$ "), "the prompt");
    const k1 = await fsbus(["pin", "-m", root, "-k", "k1"]);
    assert.equal(k1.code, 0, k1.stderr);
    assert.equal((await a.child.status).code, 128 + 1);
    await a.err.done;
    assert.match(a.err.text(), /session "k1" killed by SIGHUP/);
    assert.equal((await listed(root, "k1"))?.[1], "killed by SIGHUP");

    await waitFor(
      () => Deno.readTextFileSync(`${root}/k2/1`).includes("ready"),
      "the stubborn command to start",
    );
    const k2 = await fsbus(["pin", "-m", root, "-k", "k2"]);
    assert.equal(k2.code, 0, k2.stderr);
    assert.equal((await listed(root, "k2"))?.[1], "killed by SIGKILL");
    assert.equal((await fsbus(["pin", "-m", root, "-r", "k2"])).code, 0);
    assert.equal((await fsbus(["pin", "-m", root, "-r", "k1"])).code, 0);

    // SIGTERM to the supervisor hangs the session up, and the end is still recorded.
    assert.equal((await fsbus(["pin", "-m", root, "-c", "k3", ...BASH], { env: ENV })).code, 0);
    const supervisor = readState(root, "k3")!.supervisor as number;
    Deno.kill(supervisor, "SIGTERM");
    await waitFor(() => !alive(supervisor), "the supervisor to finish");
    assert.equal((await listed(root, "k3"))?.[1], "killed by SIGHUP");
    assert.equal((await fsbus(["pin", "-m", root, "-r", "k3"])).code, 0);
    assert.deepEqual([...Deno.readDirSync(root)], []);
  } finally {
    await stop(a);
    await ensureGone(root, "k1");
    await ensureGone(root, "k2");
    await ensureGone(root, "k3");
  }
});

Deno.test("fsbus pin: errors are clear, and a command that cannot start leaves no session", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  const nope = await fsbus(["pin", "-m", root, "-c", "x", "no-such-command-fsbus"]);
  assert.equal(nope.code, 1);
  assert.match(nope.stderr, /Cannot run "no-such-command-fsbus" in session "x": command not found/);
  assert.deepEqual([...Deno.readDirSync(root)], []);
  assert.equal(await listed(root, "x"), undefined);
  const missing = await fsbus(["pin", "-m", root, "-a", "ghost"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Cannot find pin session "ghost" in ".*": no such session/);
  const bad = await fsbus(["pin", "-m", root, "-c", "a/b", "bash"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Cannot use "a\/b" as a session id/);
  const key = await fsbus(["pin", "-m", root, "-e", "^\u00e9", "-a", "x"]);
  assert.equal(key.code, 2);
  assert.match(key.stderr, /Cannot use ".*" as the detach key/);

  // The name is free again after the failure.
  assert.equal((await fsbus(["pin", "-m", root, "-c", "x", "sleep", "100"])).code, 0);
  try {
    const again = await fsbus(["pin", "-m", root, "-c", "x", "true"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /Cannot create pin session "x" in ".*": it exists already/);
    const busy = await fsbus(["pin", "-m", root, "-r", "x"]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /Cannot remove pin session "x": it is running/);
  } finally {
    assert.equal((await fsbus(["pin", "-m", root, "-k", "x"])).code, 0);
    await ensureGone(root, "x");
  }
  const none = await fsbus(["pin", "-m", root]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Missing action/);
});

Deno.test("fsbus pin: a session whose supervisor dies is lost, and its attach says so", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  assert.equal((await fsbus(["pin", "-m", root, "-c", "c", ...BASH], { env: ENV })).code, 0);
  const a = attach(root, "c");
  try {
    await waitFor(() => a.out.text().includes("inner$ "), "the prompt");
    Deno.kill(readState(root, "c")!.supervisor as number, "SIGKILL");
    assert.equal((await a.child.status).code, 1);
    await a.err.done;
    assert.match(a.err.text(), /session "c" lost/);
    assert.equal((await listed(root, "c"))?.[1], "lost");
    const w = await fsbus(["pin", "-m", root, "-w", "c", "echo hi"]);
    assert.equal(w.code, 1);
    assert.equal((await fsbus(["pin", "-m", root, "-r", "c"])).code, 0);
  } finally {
    await stop(a);
    await ensureGone(root, "c");
  }
});

// --- Session roots that are not the user's alone (issue 8) ---------------------------------

function nobody(script: string): Promise<Deno.CommandOutput> {
  return new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

/** Runs `fsbus pin ARGS` with no XDG_RUNTIME_DIR and TMPDIR=base: the fallback root. */
async function pinFallback(base: string, args: string[]) {
  const env = Deno.env.toObject();
  delete env.XDG_RUNTIME_DIR;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, "pin", ...args],
    env: { ...env, TMPDIR: base, NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "fsbus pin: refuses a fallback session root another user made (no command runs)",
  ignore: Deno.uid() !== 0,
  async fn() {
    using tmp = tempDir("/tmp");
    const base = tmp.path;
    Deno.chmodSync(base, 0o1777);
    const uid = Deno.uid();
    const victim = `${base}/victim`;
    Deno.writeTextFileSync(victim, "secret\n", { mode: 0o600 });
    const planted = `${base}/fsbus-pin-${uid}`;
    // As nobody: a world-writable root with a planted session whose settings are a symlink.
    const made = await nobody(
      `set -e; mkdir -p ${planted}/build/.mq; chmod -R 777 ${planted}; ` +
        `ln -s ${victim} ${planted}/build/.mq/settings; ` +
        `echo 'id > ${base}/pwned' > ${planted}/build/0; chmod 666 ${planted}/build/0`,
    );
    assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));

    for (
      const args of [["-c", "build", "sh"], ["-c", "other", "sh"], ["-a", "build"], [
        "-w",
        "build",
        "id",
      ], ["-l"]]
    ) {
      const r = await pinFallback(base, args);
      assert.equal(r.code, 1, `pin ${args.join(" ")}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(
          `^fsbus: Cannot use session root "${planted}": it is owned by uid 65534 \\(mode 0777\\)`,
        ),
      );
      assert.equal(r.stderr.trim().split("\n").length, 1);
    }
    assert.equal(Deno.readTextFileSync(victim), "secret\n");
    assert.throws(() => Deno.statSync(`${base}/pwned`), Deno.errors.NotFound);
    assert.throws(() => Deno.statSync(`${planted}/other`), Deno.errors.NotFound);

    // The same root, if it were ours but others could write to it: refused too.
    Deno.removeSync(planted, { recursive: true });
    Deno.mkdirSync(planted);
    Deno.chmodSync(planted, 0o777);
    const open = await pinFallback(base, ["-c", "build", "sh"]);
    assert.equal(open.code, 1);
    assert.match(open.stderr, /others can write to it \(mode 0777, owner uid 0\)/);
    // A symlink to a directory of ours is refused as well.
    Deno.removeSync(planted);
    Deno.mkdirSync(`${base}/real`, { mode: 0o700 });
    Deno.symlinkSync(`${base}/real`, planted);
    const link = await pinFallback(base, ["-l"]);
    assert.equal(link.code, 1);
    assert.match(link.stderr, /Cannot use session root ".*": it is a symbolic link/);

    // With nothing there, the fallback root is made, ours and 0700, under TMPDIR.
    Deno.removeSync(planted);
    const ok = await pinFallback(base, ["-c", "fine", "true"]);
    assert.equal(ok.code, 0, ok.stderr);
    const st = Deno.lstatSync(planted);
    assert.ok(st.isDirectory);
    assert.equal(st.uid, uid);
    assert.equal(st.mode! & 0o777, 0o700);
    await ensureGone(planted, "fine");
  },
});
