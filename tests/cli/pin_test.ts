import assert from "node:assert/strict";
import { collect, fsbus, spawnFsbus, tempDir, waitFor } from "../_helpers.ts";

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

function supervisorPid(root: string, id: string): number | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${root}/${id}/.pin.json`)).supervisor;
  } catch {
    return undefined;
  }
}

async function ensureGone(root: string, id: string): Promise<void> {
  const pids = [supervisorPid(root, id), readState(root, id)?.pid].filter(
    (p): p is number => typeof p === "number",
  );
  const alive = (p: number) => {
    try {
      return !/\) Z /.test(Deno.readTextFileSync(`/proc/${p}/stat`));
    } catch {
      return false;
    }
  };
  // The supervisor exits by itself once the command has; give it a moment, then kill.
  try {
    await waitFor(() => pids.every((p) => !alive(p)), "the session's processes to exit", 5000);
  } catch {
    for (const p of pids) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

function readState(root: string, id: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${root}/${id}/.pin.json`));
  } catch {
    return undefined;
  }
}

Deno.test("fsbus pin: a bash session, two attaches at once, a late attach sees all history", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  const created = await fsbus(["pin", "-m", root, "-c", "s1", "bash"]);
  assert.equal(created.code, 0, created.stderr);
  const a1 = attach(root, "s1");
  const a2 = attach(root, "s1");
  try {
    assert.equal((await fsbus(["pin", "-m", root, "-w", "s1", "echo hello from bash"])).code, 0);
    await waitFor(
      () =>
        a1.out.text().includes("hello from bash\n") && a2.out.text().includes("hello from bash\n"),
      "both attaches to show the output",
    );
    // A line typed into one attach goes to the session's input; both see the result.
    const w = a1.child.stdin.getWriter();
    await w.write(new TextEncoder().encode("echo typed $((6 * 7)); echo oops >&2\n"));
    w.releaseLock();
    await waitFor(
      () => a1.out.text().includes("typed 42\n") && a2.out.text().includes("typed 42\n"),
      "typed input to be executed",
    );
    await waitFor(() => a2.out.text().includes("oops\n"), "stderr to show");
    const listed = await fsbus(["pin", "-m", root, "-l"]);
    assert.match(listed.text, /^s1\trunning\t-\tbash\n$/);

    // A late attach sees the whole history, in write order: input, then its output.
    const late = attach(root, "s1");
    try {
      await waitFor(() => late.out.text().includes("oops\n"), "the late attach to catch up");
      assert.equal(
        late.out.text(),
        "echo hello from bash\nhello from bash\n" +
          "echo typed $((6 * 7)); echo oops >&2\ntyped 42\noops\n",
      );
    } finally {
      await stop(late);
    }

    // The command's exit ends every attach and shows in the list.
    assert.equal((await fsbus(["pin", "-m", root, "-w", "s1", "exit 3"])).code, 0);
    assert.equal((await a1.child.status).code, 0);
    assert.equal((await a2.child.status).code, 0);
    assert.match((await fsbus(["pin", "-m", root, "-l"])).text, /^s1\texited\t3\tbash\n$/);
    // Its streams have EOF: reading the output ends.
    const out = await fsbus(["mq", "cat", `${root}/s1`, "1"]);
    assert.equal(out.text, "hello from bash\ntyped 42\n");
  } finally {
    await stop(a1);
    await stop(a2);
    await ensureGone(root, "s1");
  }
});

Deno.test("fsbus pin: an interrupt in note signals the command's process group", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  const script = "trap 'echo interrupted; exit 7' INT; echo ready; while :; do sleep 0.05; done";
  const created = await fsbus(["pin", "-m", root, "-c", "int", "bash", "-c", script]);
  assert.equal(created.code, 0, created.stderr);
  const a = attach(root, "int");
  try {
    await waitFor(() => a.out.text().includes("ready\n"), "the command to start");
    a.child.kill("SIGINT"); // the attach turns Ctrl-C into "interrupt" on note
    await waitFor(() => a.out.text().includes("interrupted\n"), "the command to be interrupted");
    assert.equal((await a.child.status).code, 0);
    await waitFor(
      async () => /^int\texited\t7\t/.test((await fsbus(["pin", "-m", root, "-l"])).text),
      "the exit status to be listed",
    );
  } finally {
    await stop(a);
    await ensureGone(root, "int");
  }
});

Deno.test("fsbus pin: errors are clear", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/pins`;
  const nope = await fsbus(["pin", "-m", root, "-c", "x", "no-such-command-fsbus"]);
  assert.equal(nope.code, 1);
  assert.match(nope.stderr, /Cannot run "no-such-command-fsbus" in session "x": command not found/);
  const missing = await fsbus(["pin", "-m", root, "-a", "ghost"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /No pin session "ghost"/);
  const bad = await fsbus(["pin", "-m", root, "-c", "a/b", "bash"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Invalid session id "a\/b"/);
  assert.equal((await fsbus(["pin", "-m", root, "-c", "y", "true"])).code, 0);
  const again = await fsbus(["pin", "-m", root, "-c", "y", "true"]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /Pin session "y" exists already/);
  await ensureGone(root, "y");
  const none = await fsbus(["pin", "-m", root]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Missing action/);
});
