/**
 * Retention: messages older than the bus's TTL are removed by whichever fsbus process with
 * write access gets there first, at most once per interval across all processes (a marker
 * file's modification time records the last sweep). A message is never removed inside its
 * TTL: its age comes from the time in its name, or its modification time for files written
 * by other programs.
 *
 * @module
 */

import { fromFsError } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, statAt, statPath } from "../../sys/fs.ts";
import { openDir, readDirFd, touchFd, unlinkAt } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";
import { idTime, isHidden } from "./names.ts";
import { busMode, openChild } from "./_tree.ts";

/**
 * The marker whose modification time records the last sweep of a bus. It is a directory, so
 * that touching it never makes an `IN_CLOSE_WRITE` that plain msgfs listeners would take for a
 * message.
 */
export const SWEEP_MARKER = ".fsbus-gc";

/**
 * Records that the bus was swept now. The marker takes the bus's mode, so in a shared bus any
 * member may touch it (setting a time to "now" needs write permission only).
 *
 * @param dir The bus directory.
 * @returns False when the bus is not writable (someone else must sweep).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { markSwept, SWEEP_MARKER } from "./retention.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(markSwept(dir), true);
 * assert.ok(Deno.statSync(`${dir}/${SWEEP_MARKER}`).isDirectory);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function markSwept(dir: string): boolean {
  if (!ffiAvailable()) return markSweptByPath(dir);
  let bus = -1;
  let marker = -1;
  try {
    bus = openDir(dir);
    marker = openChild(bus, SWEEP_MARKER, busMode(bus));
    touchFd(marker);
    return true;
  } catch {
    return false;
  } finally {
    if (marker >= 0) closeFd(marker);
    if (bus >= 0) closeFd(bus);
  }
}

function markSweptByPath(dir: string): boolean {
  const marker = `${dir}/${SWEEP_MARKER}`;
  const now = new Date();
  try {
    Deno.utimeSync(marker, now, now);
    return true;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) return false;
  }
  try {
    Deno.mkdirSync(marker, { mode: 0o755 });
    Deno.utimeSync(marker, now, now);
    return true;
  } catch (err) {
    return err instanceof Deno.errors.AlreadyExists;
  }
}

/** The hidden directory used for atomic publishing. */
export const TEMP_DIR = ".fsbus-tmp";

/**
 * What a sweep did.
 *
 * @example
 * ```ts
 * import type { SweepResult } from "./retention.ts";
 * const r: SweepResult = { removed: 0, kept: 3, failed: 0 };
 * ```
 */
export interface SweepResult {
  /** Messages removed. */
  removed: number;
  /** Messages still inside their TTL. */
  kept: number;
  /** Expired messages that could not be removed (another owner under the sticky bit, ...). */
  failed: number;
}

/** How deep topics are swept (a bound, so a hostile tree cannot exhaust descriptors). */
const MAX_DEPTH = 32;
/** Entries handled between two turns of the event loop. */
const ENTRIES_PER_TURN = 4096;

const turn = () => new Promise<void>((r) => setTimeout(r, 0));

/**
 * Removes every message older than `ttlMs` from a bus, its topics, and its temp directory.
 *
 * With FFI the walk is relative to directory descriptors: each topic is opened with
 * `O_NOFOLLOW|O_DIRECTORY` from its parent's descriptor and each message removed with
 * `unlinkat` there, so a topic that another user swaps for a symlink (even in a tight loop
 * while the sweep runs) is skipped, and nothing outside the bus is ever removed. Without FFI,
 * topics are only walked while every directory above them is writable by nobody else.
 *
 * @param dir The bus directory.
 * @param ttlMs The time to live.
 * @param nowMs The current time (for tests).
 * @returns What was removed and kept.
 * @throws {FsbusError} When the bus directory cannot be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish } from "@x/fsbus/msgfs";
 * import { sweep } from "./retention.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * publish(dir, "old news");
 * assert.deepEqual(await sweep(dir, 3_600_000), { removed: 0, kept: 1, failed: 0 });
 * // Two hours later, the message has outlived its hour.
 * const later = Date.now() + 7_200_000;
 * assert.deepEqual(await sweep(dir, 3_600_000, later), { removed: 1, kept: 0, failed: 0 });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function sweep(
  dir: string,
  ttlMs: number,
  nowMs: number = Date.now(),
): Promise<SweepResult> {
  const result: SweepResult = { removed: 0, kept: 0, failed: 0 };
  const cutoff = nowMs - ttlMs;
  try {
    if (!ffiAvailable()) {
      await sweepByPath(dir, cutoff, result, 0);
      return result;
    }
    const bus = openDir(dir);
    try {
      await sweepFd(bus, cutoff, result, 0, { n: 0 });
    } finally {
      closeFd(bus);
    }
  } catch (err) {
    throw fromFsError(err, "Cannot sweep", dir);
  }
  return result;
}

async function sweepFd(
  fd: number,
  cutoff: number,
  result: SweepResult,
  depth: number,
  work: { n: number },
): Promise<void> {
  for (const batch of readDirFd(fd)) {
    for (const entry of batch) {
      if (++work.n % ENTRIES_PER_TURN === 0) await turn();
      const name = entry.name;
      let kind = entry.kind;
      let mtimeMs: number | undefined;
      if (kind === undefined) {
        const st = statAt(fd, name);
        if (st === undefined) continue;
        kind = st.kind;
        mtimeMs = Number(st.mtimeNs / 1_000_000n);
      }
      if (kind === "directory") {
        const temp = depth === 0 && name === TEMP_DIR;
        if ((isHidden(name) && !temp) || depth >= MAX_DEPTH) continue;
        let sub: number;
        try {
          sub = openDir(name, fd); // O_NOFOLLOW: a topic swapped for a symlink is refused
        } catch {
          continue;
        }
        try {
          const into = temp ? { removed: 0, kept: 0, failed: 0 } : result;
          await sweepFd(sub, cutoff, into, depth + 1, work);
        } catch {
          // a topic that cannot be read is left as it is
        } finally {
          closeFd(sub);
        }
        continue;
      }
      if (isHidden(name)) continue;
      let time = idTime(name) ?? mtimeMs;
      if (time === undefined) {
        const st = statAt(fd, name);
        if (st === undefined) continue; // gone already
        time = Number(st.mtimeNs / 1_000_000n);
      }
      if (time >= cutoff) {
        result.kept++;
        continue;
      }
      try {
        if (unlinkAt(fd, name)) result.removed++;
      } catch (err) {
        // EISDIR: swapped for a directory meanwhile; it is looked at next time.
        if (!(err instanceof SysError && err.code === "EISDIR")) result.failed++;
      }
    }
  }
}

/** Without FFI: a directory whose entries nobody else can swap (owned by us or root, not
 * writable by group or others). */
