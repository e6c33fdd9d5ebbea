/**
 * `fsbus pin`: detachable terminal sessions over mq stream groups, as Plan 9's pin(1), with
 * the terminal behaviour of dtach, abduco and tmux.
 *
 * A session is a group with `replay all` and streams `0` (input), `1` (output), `2` (errors
 * from outside the terminal) and `note` (`interrupt`, `hangup`, `kill`, `winsize ROWS COLS`).
 * A small supervisor process, started detached, runs the command on a pseudo-terminal as
 * the leader of a new session (so a shell has job control and Ctrl-C reaches only its
 * foreground job), pumps `0` into the terminal and the terminal's output into `1`, and turns
 * notes into signals and window sizes. When the command exits, the supervisor records its
 * status in `.pin.json` and writes EOF to `1` and `2`, which ends every attach.
 *
 * @module
 */

import { MqGroup } from "../transports/mq/mod.ts";
import { FsbusError, UsageError } from "../types.ts";
import { resolveMounted } from "./mq_mount.ts";
import { out } from "./_output.ts";
import { closest } from "./_args.ts";
import { attach, DEFAULT_DETACH, parseDetachKey } from "./_pin_attach.ts";
import {
  attachedCount,
  checkRoot,
  defaultRoot,
  describe,
  readState,
  sessionDir,
  sessionExists,
  type SessionState,
  STARTING_MS,
  writeState,
} from "./_pin_session.ts";
import { supervise } from "./_pin_supervise.ts";
import { letGo } from "./_detach.ts";

const HELP = `Usage: fsbus pin [-m DIR] -c ID CMD [ARGS...]
       fsbus pin [-m DIR] [-e KEY] -a ID
       fsbus pin [-m DIR] -w ID [TEXT]
       fsbus pin [-m DIR] -k ID
       fsbus pin [-m DIR] -r ID
       fsbus pin [-m DIR] -l

Detachable terminal sessions over mq stream groups (Plan 9's pin). A session
runs its command on a pseudo-terminal; its group (replay all) has streams 0
(input), 1 (the terminal's output), 2 and note.

Options:
  -c ID CMD...  Create session ID running CMD on a new terminal, detached.
                Fails, and leaves no session, when CMD cannot start
  -a ID         Attach: the session's output, history first, then live. From a
                terminal: raw mode, every key goes to the session (Ctrl-C
                interrupts its foreground job), the window size follows yours,
                the detach key leaves it running. From pipes: each line read
                goes to 0, SIGINT interrupts, end of input detaches. When the
                session ends, says how ("exited 3", "killed by SIGHUP") and
                exits with that status (128+N for signal N)
  -e KEY        Detach key for -a: ^X (caret notation), one character, or none
                (default: ^\\, Ctrl-backslash, as dtach)
  -w ID [TEXT]  Type TEXT and a newline (or all of standard input; empty input
                sends Ctrl-D) into the session
  -k ID         End the session: SIGHUP, then SIGKILL after 3 s
  -r ID         Remove an ended session
  -l            List sessions: ID STATE PID STARTED ATTACHED COMMAND
  -m DIR        Where sessions live (default: $XDG_RUNTIME_DIR/fsbus-pin, else
                \${TMPDIR:-/tmp}/fsbus-pin-$UID). It must be yours and
                writable by no one else, or it is refused
  -h, --help    Show this help

Examples:
  fsbus pin -c build bash
  fsbus pin -a build                 # Ctrl-\\ detaches
  fsbus pin -w build 'make 2>&1 | tail -5'
  fsbus pin -l
  fsbus pin -k build && fsbus pin -r build
`;

const STREAMS = ["0", "1", "2", "note"];
/** How long `pin -k` waits after SIGHUP before SIGKILL. */
const KILL_GRACE_MS = 3000;

function checkId(id: string): void {
  if (id === "" || id.includes("/") || id.startsWith(".") || /[\0\n]/.test(id)) {
    throw new UsageError(`Cannot use "${id}" as a session id: no "/", and not starting with "."`);
  }
}

type Action = "c" | "a" | "w" | "l" | "k" | "r" | "supervise";

