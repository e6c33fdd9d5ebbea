/**
 * What a filebus file holds now: the current chunk, the lock file, a write in progress.
 *
 * @module
 */

import { fromFsError, FsbusError, type Status } from "../../types.ts";

/**
 * Describes a filebus file: whether a chunk is there (and its size; an empty FILE is a
 * lossless producer's EOF marker), whether `FILE.lock` exists, and whether a chunk is being
 * written (`FILE.__new__`). Its mode (lossy or lossless) and options belong to the processes
 * using it, not to the file, so they are not known here.
 *
 * @param file The `--filename`.
 * @returns The status.
 * @throws {FsbusError} When neither FILE nor FILE.lock exists, or FILE is not a regular file.
 *
 * @example
 * ```ts
 * import { status } from "./status.ts";
 * const dir = Deno.makeTempDirSync();
 * Deno.writeTextFileSync(`${dir}/bus`, "chunk");
 * Deno.writeTextFileSync(`${dir}/bus.lock`, "");
 * console.log(status(`${dir}/bus`).bytes); // 5
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function status(file: string): Status {
  const look = (path: string): Deno.FileInfo | undefined => {
    try {
      return Deno.lstatSync(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw fromFsError(err, "Cannot describe filebus file", path);
    }
  };
  const data = look(file);
  const lock = look(`${file}.lock`);
  if (data && !data.isFile) {
    throw new FsbusError("invalid", `Cannot describe filebus file "${file}": not a regular file`);
  }
  if (!data && !lock) {
    throw new FsbusError(
      "not_found",
      `Cannot describe filebus file "${file}": neither it nor "${file}.lock" exists`,
    );
  }
  return {
    kind: "filebus",
    path: file,
    what: "filebus file",
    settings: { lock_file: lock !== undefined },
    counts: {
      chunks: data && data.size > 0 ? 1 : 0,
      eof_markers: data && data.size === 0 ? 1 : 0,
      writes_in_progress: look(`${file}.__new__`) ? 1 : 0,
    },
    bytes: data?.size ?? 0,
  };
}
