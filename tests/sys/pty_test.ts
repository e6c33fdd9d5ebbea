import assert from "node:assert/strict";
import { openPty, readSome, setWindowSize, signalForeground, windowSize } from "../../sys/pty.ts";
import { pollExit, signalName, signalNumber, spawnOnTerminal, waitExit } from "../../sys/spawn.ts";
import { closeFd } from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";
import { POLL, Waiter } from "../../sys/poll.ts";

/** Reads the master until `cond(text)` holds or the terminal closes (with a deadline). */
async function readUntil(fd: number, cond: (text: string) => boolean): Promise<string> {
  const w = new Waiter([fd], POLL.IN);
  const buf = new Uint8Array(65536);
  let text = "";
  const deadline = Date.now() + 20_000;
  try {
    while (!cond(text)) {
      const r = readSome(fd, buf);
      if (r === "closed") break;
      if (typeof r === "number") {
        text += new TextDecoder().decode(buf.subarray(0, r));
        continue;
      }
      if (Date.now() > deadline) throw new Error(`Timed out; read so far: ${text}`);
      await w.wait(1000);
    }
  } finally {
    await w.close();
  }
  return text;
}

Deno.test("spawnOnTerminal() runs the child on the terminal", async (t) => {
  const pty = openPty({ rows: 33, cols: 101 });
  try {
    assert.match(pty.path, /^\/dev\/pts\/\d+$/);
    assert.deepEqual(windowSize(pty.fd), { rows: 33, cols: 101 });
    const script = "read -r _ _ _ _ pgrp sid tty tpgid _ < /proc/self/stat; " +
      'echo "pid=$$ sid=$sid tpgid=$tpgid"; tty; stty size; echo "pipe=[$(trap -p PIPE)]"; exit 3';
    const pid = spawnOnTerminal(["bash", "--norc", "-c", script], { tty: pty.path });
    const exit = waitExit(pid);
    const text = await readUntil(pty.fd, () => false);
    await t.step("and waitExit() reports its exit code", async () => {
      assert.deepEqual(await exit, { code: 3, signal: null });
    });
    await t.step("as the leader of a new session, in the terminal's foreground", () => {
      const m = /pid=(\d+) sid=(\d+) tpgid=(\d+)/.exec(text);
      assert.ok(m, text);
      assert.equal(Number(m[1]), pid);
      assert.equal(Number(m[2]), pid, "a session leader");
      assert.equal(Number(m[3]), pid, "in the terminal's foreground");
    });
    await t.step("with the terminal and its size on standard input and output", () => {
      assert.ok(text.includes(`${pty.path}\r\n`), text);
      assert.ok(text.includes("33 101\r\n"), text);
    });
    await t.step("with SIGPIPE at its default action (Deno ignores it)", () => {
      assert.ok(text.includes("pipe=[]"), text);
    });
  } finally {
    closeFd(pty.fd);
  }
});

Deno.test("setWindowSize() and signalForeground() reach the terminal's foreground job", async (t) => {
  const pty = openPty();
  try {
    const script = "trap 'stty size; exit 5' INT; trap 'echo winch' WINCH; echo ready; " +
      "while :; do sleep 0.05; done";
    const pid = spawnOnTerminal(["bash", "--norc", "-c", script], { tty: pty.path });
    const exit = waitExit(pid);
    await readUntil(pty.fd, (t) => t.includes("ready"));
    await t.step("pollExit() is undefined while the child runs", () => {
      assert.equal(pollExit(pid), undefined);
    });
    await t.step("setWindowSize() sends SIGWINCH", async () => {
      setWindowSize(pty.fd, { rows: 40, cols: 120 });
      await readUntil(pty.fd, (t) => t.includes("winch"));
    });
    await t.step("signalForeground() delivers SIGINT as Ctrl-C would", async () => {
      assert.ok(signalForeground(pty.fd, signalNumber("SIGINT")!));
      const text = await readUntil(pty.fd, (t) => t.includes("40 120"));
      assert.match(text, /40 120\r\n/);
      assert.deepEqual(await exit, { code: 5, signal: null });
    });
  } finally {
    closeFd(pty.fd);
  }
});

Deno.test("spawnOnTerminal() throws ENOENT for a command that does not exist", () => {
  const pty = openPty();
  try {
    assert.throws(
      () => spawnOnTerminal(["fsbus-no-such-command"], { tty: pty.path }),
      (e) => e instanceof SysError && e.code === "ENOENT",
    );
  } finally {
    closeFd(pty.fd);
  }
});

Deno.test("waitExit() reports the signal that killed the child", async () => {
  const pty = openPty();
  try {
    const pid = spawnOnTerminal(["sleep", "100"], { tty: pty.path });
    Deno.kill(pid, "SIGKILL");
    assert.deepEqual(await waitExit(pid), { code: 137, signal: "SIGKILL" });
  } finally {
    closeFd(pty.fd);
  }
});

Deno.test("signalName() and signalNumber() translate Linux signals both ways", () => {
  assert.equal(signalName(1), "SIGHUP");
  assert.equal(signalName(40), "SIG40");
  assert.equal(signalNumber("SIGTERM"), 15);
  assert.equal(signalNumber("SIGNOPE"), undefined);
});
