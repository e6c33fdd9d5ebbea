/**
 * `fsbus pin`: detachable sessions over mq stream groups, as Plan 9's pin(1).
 *
 * A session is a group with `replay all` and streams `0` (input), `1` (output), `2`
 * (errors) and `note` (`interrupt`). A small supervisor process, started detached from the
 * terminal, runs the command in its own process group and pumps: stream `0` into its
 * standard input, its standard output and error into `1` and `2`, and notes into signals.
 * When the command exits, the supervisor records its status in `.pin.json` and writes EOF
 * to `1` and `2`, which ends every attach.
 *
 * @module
 */

import { MqGroup, MqReader } from "../transports/mq/mod.ts";
import { fromFsError, FsbusError, UsageError } from "../types.ts";
import { out, writeAll } from "./_output.ts";

const HELP = `Usage: fsbus pin [-m DIR] -c ID CMD [ARGS...]
       fsbus pin [-m DIR] -a ID
       fsbus pin [-m DIR] -w ID [TEXT]
       fsbus pin [-m DIR] -l

Detachable sessions over mq stream groups (Plan 9's pin). A session is a group with
replay all and streams 0 (input), 1 (output), 2 (errors) and note.

Options:
  -c ID CMD...  Create session ID running CMD detached: stdin from 0, stdout to 1,
                stderr to 2
  -a ID         Attach: the session's history in write order, then live output; each
                line typed goes to 0; an interrupt (Ctrl-C) writes "interrupt" to note,
                which signals the command's process group. Ends at end of input or when
                the command exits
  -w ID [TEXT]  Write TEXT and a newline (or all of standard input; empty = EOF) to 0
  -l            List sessions with their state and exit status
  -m DIR        Where sessions live (default: $XDG_RUNTIME_DIR/fsbus-pin, else
                /tmp/fsbus-pin-$UID)
  -h, --help    Show this help

Examples:
  fsbus pin -c build bash
  fsbus pin -w build 'make 2>&1 | tail -5'
  fsbus pin -a build
  fsbus pin -l
`;

/** What `.pin.json` records about a session. */
interface SessionState {
  id: string;
  command: string[];
  state: "starting" | "running" | "exited" | "failed";
  created: string;
  supervisor?: number;
  pid?: number;
  code?: number;
  signal?: string | null;
  error?: string;
  ended?: string;
}

const STREAMS = ["0", "1", "2", "note"];

