/**
 * `fsbus pin -a`: attach to a session. The session's output (streams `1` and `2`: its
 * terminal's output, history first) goes to standard output. From a terminal, the terminal
 * is put in raw mode and every keystroke goes to stream `0` (so Ctrl-C, Ctrl-Z and the
 * arrows reach the session's terminal), the window size follows SIGWINCH, and the detach key
 * leaves; the terminal's settings are restored on every way out. From pipes, each line read
 * goes to `0`, SIGINT writes `interrupt` to `note`, and end of input detaches.
 *
 * @module
 */

import { MqGroup, MqReader } from "../transports/mq/mod.ts";
import { FsbusError } from "../types.ts";
import { warn, writeAll } from "./_output.ts";
import {
  describe,
  markAttached,
  readState,
  sessionDir,
  sessionExists,
  STARTING_MS,
  supervisorLock,
} from "./_pin_session.ts";
import { signalNumber } from "../sys/spawn.ts";

/** The default detach key, Ctrl-\ as dtach's. *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_DETACH, parseDetachKey } from "./_pin_attach.ts";
 * assert.equal(DEFAULT_DETACH, parseDetachKey("^\\")); // Ctrl-\\
 * ```
 */
export const DEFAULT_DETACH = 0x1c;

/**
 * Parses a detach key: `^X` (caret notation, `^?` for DEL), a single character, or `none`.
 *
 * @param text The key as given to `-e`.
 * @returns The byte, or undefined for `none`.
 * @throws {FsbusError} `usage` when it is not a single byte.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDetachKey } from "./_pin_attach.ts";
 * assert.equal(parseDetachKey("^]"), 0x1d);
 * assert.equal(parseDetachKey("none"), undefined);
 * assert.throws(() => parseDetachKey("ctrl-x"), /Cannot use "ctrl-x" as the detach key/);
 * ```
 */
export function parseDetachKey(text: string): number | undefined {
  if (text === "none") return undefined;
  if (text.length === 2 && text[0] === "^") {
    const c = text.charCodeAt(1);
    if (text[1] === "?") return 0x7f;
    const up = c >= 0x61 && c <= 0x7a ? c - 0x20 : c;
    if (up >= 0x40 && up <= 0x5f) return up ^ 0x40;
  }
  if (text.length === 1 && text.charCodeAt(0) < 0x80) return text.charCodeAt(0);
  throw new FsbusError(
    "usage",
    `Cannot use "${text}" as the detach key: give ^X (caret notation), one ASCII character, or none`,
  );
}

type Outcome =
  | { kind: "ended" }
  | { kind: "error"; error: unknown }
  | { kind: "detached" }
  | { kind: "lost" }
  | { kind: "signal"; signal: Deno.Signal };

/**
 * Attaches to session `id` until it ends, the user detaches, or a signal.
 *
 * @param root The session root.
 * @param id The session's name.
 * @param detachKey The detach key's byte, or undefined for none.
 * @returns The exit code: the command's status when it ended (128 + the signal when killed),
 *   0 after a detach, 1 when the session was lost.
 *
 * @example
 * ```ts ignore
 * import { attach } from "./_pin_attach.ts";
 * Deno.exit(await attach("/run/user/1000/fsbus-pin", "build", 0x1c));
 * ```
 */
