/**
 * What `fsbus pin` keeps about its sessions: the session root (checked to be the user's
 * alone), one directory per session (an mq group), its state file `.pin.json`, the
 * supervisor's lock `.pin.lock` and the attach markers in `.pin-attach/`.
 *
 * @module
 */

import { FsbusError } from "../types.ts";
import { closeFd, fstat, O, openFd, readJsonFile, statPath, writeAllFd } from "../sys/fs.ts";
import { SysError } from "../sys/errno.ts";
import { FileLock } from "../sys/flock.ts";

/** What `.pin.json` records about a session. *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { SessionState } from "./_pin_session.ts";
 * const st: SessionState = { id: "b", command: ["bash"], state: "running", created: "" };
 * assert.equal(st.state, "running");
 * ```
 */
export interface SessionState {
  /** The session's name. */
  id: string;
  /** The command and its arguments. */
  command: string[];
  /** Where it is: starting, running, exited (see code and signal), or failed to start. */
  state: "starting" | "running" | "exited" | "failed";
  /** When it was created (ISO 8601). */
  created: string;
  /** The initial window size. */
  rows?: number;
  /** The initial window size. */
  cols?: number;
  /** The supervisor's process id. */
  supervisor?: number;
  /** The command's process id. */
  pid?: number;
  /** Its exit code (128 + the signal's number when a signal killed it). */
  code?: number;
  /** The signal that killed it, if one did. */
  signal?: string | null;
  /** Why it could not start. */
  error?: string;
  /** When it ended (ISO 8601). */
  ended?: string;
  /**
   * Set by a bridge that mirrors a session running on another machine (that machine's host
   * name): its supervisor is not here, so the state alone says whether it runs.
   */
  mirror?: string;
}

const STATE_FILE = ".pin.json";
const LOCK_FILE = ".pin.lock";
const ATTACH_DIR = ".pin-attach";
const STATE_LIMIT = 1 << 20;
/** How long a session may take to start before it counts as lost. *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STARTING_MS } from "./_pin_session.ts";
 * assert.equal(STARTING_MS, 30_000);
 * ```
 */
export const STARTING_MS = 30_000;

/**
 * The default session root: `$XDG_RUNTIME_DIR/fsbus-pin`, else `$TMPDIR/fsbus-pin-UID`
 * (`/tmp` when TMPDIR is not set).
 *
 * @returns The path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultRoot } from "./_pin_session.ts";
 * const xdg = Deno.env.get("XDG_RUNTIME_DIR");
 * if (xdg) assert.equal(defaultRoot(), `${xdg}/fsbus-pin`);
 * else assert.match(defaultRoot(), /\/fsbus-pin-\d+$/);
 * ```
 */
export function defaultRoot(): string {
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/fsbus-pin`;
  const tmp = (Deno.env.get("TMPDIR") || "/tmp").replace(/\/+$/, "") || "/";
  return `${tmp === "/" ? "" : tmp}/fsbus-pin-${Deno.uid() ?? "user"}`;
}

function modeText(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, "0")}`;
}