/**
 * Runs `fsbus pin ...`.
 *
 * @param args The arguments after "pin".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pin } from "./pin.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * // `pin -c work bash` starts a session, `pin -a work` attaches to it; here, list none.
 * assert.equal(await pin(["-m", root, "-l"]), 0);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function pin(args: string[]): Promise<number> {
  let root: string | undefined;
  let action: Action | undefined;
  let id: string | undefined;
  let detachKey: number | undefined = DEFAULT_DETACH;
  const rest: string[] = [];
  let i = 0;
  const need = (flag: string): string => {
    const v = args[++i];
    if (v === undefined) throw new UsageError(`Missing value for option "${flag}" of "fsbus pin"`);
    return v;
  };
  const setAction = (a: Action) => {
    if (action !== undefined) {
      throw new UsageError(
        'Too many actions for "fsbus pin": give one of -c, -a, -w, -l, -k or -r (see "fsbus pin --help")',
      );
    }
    action = a;
  };
  const takeRest = () => {
    const tail = args.slice(i + 1);
    rest.push(...(tail[0] === "--" ? tail.slice(1) : tail));
    i = args.length;
  };
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-h" || a === "--help") {
      out(HELP);
      return 0;
    } else if (a === "-m") root = need(a);
    else if (a === "-e") detachKey = parseDetachKey(need(a));
    else if (a === "-c" || a === "-w") {
      setAction(a.slice(1) as "c" | "w");
      id = need(a);
      takeRest(); // CMD... or TEXT: everything after the id
    } else if (a === "-a" || a === "-k" || a === "-r") {
      setAction(a.slice(1) as "a" | "k" | "r");
      id = need(a);
    } else if (a === "-l") setAction("l");
    else if (a === "--supervise") {
      setAction("supervise");
      root = need(a);
      id = need(a);
      takeRest();
    } else {
      const near = a.startsWith("--") ? closest(a, ["--help"]) : undefined;
      const hint = near ? `did you mean "${near}"?` : 'see "fsbus pin --help"';
      throw new UsageError(`Unknown argument "${a}" for "fsbus pin" (${hint})`);
    }
  }
  root = root === undefined ? defaultRoot() : resolveMounted(root);
  if (action === undefined) {
    throw new UsageError('Missing action for "fsbus pin": give -c, -a, -w, -l, -k or -r');
  }
  if (id !== undefined) checkId(id);
  switch (action) {
    case "c":
      if (rest.length === 0) throw new UsageError('Missing command for "fsbus pin -c ID CMD..."');
      return await create(root, id!, rest);
    case "a":
      checkRoot(root, false);
      return await attach(root, id!, detachKey);
    case "w":
      if (rest.length > 1) {
        throw new UsageError(
          'Too many arguments for "fsbus pin -w ID TEXT": give TEXT as one argument (quote it)',
        );
      }
      return await writeInput(root, id!, rest[0]);
    case "l":
      return list(root);
    case "k":
      return await kill(root, id!);
    case "r":
      return remove(root, id!);
    case "supervise":
      return await supervise(root, id!, rest);
  }
}

/** A session that must exist: its directory and state. */
function existing(root: string, id: string): { dir: string; st: SessionState } {
  const dir = sessionDir(root, id);
  const st = checkRoot(root, false) && sessionExists(dir) ? readState(dir) : undefined;
  if (st === undefined) {
    throw new FsbusError(
      "not_found",
      `Cannot find pin session "${id}" in "${root}": no such session`,
    );
  }
  return { dir, st };
}

/** The command line that runs this CLI again: a compiled binary, or deno and the script. */
function selfCommand(): string[] {
  const exec = Deno.execPath();
  const base = exec.slice(exec.lastIndexOf("/") + 1);
  if (/^deno(\.exe)?$/.test(base)) {
    return [exec, "run", "-A", "--quiet", new URL("../cli.ts", import.meta.url).href];
  }
  return [exec];
}

function terminalSize(): { rows: number; cols: number } {
  for (const f of [Deno.stdout, Deno.stdin, Deno.stderr]) {
    if (!f.isTerminal()) continue;
    try {
      const { rows, columns } = Deno.consoleSize();
      if (rows > 0 && columns > 0) return { rows, cols: columns };
    } catch {
      // not a terminal after all
    }
  }
  return { rows: 24, cols: 80 };
}

