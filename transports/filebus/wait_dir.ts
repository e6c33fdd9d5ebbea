/**
 * Waiting for a filebus's directory to appear, as the original consumer does: inotify on the
 * nearest directory that exists (no polling while idle), or a timed check without FFI.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { IN, Inotify } from "../../sys/inotify.ts";

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  const slash = trimmed.lastIndexOf("/");
  if (slash < 0) return ".";
  return slash === 0 ? "/" : trimmed.slice(0, slash);
}

/** Options of {@linkcode waitForDirectory}. */
export interface WaitForDirectoryOptions {
  /** Stops the wait (the promise rejects with an FsbusError of code "closed"). */
  signal?: AbortSignal;
  /**
   * The longest sleep between checks, in milliseconds: every check when FFI (inotify) is
   * not available, and a safety net when it is.
   *
   * @default {1000}
   */
  checkMs?: number;
}

/**
 * Resolves once `dir` exists and is a directory (at once when it already does).
 *
 * @param dir The directory to wait for.
 * @param options An abort signal and the longest sleep between checks.
 * @returns A promise that resolves when the directory is there.
 * @throws {FsbusError} With code "closed" when the signal aborts the wait.
 *
 * @example Wait for a directory made by another process
 * ```ts
 * import { waitForDirectory } from "@x/fsbus/filebus";
 * const base = Deno.makeTempDirSync();
 * const waiting = waitForDirectory(`${base}/later/bus`);
 * Deno.mkdirSync(`${base}/later/bus`, { recursive: true });
 * await waiting;
 * Deno.removeSync(base, { recursive: true });
 * ```
 */
export async function waitForDirectory(
  dir: string,
  options: WaitForDirectoryOptions = {},
): Promise<void> {
  const { signal, checkMs = 1000 } = options;
  const aborted = () =>
    new FsbusError(
      "closed",
      `Cannot wait for the directory "${dir}" to appear: the wait was aborted`,
    );
  while (!isDirectory(dir)) {
    if (signal?.aborted) throw aborted();
    let ino: Inotify | undefined;
    if (ffiAvailable()) {
      // Watch the nearest ancestor that exists for a new entry, then look again: whatever
      // appears after the watch is in place wakes the wait.
      let watched = parentOf(dir);
      while (watched !== "/" && watched !== "." && !isDirectory(watched)) {
        watched = parentOf(watched);
      }
      try {
        ino = new Inotify();
        ino.add(watched, IN.CREATE | IN.MOVED_TO | IN.ONLYDIR | IN.DELETE_SELF | IN.MOVE_SELF);
      } catch {
        await ino?.close();
        ino = undefined;
      }
    }
    const onAbort = () => ino?.wake();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (isDirectory(dir)) break;
      if (ino) await ino.wait(checkMs);
      else await new Promise((resolve) => setTimeout(resolve, checkMs));
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await ino?.close();
    }
  }
}
