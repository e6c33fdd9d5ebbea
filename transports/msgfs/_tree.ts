/**
 * The bus's directory tree, reached through directory descriptors: the bus is opened once,
 * every topic below it one segment at a time with `O_NOFOLLOW|O_DIRECTORY`, so a topic that a
 * member swaps for a symlink is refused, never followed. Directories fsbus makes inside a bus
 * (topics, its temp directory, its sweep marker) take the bus's own mode and group, whatever
 * the creator's umask: in a shared bus (3770) every member may publish to any topic, and the
 * sticky bit protects each member's messages from the others.
 *
 * @module
 */

import { closeFd, fstat } from "../../sys/fs.ts";
import { fchgrp, fchmod, mkdirAt, openDir } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";

/**
 * The mode and group that directories made inside a bus take.
 *
 * @example
 * ```ts
 * import type { BusMode } from "./_tree.ts";
 * const m: BusMode = { mode: 0o3770, gid: 50 };
 * ```
 */
export interface BusMode {
  /** Permission bits, setgid and sticky included. */
  mode: number;
  /** The bus's group. */
  gid: number;
}

/**
 * The mode and group of an open bus directory.
 *
 * @param fd The bus's descriptor.
 * @returns Its mode bits and group.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { busMode } from "./_tree.ts";
 * import { openDir } from "../../sys/dirfd.ts";
 * import { closeFd } from "../../sys/fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.chmodSync(dir, 0o2770);
 * const bus = openDir(dir);
 * assert.deepEqual(busMode(bus), { mode: 0o2770, gid: Deno.statSync(dir).gid });
 * closeFd(bus);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function busMode(fd: number): BusMode {
  const st = fstat(fd);
  return { mode: st.mode, gid: st.gid };
}

/**
 * Opens (and, with `create`, makes) a directory inside an open directory: never through a
 * symlink; a directory it makes takes `mode` and group exactly.
 *
 * @param parent The parent's descriptor.
 * @param name One path segment.
 * @param mode The bus's mode, or undefined not to create.
 * @returns The new descriptor.
 * @throws {SysError} ENOENT when missing (and not created), ELOOP or ENOTDIR when not a
 *   directory, EACCES, and so on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { busMode, openChild } from "./_tree.ts";
 * import { openDir } from "../../sys/dirfd.ts";
 * import { closeFd } from "../../sys/fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.chmodSync(dir, 0o2770);
 * const bus = openDir(dir);
 * const topic = openChild(bus, "sensors", busMode(bus)); // made, with the bus's mode
 * assert.equal(Deno.statSync(`${dir}/sensors`).mode! & 0o7777, 0o2770);
 * closeFd(topic);
 * closeFd(bus);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function openChild(parent: number, name: string, mode?: BusMode): number {
  try {
    return openDir(name, parent);
  } catch (err) {
    if (mode === undefined || !(err instanceof SysError && err.code === "ENOENT")) throw err;
  }
  const made = mkdirAt(parent, name, mode.mode & 0o777);
  const fd = openDir(name, parent);
  if (made) {
    try {
      const st = fstat(fd);
      if (st.gid !== mode.gid) {
        try {
          fchgrp(fd, mode.gid);
        } catch {
          // not a member of the bus's group: the directory keeps the creator's
        }
      }
      if (st.mode !== mode.mode) fchmod(fd, mode.mode);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }
  return fd;
}

/**
 * Opens a topic's directory below an open bus, one segment at a time.
 *
 * @param bus The bus's descriptor.
 * @param topic A checked, non-empty topic.
 * @param mode The bus's mode when missing directories are to be made, else undefined.
 * @returns The topic directory's descriptor (the caller closes it).
 * @throws {SysError} As {@linkcode openChild}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { busMode, openTopic } from "./_tree.ts";
 * import { openDir } from "../../sys/dirfd.ts";
 * import { closeFd } from "../../sys/fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const bus = openDir(dir);
 * const fd = openTopic(bus, "sensors/kitchen", busMode(bus));
 * assert.ok(Deno.statSync(`${dir}/sensors/kitchen`).isDirectory);
 * closeFd(fd);
 * closeFd(bus);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function openTopic(bus: number, topic: string, mode?: BusMode): number {
  let fd = -1;
  for (const seg of topic.split("/")) {
    try {
      const next = openChild(fd < 0 ? bus : fd, seg, mode);
      if (fd >= 0) closeFd(fd);
      fd = next;
    } catch (err) {
      if (fd >= 0) closeFd(fd);
      throw err;
    }
  }
  return fd;
}

/**
 * Without FFI: makes a topic's missing directories by path, each given the bus's mode and
 * group (a narrower guarantee than {@linkcode openTopic}: the path is walked again).
 *
 * @param bus The bus directory.
 * @param topic A checked, non-empty topic.
 * @throws {Deno.errors.PermissionDenied} And the other errors of `Deno.mkdirSync`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeTopicByPath } from "./_tree.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * makeTopicByPath(dir, "sensors/kitchen");
 * assert.ok(Deno.statSync(`${dir}/sensors/kitchen`).isDirectory);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function makeTopicByPath(bus: string, topic: string): void {
  const info = Deno.statSync(bus);
  const mode = (info.mode ?? 0o700) & 0o7777;
  let dir = bus;
  for (const seg of topic.split("/")) {
    dir = `${dir}/${seg}`;
    try {
      Deno.mkdirSync(dir, { mode: mode & 0o777 });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) continue;
      throw err;
    }
    try {
      if (info.gid !== null) Deno.chownSync(dir, null, info.gid);
    } catch {
      // not a member of the bus's group
    }
    Deno.chmodSync(dir, mode);
  }
}