/**
 * Checks (and with `create`, makes, mode 0700) a session root: a real directory, not a
 * symbolic link, owned by the user and writable by no one else. A root another user made or
 * can write to could hold sessions whose input they control, so it is refused.
 *
 * @param root The root's path.
 * @param create Whether to make it when missing.
 * @returns True when the root exists (and passed), false when it is missing (and not made).
 * @throws {FsbusError} `permission_denied` naming the path, its owner and mode.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkRoot } from "./_pin_session.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(checkRoot(`${dir}/pin`, false), false); // missing
 * assert.equal(checkRoot(`${dir}/pin`, true), true); // made, mode 0700
 * assert.equal(Deno.statSync(`${dir}/pin`).mode! & 0o777, 0o700);
 * Deno.chmodSync(`${dir}/pin`, 0o777);
 * assert.throws(() => checkRoot(`${dir}/pin`, false), /Cannot use session root/);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function checkRoot(root: string, create: boolean): boolean {
  if (create) {
    try {
      Deno.mkdirSync(root, { recursive: true, mode: 0o700 });
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) {
        throw new FsbusError(
          "io",
          `Cannot make session root "${root}": ${err instanceof Error ? err.message : err}`,
        );
      }
    }
  }
  let fd: number;
  try {
    fd = openFd(root, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
  } catch (err) {
    if (err instanceof SysError && err.code === "ENOENT" && !create) return false;
    let why = err instanceof SysError ? err.reason : String(err);
    if (err instanceof SysError && (err.code === "ELOOP" || err.code === "ENOTDIR")) {
      why = statPath(root)?.kind === "symlink" ? "it is a symbolic link" : "it is not a directory";
    }
    throw new FsbusError("permission_denied", `Cannot use session root "${root}": ${why}`);
  }
  try {
    const st = fstat(fd);
    const uid = Deno.uid();
    if (uid !== null && st.uid !== uid) {
      throw new FsbusError(
        "permission_denied",
        `Cannot use session root "${root}": it is owned by uid ${st.uid} (mode ${
          modeText(st.mode)
        }), not by you (uid ${uid})`,
      );
    }
    if ((st.mode & 0o022) !== 0) {
      throw new FsbusError(
        "permission_denied",
        `Cannot use session root "${root}": others can write to it (mode ${
          modeText(st.mode)
        }, owner uid ${st.uid}); make it yours alone (chmod go-w)`,
      );
    }
  } finally {
    closeFd(fd);
  }
  return true;
}

/**
 * A session's directory.
 *
 * @param root The session root.
 * @param id The session's name.
 * @returns The path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionDir } from "./_pin_session.ts";
 * assert.equal(sessionDir("/run/user/1000/fsbus-pin", "build"), "/run/user/1000/fsbus-pin/build");
 * ```
 */
export function sessionDir(root: string, id: string): string {
  return `${root}/${id}`;
}