export async function attach(
  root: string,
  id: string,
  detachKey: number | undefined,
): Promise<number> {
  const dir = sessionDir(root, id);
  if (!sessionExists(dir) || readState(dir) === undefined) {
    throw new FsbusError(
      "not_found",
      `Cannot find pin session "${id}" in "${root}": no such session`,
    );
  }
  const g = MqGroup.open(dir);
  const unmark = markAttached(dir);
  const reader = MqReader.open(g, ["1", "2"], { replay: "all" });
  const tty = Deno.stdin.isTerminal();
  let resolve!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (resolve = r));
  let finished = false;
  const finish = (o: Outcome) => {
    if (finished) return;
    finished = true;
    resolve(o);
  };
  const note = (text: string) => {
    try {
      g.write("note", text);
    } catch {
      // the session is going away
    }
  };
  const sendSize = () => {
    try {
      const { rows, columns } = Deno.consoleSize();
      if (rows > 0 && columns > 0) note(`winsize ${rows} ${columns}`);
    } catch {
      // not a terminal after all
    }
  };

  const listeners: [Deno.Signal, () => void][] = [
    ["SIGTERM", () => finish({ kind: "signal", signal: "SIGTERM" })],
    ["SIGHUP", () => finish({ kind: "signal", signal: "SIGHUP" })],
    ["SIGINT", () => note("interrupt")],
  ];
  if (tty) listeners.push(["SIGWINCH", sendSize]);
  let raw = false;
  let atLineStart = true;
  /** The last message shown, and (at end of piped input) the last one to show. */
  let shown = -1;
  let detachAfter = Infinity;
  try {
    for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
    if (tty) {
      Deno.stdin.setRaw(true);
      raw = true;
      if (!describe(dir, readState(dir)!).ended) sendSize();
    }

    // The session's output, history first; ends at EOF of both streams.
    const output = (async () => {
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
        if (total > 0) atLineStart = buf[total - 1] === 10;
        shown = batch[batch.length - 1]?.seq ?? shown;
        if (shown >= detachAfter) finish({ kind: "detached" });
      }
    })();
    output.then(() => finish({ kind: "ended" }), (error) => finish({ kind: "error", error }));

    // Keystrokes, or lines, to stream 0.
    (async () => {
      try {
        if (tty) {
          await forwardKeys(g, detachKey, () => finished);
          finish({ kind: "detached" });
        } else {
          await forwardLines(g, () => finished);
          // End of input detaches, once the output written so far has been shown.
          g.refresh();
          detachAfter = Math.max(g.stream("1")?.lastSeq ?? -1, g.stream("2")?.lastSeq ?? -1);
          if (shown >= detachAfter) finish({ kind: "detached" });
        }
      } catch {
        if (!finished) finish({ kind: "detached" });
      }
    })();

    // A supervisor that dies without recording the end releases its lock.
    void watchSupervisor(dir, () => finished, () => finish({ kind: "lost" }));

    const how = await outcome;
    if (how.kind !== "ended") await reader.close();
    if (raw) {
      raw = false;
      restore();
    }
    // In raw mode the cursor may be anywhere on its line.
    if (tty && !(how.kind === "ended" && atLineStart)) writeAll(Deno.stderr, NEWLINE);
    return conclude(id, dir, how, tty);
  } finally {
    if (raw) restore();
    for (const [sig, fn] of listeners) {
      try {
        Deno.removeSignalListener(sig, fn);
      } catch {
        // not added
      }
    }
    unmark();
    await reader.close();
    g.close();
  }
}

function restore(): void {
  try {
    Deno.stdin.setRaw(false);
  } catch {
    // the terminal is gone
  }
}

const NEWLINE = new Uint8Array([10]);

/**
 * Waits (on a worker thread) for the session's supervisor lock: a lock that can be taken
 * while the state still says "running" means the supervisor died without recording the end.
 */
async function watchSupervisor(
  dir: string,
  done: () => boolean,
  lost: () => void,
): Promise<void> {
  // A bridge's mirror of a session on another machine: its state says when it ends.
  if (readState(dir)?.mirror !== undefined) return;
  const lock = supervisorLock(dir);
  try {
    for (;;) {
      await lock.lock();
      if (done()) return;
      const st = readState(dir);
      if (st === undefined || (st.state !== "running" && st.state !== "starting")) return;
      // A new session's supervisor takes the lock a moment after the state is written.
      if (st.state === "running" || Date.now() - Date.parse(st.created) > STARTING_MS) {
        lost();
        return;
      }
      lock.unlock();
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch {
    // the session was removed
  } finally {
    lock.close();
  }
}

function conclude(id: string, dir: string, how: Outcome, tty: boolean): number {
  switch (how.kind) {
    case "detached":
      if (tty) warn(`detached from session "${id}" (still running)`);
      return 0;
    case "signal":
      return 128 + (signalNumber(how.signal) ?? 15);
    case "error":
      throw how.error;
    case "lost":
      warn(`session "${id}" lost: its supervisor ended without recording how it ended`);
      return 1;
    case "ended": {
      const st = readState(dir);
      if (st === undefined) {
        warn(`session "${id}" was removed`);
        return 1;
      }
      warn(`session "${id}" ${describe(dir, st).text}`);
      return st.state === "exited" ? st.code ?? 0 : 1;
    }
  }
}

async function forwardKeys(
  g: MqGroup,
  detachKey: number | undefined,
  done: () => boolean,
): Promise<void> {
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (n === null || done()) return;
    const chunk = buf.subarray(0, n);
    const at = detachKey === undefined ? -1 : chunk.indexOf(detachKey);
    if (at >= 0) {
      if (at > 0) g.write("0", chunk.slice(0, at));
      return;
    }
    g.write("0", chunk.slice());
  }
}

async function forwardLines(g: MqGroup, done: () => boolean): Promise<void> {
  let pending = new Uint8Array(0);
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await Deno.stdin.read(buf);
    if (done()) return;
    if (n === null) break;
    const all = new Uint8Array(pending.length + n);
    all.set(pending);
    all.set(buf.subarray(0, n), pending.length);
    let start = 0;
    for (let i = all.indexOf(10); i >= 0; i = all.indexOf(10, start)) {
      g.write("0", all.slice(start, i + 1));
      start = i + 1;
    }
    pending = all.slice(start);
  }
  if (pending.length > 0) g.write("0", pending);
}
