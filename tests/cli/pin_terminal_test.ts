/**
 * `fsbus pin -a` from a real terminal: tmux runs the attach in a pane, the test types into
 * it with send-keys and reads the screen with capture-pane.
 */
import assert from "node:assert/strict";
import { CLI, fsbus, tempDir, waitFor } from "../_helpers.ts";
import { alive, ensureGone, readState, sessionProcesses } from "./_pin.ts";

/** The tmux server's socket: in the test's temp dir, so nothing is left behind. */
let socket = "";
const BASH = ["bash", "--norc", "--noprofile"];
const ENV = { PS1: "inner$ ", HISTFILE: "/dev/null" };
const WAIT_MS = 20_000;

async function tmux(...args: string[]): Promise<string> {
  const out = await new Deno.Command("tmux", {
    args: ["-S", socket, "-f", "/dev/null", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** The pane's whole text, history included, wrapped lines joined. */
async function screen(target: string): Promise<string[]> {
  return (await tmux("capture-pane", "-p", "-J", "-S", "-", "-t", target)).split("\n");
}

async function until(
  target: string,
  cond: (lines: string[]) => boolean,
  what: string,
): Promise<string[]> {
  let last: string[] = [];
  try {
    await waitFor(async () => cond(last = await screen(target)), what, WAIT_MS);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the screen:\n${last.join("\n")}`);
  }
  return last;
}

/** Types text (literally) into a pane, then Enter. */
async function typeLine(target: string, text: string): Promise<void> {
  await tmux("send-keys", "-t", target, "-l", text);
  await tmux("send-keys", "-t", target, "Enter");
}

/** A file's text once it has been written (it ends with a newline). */
async function written(path: string): Promise<string> {
  let text = "";
  await waitFor(() => {
    try {
      text = Deno.readTextFileSync(path);
    } catch {
      return false;
    }
    return text.endsWith("\n");
  }, `${path} to be written`);
  return text;
}

async function state(root: string, id: string): Promise<string | undefined> {
  const r = await fsbus(["pin", "-m", root, "-l"]);
  assert.equal(r.code, 0, r.stderr);
  const row = r.text.split("\n").find((l) => l.startsWith(`${id} `));
  return row?.split(/ {2,}/)[1];
}

async function create(root: string, id: string): Promise<void> {
  const r = await fsbus(["pin", "-m", root, "-c", id, ...BASH], { env: ENV });
  assert.equal(r.code, 0, r.stderr);
}

const lineIs = (text: string) => (lines: string[]) => lines.some((l) => l.trimEnd() === text);
const count = (lines: string[], text: string) => lines.filter((l) => l.trimEnd() === text).length;
const promptLast = (lines: string[]) =>
  lines.filter((l) => l.trim() !== "").at(-1)?.trimEnd() === "inner$";

Deno.test({
  name: "fsbus pin -a in a terminal: prompt, Ctrl-C, no double echo, resize, detach, " +
    "history, exit status, kill, SIGTERM, a lost session; the terminal is restored",
  ignore: (await new Deno.Command("sh", { args: ["-c", "command -v tmux"] }).output()).code !==
    0,
  async fn() {
    using tmp = tempDir();
    const root = `${tmp.path}/pins`;
    const d = tmp.path;
    socket = `${d}/fsbt-pin-tmux`;
    const fsbusLine = `${Deno.execPath()} run -A --quiet ${CLI} pin -m ${root}`;
    const ids = ["s", "k", "t", "c"];
    try {
      await tmux(
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        "--",
        "env",
        "PS1=outer$ ",
        "NO_COLOR=1",
        ...BASH,
      );
      const w0 = "t:0";
      await until(w0, lineIs("outer$"), "the outer shell's prompt");
      await typeLine(w0, `F="${fsbusLine}"; stty -g > ${d}/before; clear`);

      // --- attach: a prompt, Ctrl-C interrupts only the foreground job -------------------
      await create(root, "s");
      const shell = readState(root, "s")!.pid as number;
      await typeLine(w0, `$F -a s; echo "rc=$?"; stty -g > ${d}/after-detach`);
      await until(w0, (l) => l.some((x) => x.startsWith("inner$")), "the session's prompt");
      await typeLine(w0, "sleep 100");
      const sleeping = () => sessionProcesses(shell).some((p) => p.cmd === "sleep 100");
      await waitFor(sleeping, "sleep to run", WAIT_MS);
      await tmux("send-keys", "-t", w0, "C-c");
      await waitFor(() => !sleeping(), "Ctrl-C to interrupt sleep", WAIT_MS);
      await until(w0, (l) => l.some((x) => x.includes("^C")) && promptLast(l), "a new prompt");
      assert.ok(alive(shell));
      assert.equal(await state(root, "s"), "running");

      // --- typed once, shown once -----------------------------------------------------
      await typeLine(w0, "echo $((6*7))");
      let lines = await until(w0, lineIs("42"), "42");
      lines = await until(w0, promptLast, "the prompt after 42");
      assert.equal(count(lines, "42"), 1);
      assert.equal(count(lines, "inner$ echo $((6*7))"), 1);

      // --- the window size follows the pane -------------------------------------------
      await typeLine(w0, "tput cols");
      await until(w0, lineIs("100"), "tput cols to say 100");
      await tmux("resize-window", "-t", w0, "-x", "120", "-y", "30");
      await typeLine(w0, "tput cols");
      await until(w0, lineIs("120"), "tput cols to say 120 after the resize");

      // --- the detach key leaves the session running; the terminal is restored -----
      await tmux("send-keys", "-t", w0, "C-\\");
      lines = await until(w0, lineIs("rc=0"), "the attach to detach");
      assert.ok(lines.some((l) => l.includes('detached from session "s" (still running)')));
      assert.equal(await state(root, "s"), "running");
      const before = Deno.readTextFileSync(`${d}/before`);
      assert.equal(await written(`${d}/after-detach`), before);

      // --- two attaches: both see the whole history; exit 3 ends both with 3 -----------
      await typeLine(w0, "clear");
      await tmux("clear-history", "-t", w0);
      await until(w0, (l) => !l.some((x) => x.includes("rc=0")), "the pane to clear");
      await typeLine(w0, `$F -a s; echo "rc=$?"; stty -g > ${d}/after-end`);
      await tmux("new-window", "-t", "t:1", "--", "env", "PS1=outer$ ", ...BASH);
      const w1 = "t:1";
      await until(w1, lineIs("outer$"), "the second window's prompt");
      await typeLine(w1, `${fsbusLine} -a s; echo "rc=$?"`);
      for (const w of [w0, w1]) {
        await until(
          w,
          (l) => lineIs("42")(l) && lineIs("120")(l) && promptLast(l),
          `history in ${w}`,
        );
      }
      await typeLine(w0, "exit 3");
      for (const w of [w0, w1]) {
        lines = await until(w, lineIs("rc=3"), `the attach in ${w} to end with 3`);
        assert.ok(lines.some((l) => l.includes('fsbus: session "s" exited 3')));
      }
      assert.equal(await state(root, "s"), "exited 3");
      assert.equal(await written(`${d}/after-end`), before);
      await tmux("kill-window", "-t", w1);

      // --- pin -k ends the session and its attaches ----------------------------------
      await create(root, "k");
      await typeLine(w0, `clear; $F -a k; echo "rc=$?"; stty -g > ${d}/after-kill`);
      await until(w0, promptLast, "the prompt of k");
      const k = await fsbus(["pin", "-m", root, "-k", "k"]);
      assert.equal(k.code, 0, k.stderr);
      lines = await until(w0, lineIs("rc=129"), "the attach to end with 129");
      assert.ok(lines.some((l) => l.includes('session "k" killed by SIGHUP')));
      assert.equal(await written(`${d}/after-kill`), before);

      // --- SIGTERM to an attach (with another detach key) restores the terminal -------
      await create(root, "t");
      await typeLine(
        w0,
        `clear; sh -c 'echo $$ > ${d}/pid; exec $0 "$@"' $F -e '^]' -a t; ` +
          `echo "rc=$?"; stty -g > ${d}/after-term`,
      );
      await until(w0, promptLast, "the prompt of t");
      await tmux("send-keys", "-t", w0, "C-\\"); // not the detach key now: goes to bash
      await typeLine(w0, "echo still here");
      await until(w0, lineIs("still here"), "the session to take the old detach key");
      Deno.kill(Number(Deno.readTextFileSync(`${d}/pid`)), "SIGTERM");
      await until(w0, lineIs("rc=143"), "the attach to end on SIGTERM");
      assert.equal(await written(`${d}/after-term`), before);
      assert.equal(await state(root, "t"), "running");
      await typeLine(w0, `clear; $F -e '^]' -a t; echo "rc=$?"`);
      await until(w0, (l) => lineIs("still here")(l) && promptLast(l), "t's history");
      await tmux("send-keys", "-t", w0, "C-]");
      await until(w0, lineIs("rc=0"), "the attach to detach on ^]");

      // --- a session whose supervisor dies: the attach says so, the terminal is back --
      await create(root, "c");
      await typeLine(w0, `clear; $F -a c; echo "rc=$?"; stty -g > ${d}/after-lost`);
      await until(w0, promptLast, "the prompt of c");
      Deno.kill(readState(root, "c")!.supervisor as number, "SIGKILL");
      lines = await until(w0, lineIs("rc=1"), "the attach to end when the session is lost");
      assert.ok(lines.some((l) => l.includes('session "c" lost')));
      assert.equal(await written(`${d}/after-lost`), before);
    } finally {
      for (const id of ids) {
        if (readState(root, id)?.state === "running") {
          await fsbus(["pin", "-m", root, "-k", id]);
        }
        await ensureGone(root, id);
      }
      await tmux("kill-server").catch(() => {});
    }
  },
});
