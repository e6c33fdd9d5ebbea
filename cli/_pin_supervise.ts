/**
 * The process behind a `fsbus pin` session: it runs the command on a pseudo-terminal and
 * pumps stream `0` into the terminal, the terminal's output into stream `1`, and notes into
 * signals and window sizes, until the command exits; then it records how it ended in
 * `.pin.json` and writes EOF to `1` and `2`, which ends every attach.
 *
 * @module
 */

import { MqGroup, type MqReader } from "../transports/mq/mod.ts";
import { read } from "../transports/mq/mod.ts";
import { SysError } from "../sys/errno.ts";
import { closeFd } from "../sys/fs.ts";
import { POLL, Waiter } from "../sys/poll.ts";
import { openPty, readSome, setWindowSize, signalForeground, writeSome } from "../sys/pty.ts";
import { type ExitStatus, spawnOnTerminal, waitExit } from "../sys/spawn.ts";
import { checkRoot, readState, sessionDir, supervisorLock, writeState } from "./_pin_session.ts";

/** After the command exits, how long output from processes it left on the terminal is read. */
const DRAIN_MS = 100;
const SIGINT = 2;

/**
 * Parses a note: `interrupt`, `hangup`, `kill`, or `winsize ROWS COLS`.
 *
 * @param text The note.
 * @returns What it asks, or undefined when it is not understood.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseNote } from "./_pin_supervise.ts";
 * assert.deepEqual(parseNote("winsize 50 132"), { kind: "winsize", rows: 50, cols: 132 });
 * ```
 */
export function parseNote(
  text: string,
):
  | { kind: "interrupt" | "hangup" | "kill" }
  | { kind: "winsize"; rows: number; cols: number }
  | undefined {
  const words = text.trim().split(/\s+/);
  if (words.length === 1) {
    if (words[0] === "interrupt" || words[0] === "hangup" || words[0] === "kill") {
      return { kind: words[0] };
    }
    return undefined;
  }
  if (words.length === 3 && words[0] === "winsize") {
    const rows = Number(words[1]);
    const cols = Number(words[2]);
    const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
    if (ok(rows) && ok(cols)) return { kind: "winsize", rows, cols };
  }
  return undefined;
}

function whyNotStarted(err: unknown): string {
  if (err instanceof SysError) {
    return err.code === "ENOENT" ? "command not found" : err.reason;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs session `id`'s command on a pseudo-terminal and pumps its streams until it exits.
 *
 * @param root The session root.
 * @param id The session's name.
 * @param command The command and its arguments.
 * @returns The supervisor's exit code: 0, or 1 when the command could not start.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { supervise } from "./_pin_supervise.ts";
 * import { readState } from "./_pin_session.ts";
 * import { mq } from "./mq.ts";
 * // What `fsbus pin -c build sh -c "exit 3"` starts in the background: the session is an mq group.
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await mq(["mkgroup", `${root}/build`, "--replay", "all"]);
 * assert.equal(await supervise(root, "build", ["sh", "-c", "exit 3"]), 0);
 * assert.equal(readState(`${root}/build`)?.state, "exited");
 * assert.equal(readState(`${root}/build`)?.code, 3);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function supervise(root: string, id: string, command: string[]): Promise<number> {
  checkRoot(root, false);
  const dir = sessionDir(root, id);
  const g = MqGroup.open(dir);
  const lock = supervisorLock(dir);
  await lock.lock();
  const state = readState(dir) ??
    { id, command, state: "starting" as const, created: new Date().toISOString() };
  const ending = (extra: Partial<typeof state>) => {
    writeState(dir, { ...state, ...extra, supervisor: Deno.pid, ended: new Date().toISOString() });
    g.write("1", new Uint8Array());
    g.write("2", new Uint8Array());
  };

  let pty;
  let pid: number;
  try {
    pty = openPty({ rows: state.rows ?? 24, cols: state.cols ?? 80 });
    const env = Deno.env.toObject();
    env.TERM ??= "xterm-256color";
    try {
      pid = spawnOnTerminal(command, { tty: pty.path, env });
    } catch (err) {
      closeFd(pty.fd);
      throw err;
    }
  } catch (err) {
    ending({ state: "failed", error: whyNotStarted(err) });
    g.close();
    lock.close();
    return 1;
  }
  const master = pty.fd;
  let reaped = false;

  // Readers open before the state says "running", so nothing written after that is missed.
  const input = read(g, ["0"], { replay: "all" });
  const notes = read(g, ["note"], { replay: "off" });
  writeState(dir, { ...state, state: "running", supervisor: Deno.pid, pid });

  const signalSession = (signal: Deno.Signal) => {
    if (reaped) return;
    for (const target of [-pid, pid]) {
      try {
        Deno.kill(target, signal);
      } catch {
        // gone already
      }
    }
  };
  const onTerm = () => signalSession("SIGHUP");
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGHUP", onTerm);

  const readable = new Waiter([master], POLL.IN);
  const writable = new Waiter([master], POLL.OUT);
  let draining = false;

  const pumpOut = (async () => {
    const buf = new Uint8Array(65536);
    for (;;) {
      const r = readSome(master, buf);
      if (r === "closed") return;
      if (typeof r === "number") {
        g.write("1", buf.slice(0, r));
        continue;
      }
      const how = await readable.wait(draining ? DRAIN_MS : -1);
      if (how === "timeout") return;
      if (how === "woken" && readable.closed) return;
    }
  })();

  const pumpIn = (async () => {
    try {
      for await (const batch of input.batches()) {
        for (const m of batch) {
          let data = m.data;
          while (data.length > 0) {
            const n = writeSome(master, data);
            if (n === "closed") return;
            data = data.subarray(n);
            if (data.length > 0 && (await writable.wait(-1)) === "woken") return;
          }
        }
      }
    } catch {
      // the terminal or the group went away
    }
  })();

  const pumpNotes = (async () => {
    try {
      for await (const m of notes) {
        const note = parseNote(new TextDecoder().decode(m.data));
        if (note === undefined) continue;
        try {
          if (note.kind === "interrupt") {
            if (!signalForeground(master, SIGINT)) signalSession("SIGINT");
          } else if (note.kind === "hangup") signalSession("SIGHUP");
          else if (note.kind === "kill") signalSession("SIGKILL");
          else if (note.kind === "winsize") setWindowSize(master, note);
        } catch {
          // the terminal is closing
        }
      }
    } catch {
      // the group went away
    }
  })();

  let status: ExitStatus;
  try {
    status = await waitExit(pid);
  } catch (err) {
    status = { code: 255, signal: null };
    g.write("2", `fsbus pin: ${err instanceof Error ? err.message : err}\n`);
  }
  reaped = true;
  // Read what the command wrote last (and anything its leftovers write for a moment).
  draining = true;
  readable.wake();
  await pumpOut;
  ending({ state: "exited", pid, code: status.code, signal: status.signal });
  Deno.removeSignalListener("SIGTERM", onTerm);
  Deno.removeSignalListener("SIGHUP", onTerm);
  await closeReaders(input, notes);
  await writable.close();
  await Promise.allSettled([pumpIn, pumpNotes]);
  await readable.close();
  closeFd(master); // hangs up whatever still has the terminal open
  g.close();
  lock.close();
  return 0;
}

async function closeReaders(...readers: MqReader[]): Promise<void> {
  await Promise.allSettled(readers.map((r) => r.close()));
}