/**
 * Whether a session's directory exists, as a real directory owned by the user.
 *
 * @param dir The session's directory.
 * @returns True when it is there.
 * @throws {FsbusError} When it is a symlink, not a directory, or someone else's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionExists } from "./_pin_session.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(sessionExists(`${dir}/build`), false);
 * Deno.mkdirSync(`${dir}/build`);
 * assert.equal(sessionExists(`${dir}/build`), true);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function sessionExists(dir: string): boolean {
  let fd: number;
  try {
    fd = openFd(dir, O.RDONLY | O.DIRECTORY | O.NOFOLLOW | O.NONBLOCK);
  } catch (err) {
    if (err instanceof SysError && err.code === "ENOENT") return false;
    throw new FsbusError(
      "permission_denied",
      `Cannot use session "${dir}": ${err instanceof SysError ? err.reason : err}`,
    );
  }
  try {
    const uid = Deno.uid();
    const st = fstat(fd);
    if (uid !== null && st.uid !== uid) {
      throw new FsbusError(
        "permission_denied",
        `Cannot use session "${dir}": it is owned by uid ${st.uid}, not by you (uid ${uid})`,
      );
    }
  } finally {
    closeFd(fd);
  }
  return true;
}

/**
 * Reads a session's `.pin.json` (a regular file, not followed through a symlink).
 *
 * @param dir The session's directory.
 * @returns The state, or undefined when missing or unreadable.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readState, sessionDir, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * assert.equal(readState(dir)?.state, "exited");
 * assert.equal(readState(`${root}/nope`), undefined);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function readState(dir: string): SessionState | undefined {
  const v = readJsonFile(`${dir}/${STATE_FILE}`, STATE_LIMIT) as
    | Record<string, unknown>
    | undefined;
  if (
    typeof v !== "object" || v === null || typeof v.id !== "string" ||
    !Array.isArray(v.command) || typeof v.state !== "string" || typeof v.created !== "string"
  ) {
    return undefined;
  }
  return v as unknown as SessionState;
}

/**
 * Replaces a session's `.pin.json` atomically.
 *
 * @param dir The session's directory.
 * @param state The new state.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readState, sessionDir, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * writeState(dir, { ...readState(dir)!, state: "running" });
 * assert.equal(readState(dir)?.state, "running");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function writeState(dir: string, state: SessionState): void {
  const tmp = `${dir}/${STATE_FILE}.tmp`;
  try {
    Deno.removeSync(tmp);
  } catch {
    // not there
  }
  const fd = openFd(tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
  try {
    writeAllFd(fd, new TextEncoder().encode(JSON.stringify(state) + "\n"));
  } finally {
    closeFd(fd);
  }
  Deno.renameSync(tmp, `${dir}/${STATE_FILE}`);
}

/**
 * The supervisor's lock: held (exclusively) by a session's supervisor for as long as it
 * runs, so a lock that can be taken means the supervisor is gone.
 *
 * @param dir The session's directory.
 * @returns The lock, not held.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionDir, supervisorAlive, supervisorLock, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * using lock = supervisorLock(dir);
 * await lock.lock(); // a supervisor holds it until it ends
 * assert.equal(supervisorAlive(dir), true);
 * lock.unlock();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function supervisorLock(dir: string): FileLock {
  return FileLock.open(`${dir}/${LOCK_FILE}`);
}

/**
 * Whether a session's supervisor is running (it holds the lock).
 *
 * @param dir The session's directory.
 * @returns True while it runs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sessionDir, supervisorAlive, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * assert.equal(supervisorAlive(dir), false); // no supervisor holds the lock
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function supervisorAlive(dir: string): boolean {
  let lock: FileLock;
  try {
    lock = supervisorLock(dir);
  } catch {
    return false;
  }
  try {
    return !lock.tryLock();
  } finally {
    lock.close();
  }
}

/**
 * How a session stands, in words: `running`, `exited 3`, `killed by SIGKILL`, `failed`
 * (with why), `lost` (its supervisor died), `starting`.
 *
 * @param dir The session's directory.
 * @param st Its state.
 * @returns The words, and whether it has ended (nothing more will happen in it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describe, readState, sessionDir, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * assert.deepEqual(describe(dir, readState(dir)!), { text: "exited 3", ended: true });
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function describe(dir: string, st: SessionState): { text: string; ended: boolean } {
  switch (st.state) {
    case "exited":
      return {
        text: st.signal ? `killed by ${st.signal}` : `exited ${st.code ?? 0}`,
        ended: true,
      };
    case "failed":
      return { text: `failed: ${st.error ?? "unknown error"}`, ended: true };
    case "running":
    case "starting":
      if (st.mirror !== undefined || supervisorAlive(dir)) return { text: st.state, ended: false };
      // A supervisor takes its lock a moment after the session is made.
      if (st.state === "starting" && Date.now() - Date.parse(st.created) < STARTING_MS) {
        return { text: st.state, ended: false };
      }
      // The supervisor may have just ended normally: read again.
      {
        const again = readState(dir);
        if (again && again.state !== "running" && again.state !== "starting") {
          return describe(dir, again);
        }
      }
      return { text: "lost", ended: true };
  }
}

/**
 * Marks this process as attached to a session for as long as it runs: a file named by its
 * pid in `.pin-attach/`, locked; a marker whose lock can be taken was left by a process
 * that died.
 *
 * @param dir The session's directory.
 * @returns A function that removes the marker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attachedCount, markAttached, sessionDir, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * const unmark = markAttached(dir);
 * assert.equal(attachedCount(dir), 1);
 * unmark();
 * assert.equal(attachedCount(dir), 0);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function markAttached(dir: string): () => void {
  const at = `${dir}/${ATTACH_DIR}`;
  try {
    Deno.mkdirSync(at, { mode: 0o700 });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  const path = `${at}/${Deno.pid}`;
  const lock = FileLock.open(path);
  lock.tryLock();
  return () => {
    try {
      Deno.removeSync(path);
    } catch {
      // gone
    }
    lock.close();
  };
}

/**
 * How many processes are attached to a session now (removing markers of dead ones).
 *
 * @param dir The session's directory.
 * @returns The count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { attachedCount, sessionDir, writeState } from "./_pin_session.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const dir = sessionDir(root, "build");
 * Deno.mkdirSync(dir, { mode: 0o700 });
 * writeState(dir, { id: "build", command: ["make"], state: "exited", code: 3, created: "" });
 * assert.equal(attachedCount(dir), 0); // nobody attached
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function attachedCount(dir: string): number {
  let n = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(`${dir}/${ATTACH_DIR}`)];
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!e.isFile || !/^\d+$/.test(e.name)) continue;
    const path = `${dir}/${ATTACH_DIR}/${e.name}`;
    let lock: FileLock;
    try {
      lock = FileLock.open(path);
    } catch {
      continue;
    }
    try {
      if (lock.tryLock()) {
        try {
          Deno.removeSync(path);
        } catch {
          // gone
        }
      } else {
        n++;
      }
    } finally {
      lock.close();
    }
  }
  return n;
}