async function create(root: string, id: string, command: string[]): Promise<number> {
  checkRoot(root, true);
  const dir = sessionDir(root, id);
  if (sessionExists(dir)) {
    const st = readState(dir);
    const how = st ? describe(dir, st) : undefined;
    throw new FsbusError(
      "already_exists",
      how?.ended
        ? `Cannot create pin session "${id}" in "${root}": it exists already (${how.text}; remove it with "fsbus pin -r ${id}")`
        : `Cannot create pin session "${id}" in "${root}": it exists already`,
    );
  }
  const g = MqGroup.create(dir, { replay: "all" });
  try {
    for (const s of STREAMS) g.createStream(s);
  } finally {
    g.close();
  }
  writeState(dir, {
    id,
    command,
    state: "starting",
    created: new Date().toISOString(),
    ...terminalSize(),
  });
  const [exec, ...pre] = selfCommand();
  let supervisor: Deno.ChildProcess;
  try {
    supervisor = new Deno.Command(exec!, {
      args: [...pre, "pin", "--supervise", root, id, "--", ...command],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (err) {
    Deno.removeSync(dir, { recursive: true });
    throw err;
  }
  // What the supervisor says on stderr before it runs the command (why it failed to).
  const stderr = supervisor.stderr.getReader();
  const errors = (async () => {
    let text = "";
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await stderr.read();
        if (done) return text;
        text = (text + dec.decode(value, { stream: true })).slice(-4096);
      }
    } catch {
      return text;
    }
  })();
  let exited: Deno.CommandStatus | undefined;
  supervisor.status.then((s) => (exited = s));
  // Report a command that cannot start (and leave no session); otherwise return once it runs.
  const deadline = Date.now() + STARTING_MS;
  try {
    for (;;) {
      const st = readState(dir);
      if (st?.state === "failed") {
        await supervisor.status;
        Deno.removeSync(dir, { recursive: true });
        throw new FsbusError("io", `Cannot run "${command[0]}" in session "${id}": ${st.error}`);
      }
      if (st && st.state !== "starting") return 0;
      if (exited !== undefined || Date.now() > deadline) {
        if (exited === undefined) supervisor.kill("SIGKILL");
        const why = (await errors).trim().split("\n").pop()?.replace(/^fsbus: /, "");
        Deno.removeSync(dir, { recursive: true });
        throw new FsbusError(
          "io",
          `Cannot start session "${id}": ${
            exited === undefined ? "it did not start within 30 s" : why || "its supervisor failed"
          }`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    // The supervisor runs on; stop holding its stderr and status.
    stderr.cancel().catch(() => {});
    letGo(supervisor);
  }
}

async function writeInput(root: string, id: string, text: string | undefined): Promise<number> {
  const { dir, st } = existing(root, id);
  const how = describe(dir, st);
  if (how.ended) {
    throw new FsbusError(
      "closed",
      `Cannot write to pin session "${id}": it has ended (${how.text})`,
    );
  }
  let data: Uint8Array | string;
  if (text !== undefined) {
    data = text.endsWith("\n") ? text : text + "\n";
  } else {
    data = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    // Empty input: end of file for the program reading the terminal (Ctrl-D).
    if (data.length === 0) data = new Uint8Array([4]);
  }
  const g = MqGroup.open(dir);
  try {
    g.write("0", data);
  } finally {
    g.close();
  }
  return 0;
}

async function kill(root: string, id: string): Promise<number> {
  const { dir, st } = existing(root, id);
  const how = describe(dir, st);
  if (how.ended) {
    throw new FsbusError("closed", `Cannot end pin session "${id}": it has ended (${how.text})`);
  }
  const ended = () => {
    const now = readState(dir);
    return now === undefined || (now.state !== "running" && now.state !== "starting");
  };
  const waitEnd = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (!ended() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return ended();
  };
  const g = MqGroup.open(dir);
  try {
    g.write("note", "hangup");
    if (await waitEnd(KILL_GRACE_MS)) return 0;
    g.write("note", "kill");
    if (await waitEnd(10_000)) return 0;
  } finally {
    g.close();
  }
  throw new FsbusError("io", `Cannot end pin session "${id}": it still runs after SIGKILL`);
}

function remove(root: string, id: string): number {
  const { dir, st } = existing(root, id);
  const how = describe(dir, st);
  if (!how.ended) {
    throw new FsbusError(
      "busy",
      `Cannot remove pin session "${id}": it is ${how.text} (end it with "fsbus pin -k ${id}")`,
    );
  }
  Deno.removeSync(dir, { recursive: true });
  return 0;
}

function started(iso: string): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "-";
  return t.toISOString().slice(0, 19).replace("T", " ");
}

function list(root: string): number {
  const rows: string[][] = [["ID", "STATE", "PID", "STARTED", "ATTACHED", "COMMAND"]];
  if (checkRoot(root, false)) {
    const names = [...Deno.readDirSync(root)].filter((e) => e.isDirectory).map((e) => e.name);
    for (const name of names.sort()) {
      const dir = sessionDir(root, name);
      const st = readState(dir);
      if (st === undefined) continue;
      const how = describe(dir, st);
      rows.push([
        name,
        how.text.startsWith("failed") ? "failed" : how.text,
        st.pid === undefined ? "-" : String(st.pid),
        started(st.created),
        String(attachedCount(dir)),
        st.command.join(" "),
      ]);
    }
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  out(
    rows.map((r) =>
      r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")
    ).join("\n") + "\n",
  );
  return 0;
}