function closed(info: Deno.FileInfo): boolean {
  return (info.uid === Deno.uid() || info.uid === 0) && ((info.mode ?? 0o777) & 0o022) === 0;
}

async function sweepByPath(
  dir: string,
  cutoff: number,
  result: SweepResult,
  depth: number,
): Promise<void> {
  // Paths below `dir` are only safe to re-walk when nobody else can swap the entries of `dir`
  // (and, by recursion, of every directory above it).
  const descend = depth < MAX_DEPTH && closed(Deno.statSync(dir));
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) {
      if (!descend) continue;
      const temp = depth === 0 && entry.name === TEMP_DIR;
      if (isHidden(entry.name) && !temp) continue;
      const into = temp ? { removed: 0, kept: 0, failed: 0 } : result;
      await sweepByPath(path, cutoff, into, depth + 1).catch(() => {});
      continue;
    }
    if (isHidden(entry.name)) continue;
    let time = idTime(entry.name);
    if (time === undefined) {
      try {
        time = (await Deno.lstat(path)).mtime?.getTime() ?? Infinity;
      } catch {
        continue; // gone already
      }
    }
    if (time >= cutoff) {
      result.kept++;
      continue;
    }
    try {
      await Deno.remove(path);
      result.removed++;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) result.failed++;
    }
  }
}

/**
 * Decides when a process sweeps: at most once per `intervalMs` in this process, and only when
 * the bus's marker says no process swept within the interval.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { publish } from "@x/fsbus/msgfs";
 * import { Sweeper } from "./retention.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * publish(dir, "old news", { sweep: false });
 * const sweeper = new Sweeper(dir, 3_600_000);
 * const later = Date.now() + 7_200_000; // two hours on: the message has expired
 * sweeper.maybeSweep(later); // cheap; starts a background sweep when one is due
 * assert.equal((await sweeper.running)?.removed, 1);
 * sweeper.maybeSweep(later); // not due again yet: nothing starts
 * assert.equal(sweeper.running, undefined);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Sweeper {
  readonly #dir: string;
  readonly #ttlMs: number;
  readonly #intervalMs: number;
  #nextCheck = 0;
  #running: Promise<SweepResult | undefined> | undefined;

  /**
   * Makes a sweeper for a bus.
   *
   * @param dir The bus directory.
   * @param ttlMs The bus's TTL.
   * @param intervalMs The least time between sweeps (default: a tenth of the TTL, between one
   *   second and one minute).
   */
  constructor(dir: string, ttlMs: number, intervalMs?: number) {
    this.#dir = dir;
    this.#ttlMs = ttlMs;
    this.#intervalMs = intervalMs ?? Math.min(60_000, Math.max(1000, ttlMs / 10));
  }

  /** The sweep running now, if any (tests and `close()` wait for it). */
  get running(): Promise<SweepResult | undefined> | undefined {
    return this.#running;
  }

  /**
   * Starts a sweep in the background when one is due; otherwise costs one clock read.
   *
   * @param nowMs The current time.
   */
  maybeSweep(nowMs: number = Date.now()): void {
    if (nowMs < this.#nextCheck || this.#running) return;
    this.#nextCheck = nowMs + this.#intervalMs;
    let last = 0;
    try {
      if (ffiAvailable()) {
        const st = statPath(`${this.#dir}/${SWEEP_MARKER}`);
        last = st === undefined ? 0 : Number(st.mtimeNs / 1_000_000n);
      } else {
        last = Deno.statSync(`${this.#dir}/${SWEEP_MARKER}`).mtime?.getTime() ?? 0;
      }
    } catch {
      // no marker yet: never swept
    }
    if (nowMs - last < this.#intervalMs) return;
    if (!markSwept(this.#dir)) return; // no write access: leave sweeping to others
    this.#running = sweep(this.#dir, this.#ttlMs, nowMs)
      .catch(() => undefined)
      .finally(() => {
        this.#running = undefined;
      });
  }
}
