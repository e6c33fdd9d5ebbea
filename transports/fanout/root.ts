/**
 * The topic root and topic names: where topics live by default (fsbus's root, baf's
 * `/dev/baf`), which names are topics, and the check that a root is a directory other users
 * cannot subvert.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { closeFd, type FdStat, fstat, lstatPath, O, openFd } from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";

/** Where baf keeps its topics. */
export const BAF_ROOT = "/dev/baf";

/** Options naming the topic root. */
export interface RootOptions {
  /**
   * The topic root.
   *
   * @default {defaultRoot()}
   */
  root?: string;
}

/**
 * The default root for fsbus's rings: `/dev/shm/fsbus` when /dev/shm is a directory, else
 * `$XDG_RUNTIME_DIR/fsbus`.
 *
 * @returns The path (which may not exist yet).
 * @throws {FsbusError} When neither is available.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultRoot } from "@x/fsbus/fanout";
 * assert.equal(defaultRoot(), "/dev/shm/fsbus"); // where /dev/shm exists
 * ```
 */
export function defaultRoot(): string {
  try {
    if (Deno.statSync("/dev/shm").isDirectory) return "/dev/shm/fsbus";
  } catch {
    // no /dev/shm
  }
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/fsbus`;
  throw new FsbusError(
    "not_found",
    "Cannot choose a topic root: /dev/shm is missing and XDG_RUNTIME_DIR is not set (give a root)",
  );
}

/**
 * The default root for baf's commands: `/dev/baf` when it exists, else {@linkcode defaultRoot}.
 *
 * @returns The path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BAF_ROOT, defaultBafRoot, defaultRoot } from "@x/fsbus/fanout";
 * // "/dev/shm/fsbus" on a machine without baf
 * assert.ok([BAF_ROOT, defaultRoot()].includes(defaultBafRoot()));
 * ```
 */
export function defaultBafRoot(): string {
  try {
    if (Deno.statSync(BAF_ROOT).isDirectory) return BAF_ROOT;
  } catch {
    // no baf here
  }
  return defaultRoot();
}

/**
 * Checks a topic name: not empty, no "/", no control characters (a newline would break
 * listings and baf's line-based tools), no leading ".", no ".lock" ending, at most 255 bytes.
 *
 * @param name The name.
 * @throws {FsbusError} "invalid" with the reason.
 *
 * @example
 * ```ts
 * import { checkTopicName } from "./root.ts";
 * checkTopicName("news"); // fine
 * ```
 */
export function checkTopicName(name: string): void {
  let why: string | undefined;
  if (name === "") why = "it is empty";
  else if (name.includes("/")) why = 'it contains "/"';
  else if (name.startsWith(".")) why = 'it starts with "."';
  else if (name.endsWith(".lock")) why = 'it ends with ".lock"';
  // deno-lint-ignore no-control-regex
  else if (/[\x00-\x1f\x7f]/.test(name)) why = "it contains a control character";
  else if (new TextEncoder().encode(name).length > 255) why = "it is longer than 255 bytes";
  if (why) {
    throw new FsbusError("invalid", `Cannot use ${JSON.stringify(name)} as a topic name: ${why}`);
  }
}

/**
 * The path of a topic: `ROOT/NAME`, or NAME itself when it contains a "/" (a device or ring
 * file named by path, such as `/dev/fanout1`).
 *
 * @param name The topic's name or path.
 * @param options The root.
 * @returns The path.
 *
 * @example
 * ```ts
 * import { topicPath } from "./root.ts";
 * topicPath("news", { root: "/dev/shm/fsbus" }); // "/dev/shm/fsbus/news"
 * ```
 */
export function topicPath(name: string, options: RootOptions = {}): string {
  if (name.includes("/")) return name;
  checkTopicName(name);
  return `${options.root ?? defaultRoot()}/${name}`;
}

/**
 * A topic's name: NAME, or the last part of a path.
 *
 * @param name The topic's name or path.
 * @returns The name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicName } from "./root.ts";
 * assert.equal(topicName("/dev/fanout1"), "fanout1");
 * ```
 */
export function topicName(name: string): string {
  return name.includes("/") ? name.slice(name.lastIndexOf("/") + 1) : name;
}

/**
 * Checks that a topic root is a directory that other users cannot subvert, creating it when
 * asked (the default root under /dev/shm is made sticky and world-writable, like /tmp).
 *
 * The root must be owned by the caller or root, and, when others (group or world) may write
 * to it, sticky: otherwise another user could rename or replace a topic in it. The check is
 * made on a descriptor opened without following a final symlink; a symlinked root is
 * accepted only when the link itself belongs to the caller or root.
 *
 * @param root The root.
 * @param create Whether to create it when missing.
 * @throws {FsbusError} When it is not a directory, is not safe to share, or is missing and
 *   not to be created.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureRoot } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * ensureRoot(`${root}/topics`, true); // made, owned by this user
 * assert.ok(Deno.statSync(`${root}/topics`).isDirectory);
 * Deno.chmodSync(`${root}/topics`, 0o777); // others could swap its topics
 * assert.throws(() => ensureRoot(`${root}/topics`, false), /not sticky/);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function ensureRoot(root: string, create: boolean): void {
  for (let attempt = 0;; attempt++) {
    let fd: number;
    try {
      fd = openRootFd(root);
    } catch (err) {
      if (err instanceof FsbusError) throw err;
      const code = err instanceof SysError ? err.code : undefined;
      if (code === "ENOTDIR") {
        throw new FsbusError("not_a_directory", `Cannot use topic root "${root}": not a directory`);
      }
      if (code !== "ENOENT") throw fromFsError(err, "Cannot use topic root", root);
      if (!create || attempt > 0) {
        throw new FsbusError("not_found", `Cannot use topic root "${root}": it does not exist`);
      }
      try {
        Deno.mkdirSync(root, { recursive: true, mode: 0o755 });
        if (root === "/dev/shm/fsbus") Deno.chmodSync(root, 0o1777);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) {
          throw fromFsError(err, "Cannot create topic root", root);
        }
      }
      continue;
    }
    try {
      checkRootStat(root, fstat(fd));
    } finally {
      closeFd(fd);
    }
    return;
  }
}

function openRootFd(root: string): number {
  try {
    return openFd(root, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  } catch (err) {
    // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR (or ELOOP).
    if (!(err instanceof SysError) || (err.code !== "ELOOP" && err.code !== "ENOTDIR")) throw err;
  }
  // A final symlink: trusted when its owner could have made the root anyway.
  const link = lstatPath(root);
  if (link.kind !== "symlink") {
    throw new FsbusError("not_a_directory", `Cannot use topic root "${root}": not a directory`);
  }
  if (!trustedOwner(link.uid)) {
    throw new FsbusError(
      "permission_denied",
      `Cannot use topic root "${root}": it is a symbolic link owned by uid ${link.uid}, ` +
        `not by you or root`,
    );
  }
  return openFd(root, O.RDONLY | O.DIRECTORY);
}

/**
 * Whether a user may own what fsbus trusts (a root, a symlinked root): the caller or root.
 *
 * @param uid The owner.
 * @returns True for the caller and root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { trustedOwner } from "./root.ts";
 * assert.ok(trustedOwner(0));
 * ```
 */
export function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === Deno.uid();
}

function checkRootStat(root: string, st: FdStat): void {
  if (st.kind !== "directory") {
    throw new FsbusError("not_a_directory", `Cannot use topic root "${root}": not a directory`);
  }
  if (!trustedOwner(st.uid)) {
    throw new FsbusError(
      "permission_denied",
      `Cannot use topic root "${root}": it is owned by uid ${st.uid}, not by you or root ` +
        `(another user could replace its topics; remove it or choose another root)`,
    );
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new FsbusError(
      "permission_denied",
      `Cannot use topic root "${root}": others may write to it and it is not sticky ` +
        `(mode ${st.mode.toString(8).padStart(4, "0")}; chmod +t or o-w it)`,
    );
  }
}
