/**
 * Creating a bus with its access mode: private to its owner, or shared with a group, where
 * the setgid bit keeps messages in the group and the sticky bit stops senders from deleting
 * or renaming each other's messages.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { CONFIG_FILE, DEFAULT_TTL_MS, readConfig, writeConfig } from "./config.ts";
import { lookupGroup } from "../../sys/users.ts";

/**
 * Options of {@linkcode init}. On an existing bus only what is given changes.
 *
 * @example
 * ```ts
 * import type { InitOptions } from "./access.ts";
 * const options: InitOptions = { access: "shared", group: "staff", ttlMs: 600_000 };
 * ```
 */
export interface InitOptions {
  /**
   * "private" (mode 0700) or "shared" (mode 3770: setgid and sticky). A new bus is private
   * unless this (or `group`) says otherwise; an existing bus keeps its mode when neither is
   * given.
   */
  access?: "private" | "shared";
  /** The group of a shared bus: a name or a number (implies "shared"; default: the creator's
   * group for a new bus, the bus's own for an existing one). */
  group?: string | number;
  /** How long messages live (a new bus: one hour; an existing bus keeps its TTL). */
  ttlMs?: number;
}

/**
 * Looks a group up by name in /etc/group.
 *
 * @param group A group name or number.
 * @returns The group id.
 * @throws {FsbusError} When there is no such group.
 *
 * @example
 * ```ts
 * import { groupId } from "./access.ts";
 * groupId("0"); // 0
 * ```
 */
export function groupId(group: string | number): number {
  if (typeof group === "number") return group;
  const gid = lookupGroup(group);
  if (gid === undefined) {
    throw new FsbusError("not_found", `Cannot find group "${group}": no such group`);
  }
  return gid;
}

/** The directories `mkdir -p dir` would make, outermost first. */
function missingDirs(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir.replace(/(.)\/+$/, "$1"); d && d !== "/" && d !== ".";) {
    try {
      Deno.lstatSync(d);
      break;
    } catch {
      missing.unshift(d);
    }
    const slash = d.lastIndexOf("/");
    d = slash < 0 ? "" : slash === 0 ? "/" : d.slice(0, slash);
  }
  return missing;
}

/**
 * Creates a bus directory (and its parents) with an access mode and a TTL, or changes what is
 * given of an existing bus's settings (and nothing else). Everything is checked before
 * anything is made, and a failure removes what this call made.
 *
 * @param dir The bus directory.
 * @param options Access mode, group, TTL.
 * @throws {FsbusError} When the directory cannot be made or changed.
 *
 * @example
 * ```ts
 * import { init } from "./access.ts";
 * const dir = Deno.makeTempDirSync() + "/bus";
 * init(dir, { ttlMs: 60_000 });
 * console.log((Deno.statSync(dir).mode! & 0o7777).toString(8)); // "700"
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function init(dir: string, options: InitOptions = {}): void {
  // Validate first: the group, then what is at `dir`.
  const gid = options.group === undefined ? undefined : groupId(options.group);
  const access = gid !== undefined ? "shared" : options.access;
  let existing: Deno.FileInfo | undefined;
  try {
    existing = Deno.statSync(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw fromFsError(err, "Cannot create a bus at", dir);
    }
  }
  if (existing && !existing.isDirectory) {
    throw new FsbusError("not_a_directory", `Cannot create a bus at "${dir}": not a directory`);
  }
  const made = existing ? [] : missingDirs(dir);
  try {
    const shared = access === undefined
      ? existing !== undefined && ((existing.mode ?? 0) & 0o070) !== 0
      : access === "shared";
    const mode = shared ? 0o3770 : 0o700;
    if (!existing) Deno.mkdirSync(dir, { recursive: true, mode });
    if (gid !== undefined) Deno.chownSync(dir, null, gid);
    if (access !== undefined || !existing) Deno.chmodSync(dir, mode);
    const configMode = shared ? 0o640 : 0o600;
    if (options.ttlMs !== undefined || !existing) {
      writeConfig(dir, { ttlMs: options.ttlMs ?? DEFAULT_TTL_MS }, configMode);
    } else if (access !== undefined) {
      // Only the access changed: the settings file follows it (members read the TTL).
      writeConfig(dir, readConfig(dir), configMode);
    }
  } catch (err) {
    for (const d of made.reverse()) {
      try {
        if (d === dir) Deno.removeSync(`${d}/${CONFIG_FILE}`);
      } catch {
        // never written
      }
      try {
        Deno.removeSync(d);
      } catch {
        // not empty, or not ours any more: leave it
      }
    }
    throw fromFsError(err, "Cannot create a bus at", dir);
  }
}
