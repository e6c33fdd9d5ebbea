/**
 * Creating a bus with its access mode: private to its owner, or shared with a group, where
 * the setgid bit keeps messages in the group and the sticky bit stops senders from deleting
 * or renaming each other's messages.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { DEFAULT_TTL_MS, writeConfig } from "./config.ts";
import { lookupGroup } from "../../sys/users.ts";

/**
 * Options of {@linkcode init}.
 *
 * @example
 * ```ts
 * import type { InitOptions } from "./access.ts";
 * const options: InitOptions = { access: "shared", group: "staff", ttlMs: 600_000 };
 * ```
 */
export interface InitOptions {
  /** "private" (mode 0700, the default) or "shared" (mode 3770: setgid and sticky). */
  access?: "private" | "shared";
  /** The group of a shared bus: a name or a number (default: the creator's group). */
  group?: string | number;
  /** How long messages live (default one hour). */
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
  if (gid === undefined) throw new FsbusError("not_found", `Unknown group "${group}"`);
  return gid;
}

/**
 * Creates a bus directory (and its parents) with an access mode and a TTL, or updates an
 * existing one.
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
  const shared = options.access === "shared";
  const mode = shared ? 0o3770 : 0o700;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode });
    const info = Deno.statSync(dir);
    if (!info.isDirectory) {
      throw new FsbusError("not_a_directory", `Cannot create a bus at "${dir}": not a directory`);
    }
    if (shared && options.group !== undefined) Deno.chownSync(dir, null, groupId(options.group));
    Deno.chmodSync(dir, mode);
  } catch (err) {
    throw fromFsError(err, "Cannot create a bus at", dir);
  }
  writeConfig(dir, { ttlMs: options.ttlMs ?? DEFAULT_TTL_MS }, shared ? 0o640 : 0o600);
}
