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
import { idTime, isHidden } from "./names.ts";

/**
 * The marker whose modification time records the last sweep of a bus. It is a directory, so
 * that touching it never makes an `IN_CLOSE_WRITE` that plain msgfs listeners would take for a
 * message.
 */
export const SWEEP_MARKER = ".fsbus-gc";

/**
 * Records that the bus was swept now.
 *
 * @param dir The bus directory.
 * @param nowMs The time to record.
 * @returns False when the bus is not writable (someone else must sweep).
 *
 * @example
 * ```ts ignore
 * import { markSwept } from "./retention.ts";
 * markSwept("/dev/shm/bus");
 * ```
 */
export function markSwept(dir: string, nowMs: number = Date.now()): boolean {
  const marker = `${dir}/${SWEEP_MARKER}`;
  const now = new Date(nowMs);
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

/**
 * Removes every message older than `ttlMs` from a bus, its topics, and its temp directory.
 *
 * @param dir The bus directory.
 * @param ttlMs The time to live.
 * @param nowMs The current time (for tests).
 * @returns What was removed and kept.
 * @throws {FsbusError} When the bus directory cannot be read.
 *
 * @example
 * ```ts ignore
 * import { sweep } from "./retention.ts";
 * const { removed } = await sweep("/dev/shm/bus", 3_600_000);
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
    await sweepDir(dir, cutoff, result, true);
  } catch (err) {
    throw fromFsError(err, "Cannot sweep", dir);
  }
  return result;
}

async function sweepDir(
  dir: string,
  cutoff: number,
  result: SweepResult,
  top: boolean,
): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (isHidden(entry.name)) {
      if (top && entry.name === TEMP_DIR && entry.isDirectory) {
        await sweepDir(path, cutoff, { removed: 0, kept: 0, failed: 0 }, false).catch(() => {});
      }
      continue;
    }
    if (entry.isDirectory) {
      await sweepDir(path, cutoff, result, false).catch(() => {});
      continue;
    }
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
 * ```ts ignore
 * import { Sweeper } from "./retention.ts";
 * const sweeper = new Sweeper("/dev/shm/bus", 3_600_000);
 * sweeper.maybeSweep(); // cheap; starts a background sweep when one is due
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
    const marker = `${this.#dir}/${SWEEP_MARKER}`;
    let last = 0;
    try {
      last = Deno.statSync(marker).mtime?.getTime() ?? 0;
    } catch {
      // no marker yet: never swept
    }
    if (nowMs - last < this.#intervalMs) return;
    if (!markSwept(this.#dir, nowMs)) return; // no write access: leave sweeping to others
    this.#running = sweep(this.#dir, this.#ttlMs, nowMs)
      .catch(() => undefined)
      .finally(() => {
        this.#running = undefined;
      });
  }
}