function defaultRoot(): string {
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/fsbus-pin`;
  return `/tmp/fsbus-pin-${Deno.uid() ?? "user"}`;
}

function checkId(id: string): void {
  if (id === "" || id.includes("/") || id.startsWith(".") || /[\0\n]/.test(id)) {
    throw new UsageError(`Invalid session id "${id}": no "/", and not starting with "."`);
  }
}

/**
 * Runs `fsbus pin ...`.
 *
 * @param args The arguments after "pin".
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * import { pin } from "./pin.ts";
 * await pin(["-c", "work", "bash"]);
 * ```
 */
export async function pin(args: string[]): Promise<number> {
  let root: string | undefined;
  let action: "c" | "a" | "w" | "l" | "supervise" | undefined;
  let id: string | undefined;
  const rest: string[] = [];
  let i = 0;
  const need = (flag: string): string => {
    const v = args[++i];
    if (v === undefined) throw new UsageError(`Option "${flag}" of "fsbus pin" needs a value`);
    return v;
  };
  const setAction = (a: NonNullable<typeof action>) => {
    if (action !== undefined) {
      throw new UsageError('Give one of -c, -a, -w or -l to "fsbus pin" (see "fsbus pin --help")');
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
    else if (a === "-c" || a === "-a" || a === "-w") {
      setAction(a.slice(1) as "c" | "a" | "w");
      id = need(a);
      if (a !== "-a") takeRest(); // CMD... or TEXT: everything after the id
    } else if (a === "-l") setAction("l");
    else if (a === "--supervise") {
      setAction("supervise");
      root = need(a);
      id = need(a);
      takeRest();
    } else {
      throw new UsageError(`Unknown argument "${a}" for "fsbus pin" (see "fsbus pin --help")`);
    }
  }
  root ??= defaultRoot();
  if (action === undefined) {
    throw new UsageError('Missing action for "fsbus pin": give -c, -a, -w or -l');
  }
  if (id !== undefined) checkId(id);
  switch (action) {
    case "c":
      if (rest.length === 0) throw new UsageError('Missing command for "fsbus pin -c ID CMD..."');
      return await create(root, id!, rest);
    case "a":
      if (rest.length > 0) throw new UsageError(`Unexpected argument "${rest[0]}" for "-a"`);
      return await attach(root, id!);
    case "w":
      if (rest.length > 1) {
        throw new UsageError('Give TEXT as one argument to "fsbus pin -w ID TEXT" (quote it)');
      }
      return await writeInput(root, id!, rest[0]);
    case "l":
      return list(root);
    case "supervise":
      return await supervise(root, id!, rest);
  }
}

function sessionDir(root: string, id: string): string {
  return `${root}/${id}`;
}

function readState(dir: string): SessionState | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/.pin.json`)) as SessionState;
  } catch {
    return undefined;
  }
}

function writeState(dir: string, state: SessionState): void {
  const tmp = `${dir}/.pin.json.tmp`;
  Deno.writeTextFileSync(tmp, JSON.stringify(state) + "\n");
  Deno.renameSync(tmp, `${dir}/.pin.json`);
}

function openSession(root: string, id: string): MqGroup {
  const dir = sessionDir(root, id);
  try {
    Deno.statSync(`${dir}/ctl`);
  } catch {
    throw new FsbusError("not_found", `No pin session "${id}" in "${root}"`);
  }
  return MqGroup.open(dir);
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

async function create(root: string, id: string, command: string[]): Promise<number> {
  const dir = sessionDir(root, id);
  try {
    Deno.mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  try {
    Deno.statSync(`${dir}/ctl`);
    throw new FsbusError(
      "already_exists",
      `Pin session "${id}" exists already in "${root}" (remove it with: rm -r "${dir}")`,
    );
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const g = MqGroup.create(dir, { replay: "all" });
  try {
    for (const s of STREAMS) Deno.writeFileSync(`${dir}/${s}`, new Uint8Array(), { append: true });
    g.sync();
  } finally {
    g.close();
  }
  writeState(dir, { id, command, state: "starting", created: new Date().toISOString() });
  const [exec, ...pre] = selfCommand();
  const child = new Deno.Command(exec!, {
    args: [...pre, "pin", "--supervise", root, id, "--", ...command],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  // Report a command that cannot start; otherwise return once it runs.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const st = readState(dir);
    if (st?.state === "failed") {
      throw new FsbusError("io", `Cannot run "${command[0]}" in session "${id}": ${st.error}`);
    }
    if (st && st.state !== "starting") return 0;
    if (Date.now() > deadline) {
      throw new FsbusError("io", `Session "${id}" did not start within 30 s`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function supervise(root: string, id: string, command: string[]): Promise<number> {
  const dir = sessionDir(root, id);
  const g = MqGroup.open(dir);
  const state = readState(dir) ??
    { id, command, state: "starting" as const, created: new Date().toISOString() };
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command[0]!, {
      args: command.slice(1),
      cwd: Deno.cwd(),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true, // its own session and process group, so notes can signal the group
    }).spawn();
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "command not found"
      : err instanceof Error
      ? err.message
      : String(err);
    writeState(dir, { ...state, state: "failed", error: why, ended: new Date().toISOString() });
    g.write("1", new Uint8Array());
    g.write("2", new Uint8Array());
    g.close();
    return 1;
  }
  writeState(dir, { ...state, state: "running", supervisor: Deno.pid, pid: child.pid });

  const input = MqReader.open(g, ["0"], { replay: "all" });
  const notes = MqReader.open(g, ["note"], { replay: "off" });
  const pumpIn = (async () => {
    const w = child.stdin.getWriter();
    try {
      for await (const batch of input.batches()) {
        for (const m of batch) await w.write(m.data);
      }
      await w.close();
    } catch {
      // the command closed its input or exited
    }
  })();
  const pumpOut = async (stream: ReadableStream<Uint8Array>, name: string) => {
    for await (const chunk of stream) g.write(name, chunk);
  };
  const pumps = [pumpOut(child.stdout, "1"), pumpOut(child.stderr, "2")];
  const pumpNotes = (async () => {
    for await (const m of notes) {
      const note = new TextDecoder().decode(m.data).trim();
      const signal = note === "interrupt"
        ? "SIGINT"
        : note === "kill"
        ? "SIGKILL"
        : note === "hangup"
        ? "SIGHUP"
        : undefined;
      if (signal === undefined) continue;
      try {
        Deno.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    }
  })();
  const status = await child.status;
  await Promise.allSettled(pumps);
  writeState(dir, {
    ...state,
    state: "exited",
    supervisor: Deno.pid,
    pid: child.pid,
    code: status.code,
    signal: status.signal,
    ended: new Date().toISOString(),
  });
  g.write("1", new Uint8Array());
  g.write("2", new Uint8Array());
  await input.close();
  await notes.close();
  await Promise.allSettled([pumpIn, pumpNotes]);
  g.close();
  return 0;
}

async function attach(root: string, id: string): Promise<number> {
  const g = openSession(root, id);
  const reader = MqReader.open(g, ["0", "1", "2"], { replay: "all", until: ["1", "2"] });
  const onInterrupt = () => {
    try {
      g.write("note", "interrupt");
    } catch {
      // the session is gone
    }
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  let inputDone = false;
  const typing = (async () => {
    let pending = new Uint8Array(0);
    try {
      for await (const chunk of Deno.stdin.readable) {
        const buf = new Uint8Array(pending.length + chunk.length);
        buf.set(pending);
        buf.set(chunk, pending.length);
        let start = 0;
        for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, start)) {
          g.write("0", buf.subarray(start, i + 1));
          start = i + 1;
        }
        pending = buf.slice(start);
      }
      if (pending.length > 0) g.write("0", pending);
    } catch {
      // stdin closed or the group went away
    }
    inputDone = true;
    await reader.close();
  })();
  try {
    for await (const batch of reader.batches()) {
      let total = 0;
      for (const m of batch) total += m.data.length;
      const buf = new Uint8Array(total);
      let off = 0;
      for (const m of batch) {
        buf.set(m.data, off);
        off += m.data.length;
      }
      writeAll(Deno.stdout, buf);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await reader.close();
    if (inputDone) await typing;
    g.close();
  }
  return 0;
}

async function writeInput(root: string, id: string, text: string | undefined): Promise<number> {
  const g = openSession(root, id);
  try {
    if (text !== undefined) {
      g.write("0", text.endsWith("\n") ? text : text + "\n");
    } else {
      g.write("0", new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer()));
    }
  } finally {
    g.close();
  }
  return 0;
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function list(root: string): number {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(root)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return 0;
    throw fromFsError(err, "Cannot list the sessions in", root);
  }
  const rows: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory) continue;
    const st = readState(`${root}/${e.name}`);
    if (st === undefined) continue;
    let state: string = st.state;
    let status = "-";
    if (st.state === "exited") {
      status = st.signal ? st.signal : String(st.code);
    } else if (st.state === "failed") {
      status = st.error ?? "failed";
    } else if (!alive(st.supervisor) && st.state === "running") {
      state = "lost";
    }
    rows.push(`${e.name}\t${state}\t${status}\t${st.command.join(" ")}`);
  }
  if (rows.length > 0) out(rows.join("\n") + "\n");
  return 0;
}
