/**
 * What a directory bus holds now: its settings, messages, topics and bytes.
 *
 * @module
 */

import { fromFsError, FsbusError, type Status } from "../../types.ts";
import { readConfig } from "./config.ts";

/** The most directory entries {@linkcode status} looks at, so a huge tree cannot hang it. */
const MAX_ENTRIES = 1_000_000;

/**
 * Describes a directory bus: its TTL and access (mode, group), and how many messages,
 * topics and bytes it holds (hidden files, fsbus's own, are not counted; symlinks are not
 * followed).
 *
 * @param dir The bus directory.
 * @returns The status.
 * @throws {FsbusError} When `dir` is missing or not a directory.
 *
 * @example
 * ```ts
 * import { publish, status } from "./mod.ts";
 * const bus = Deno.makeTempDirSync();
 * publish(bus, "hello");
 * console.log(status(bus).counts.messages); // 1
 * Deno.removeSync(bus, { recursive: true });
 * ```
 */
export function status(dir: string): Status {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch (err) {
    throw fromFsError(err, "Cannot describe bus", dir);
  }
  if (!info.isDirectory) {
    throw new FsbusError("not_a_directory", `Cannot describe bus "${dir}": not a directory`);
  }
  const mode = (info.mode ?? 0) & 0o7777;
  const counts = { messages: 0, topics: 0 };
  let bytes = 0;
  let seen = 0;
  const walk = (path: string) => {
    for (const e of Deno.readDirSync(path)) {
      if (++seen > MAX_ENTRIES || e.name.startsWith(".")) continue;
      if (e.isDirectory) {
        counts.topics++;
        walk(`${path}/${e.name}`);
      } else if (e.isFile) {
        counts.messages++;
        try {
          bytes += Deno.lstatSync(`${path}/${e.name}`).size;
        } catch {
          // swept meanwhile
        }
      }
    }
  };
  try {
    walk(dir);
  } catch (err) {
    throw fromFsError(err, "Cannot describe bus", dir);
  }
  return {
    kind: "msgfs",
    path: dir,
    what: "directory bus",
    settings: {
      ttl_ms: readConfig(dir).ttlMs,
      access: (mode & 0o020) !== 0 ? "shared" : (mode & 0o077) !== 0 ? "readable" : "private",
      mode: mode.toString(8).padStart(4, "0"),
      gid: info.gid ?? -1,
    },
    counts,
    bytes,
  };
}
