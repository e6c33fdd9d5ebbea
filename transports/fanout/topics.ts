/**
 * Topics: named rings under a topic root. A topic is `ROOT/NAME`, either a ring file made by
 * fsbus or a character device (a real /dev/fanout, or a `/dev/baf/NAME` symlink to one).
 * `ROOT/NAME.lock` is the lock file of baf's one-publisher rule; files starting with "." are
 * fsbus's own temporaries.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { closeFd, type FdStat, fstat, lstatPath, O, openFd } from "../../sys/fs.ts";
import { check, libc } from "../../sys/libc.ts";
import { SysError } from "../../sys/errno.ts";
import { FileLock } from "../../sys/flock.ts";
import type { Backend, TopicReader, TopicWriter } from "./endpoint.ts";
import { checkRingSize, DEFAULT_RING_SIZE, initRingFile, inspectRing, Ring } from "./ring.ts";
import { RingReader, RingWriter } from "./ring_endpoint.ts";
import { deviceCounts, deviceMaxWrite, DeviceReader, DeviceWriter } from "./device.ts";
import { sysToFsbus } from "./ring.ts";

/** The default permission bits of a new topic: owner and group read and write. */
export const DEFAULT_TOPIC_MODE = 0o660;

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
 * import { checkTopicName } from "./topics.ts";
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
 * import { topicPath } from "./topics.ts";
 * topicPath("news", { root: "/dev/shm/fsbus" }); // "/dev/shm/fsbus/news"
 * ```
 */
export function topicPath(name: string, options: RootOptions = {}): string {
  if (name.includes("/")) return name;
  checkTopicName(name);
  return `${options.root ?? defaultRoot()}/${name}`;
}

function topicName(name: string): string {
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

function trustedOwner(uid: number): boolean {
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

/** Options of {@linkcode createTopic}. */
export interface CreateOptions extends RootOptions {
  /**
   * History in bytes (as the kernel module).
   *
   * @default {16384}
   */
  size?: number;
  /**
   * Message mode: readers get whole messages (the fsbus extension).
   *
   * @default {false}
   */
  messages?: boolean;
  /**
   * Permission bits. Readers need write permission too.
   *
   * @default {0o660}
   */
  mode?: number;
  /** A group id to give the file (default: the creator's). */
  gid?: number;
  /**
   * Fail when the topic exists; false: keep the existing one.
   *
   * @default {true}
   */
  exclusive?: boolean;
}

/**
 * Creates a topic: a new ring file, built under a temporary name and linked into place so
 * that nobody ever opens a half-made ring.
 *
 * @param name The topic's name.
 * @param options Root, size, message mode, permissions.
 * @returns The topic's path.
 * @throws {FsbusError} "already_exists" when it exists (unless `exclusive: false`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const path = createTopic("news", { root, size: 1 << 20, messages: true, mode: 0o666 });
 * assert.equal(path, `${root}/news`);
 * assert.throws(() => createTopic("news", { root }), { code: "already_exists" });
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function createTopic(name: string, options: CreateOptions = {}): string {
  const {
    root = defaultRoot(),
    size = DEFAULT_RING_SIZE,
    messages = false,
    mode = DEFAULT_TOPIC_MODE,
    gid,
    exclusive = true,
  } = options;
  checkTopicName(name);
  checkRingSize(size);
  ensureRoot(root, true);
  const path = `${root}/${name}`;
  const tmp = `${root}/.${name}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  let fd: number;
  try {
    fd = openFd(tmp, O.RDWR | O.CREAT | O.EXCL | O.NOFOLLOW, mode);
  } catch (err) {
    throw sysToFsbus(err, "Cannot create topic", path);
  }
  try {
    try {
      check(libc().fchmod(fd, mode), "fchmod", tmp);
      if (gid !== undefined) check(libc().fchown(fd, -1 >>> 0, gid), "fchown", tmp);
      initRingFile(fd, size, messages);
    } finally {
      closeFd(fd);
    }
    try {
      Deno.linkSync(tmp, path);
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) {
        if (exclusive) {
          throw new FsbusError(
            "already_exists",
            `Cannot create topic "${name}" in "${root}": it already exists`,
          );
        }
      } else {
        throw err;
      }
    }
  } catch (err) {
    throw sysToFsbus(err, "Cannot create topic", path);
  } finally {
    try {
      Deno.removeSync(tmp);
    } catch {
      // already gone
    }
  }
  return path;
}

/**
 * Removes topics: the ring file or symlink, and its `.lock` file. Processes that have the
 * ring open keep using the old one until they close it. Device nodes themselves are not
 * removed.
 *
 * @param name The topic's name.
 * @param options The root.
 * @throws {FsbusError} When the topic does not exist or is a device node.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, removeTopic, topicNames } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * removeTopic("news", { root });
 * assert.deepEqual(topicNames(root), []);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function removeTopic(name: string, options: RootOptions = {}): void {
  const { root = defaultRoot() } = options;
  checkTopicName(name);
  ensureRoot(root, false);
  const path = `${root}/${name}`;
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new FsbusError(
        "not_found",
        `Cannot remove topic "${name}" from "${root}": it does not exist`,
      );
    }
    throw fromFsError(err, "Cannot remove topic", path);
  }
  if (st.isCharDevice || st.isBlockDevice) {
    throw new FsbusError("invalid", `Cannot remove topic "${name}": "${path}" is a device node`);
  }
  if (st.isDirectory) {
    throw new FsbusError(
      "is_a_directory",
      `Cannot remove topic "${name}": "${path}" is a directory`,
    );
  }
  try {
    Deno.removeSync(path);
  } catch (err) {
    throw fromFsError(err, "Cannot remove topic", path);
  }
  try {
    Deno.removeSync(`${path}.lock`);
  } catch {
    // no lock file
  }
}

/** What a listing says about one topic. */
export interface TopicInfo {
  /** The topic's name. */
  topic: string;
  /** Its path. */
  path: string;
  /** The backend, or "invalid" for a file that is not a usable topic. */
  backend: Backend | "invalid";
  /** History in bytes (rings, and devices where the module says). */
  size?: number;
  /** Whether the ring is in message mode. */
  messages?: boolean;
  /** Live readers, where known. */
  readers?: number;
  /** Live writers, where known. */
  writers?: number;
  /** Why the topic is not usable. */
  problem?: string;
}

function deviceBufferSize(): number {
  return deviceMaxWrite() * 4;
}

/**
 * Describes one topic.
 *
 * @param name The topic's name or path.
 * @param options The root.
 * @returns What is known about it.
 * @throws {FsbusError} When it does not exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, describeTopic, openReader } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * {
 *   using _reader = openReader("news", { root });
 *   assert.equal(describeTopic("news", { root }).readers, 1);
 * }
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function describeTopic(name: string, options: RootOptions = {}): TopicInfo {
  const { path, backend, realPath } = resolveTopic(name, options);
  const topic = topicName(name);
  if (backend === "device") {
    const info: TopicInfo = { topic, path, backend, size: deviceBufferSize(), messages: false };
    try {
      const counts = deviceCounts(realPath);
      if (counts) Object.assign(info, counts);
    } catch (err) {
      info.problem = err instanceof Error ? err.message : String(err);
    }
    return info;
  }
  try {
    const r = inspectRing(realPath);
    return {
      topic,
      path,
      backend,
      size: r.size,
      messages: r.messages,
      readers: r.readers,
      writers: r.writers,
    };
  } catch (err) {
    // A ring this user may not open is still a ring: only damaged files are "invalid".
    const denied = err instanceof FsbusError && err.code === "permission_denied";
    return {
      topic,
      path,
      backend: denied ? backend : "invalid",
      problem: err instanceof Error ? err.message : String(err),
    };
  }
}

/**
 * Lists the topics under a root (skipping `.lock` files, hidden files and directories).
 *
 * @param options The root.
 * @returns The topics, sorted by name; empty when the root does not exist.
 * @throws {FsbusError} When the root is not a directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, listTopics } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root, messages: true });
 * const [t] = listTopics({ root });
 * assert.deepEqual([t?.topic, t?.backend, t?.messages, t?.readers], ["news", "ring", true, 0]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function listTopics(options: RootOptions = {}): TopicInfo[] {
  const { root = defaultRoot() } = options;
  return topicNames(root).map((name) => describeTopic(name, { root }));
}

/**
 * The names of the topics under a root: every entry except hidden files, `.lock` files,
 * directories and other non-topics (sockets, FIFOs).
 *
 * @param root The root.
 * @returns The names, sorted; empty when the root does not exist.
 * @throws {FsbusError} When the root is not a directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, topicNames } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * createTopic("baf-test", { root });
 * assert.deepEqual(topicNames(root).sort(), ["baf-test", "news"]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function topicNames(root: string): string[] {
  try {
    ensureRoot(root, false);
  } catch (err) {
    if (err instanceof FsbusError && err.code === "not_found") return [];
    throw err;
  }
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(root)) {
      if (e.name.startsWith(".") || e.name.endsWith(".lock")) continue;
      if (e.isDirectory) continue;
      if (e.isFile || e.isSymlink) {
        names.push(e.name);
        continue;
      }
      // Char devices placed directly in the root.
      try {
        if (Deno.statSync(`${root}/${e.name}`).isCharDevice) names.push(e.name);
      } catch {
        // vanished
      }
    }
  } catch (err) {
    throw fromFsError(err, "Cannot list topic root", root);
  }
  return names.sort();
}

/** Where a topic lives, once resolved. */
export interface ResolvedTopic {
  /** The path named (possibly a symlink). */
  path: string;
  /** The path after following symlinks. */
  realPath: string;
  /** The backend. */
  backend: Backend;
  /** The file found (opening it later checks that it is still the same file). */
  stat: FdStat;
}

/**
 * Finds a topic and tells its backend: a character device means /dev/fanout, a regular file
 * a ring.
 *
 * @param name The topic's name or path.
 * @param options The root.
 * @returns Where it lives.
 * @throws {FsbusError} "not_found" when it does not exist; "invalid" for other kinds of file.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, resolveTopic } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * assert.equal(resolveTopic("news", { root }).backend, "ring");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function resolveTopic(name: string, options: RootOptions = {}): ResolvedTopic {
  const path = topicPath(name, options);
  const byName = !name.includes("/");
  const root = byName ? options.root ?? defaultRoot() : path.slice(0, path.lastIndexOf("/")) || "/";
  // A topic named by path lives in a directory that must be as safe as a root.
  ensureRoot(root, false);
  let st: FdStat;
  let realPath = path;
  try {
    st = lstatPath(path);
    if (st.kind === "symlink") {
      // baf's topics are symlinks to devices; in a root others can write to, only links
      // made by the caller or root are followed (as fs.protected_symlinks does in /tmp).
      if (byName && !trustedOwner(st.uid)) {
        throw new FsbusError(
          "permission_denied",
          `Cannot open topic "${name}": "${path}" is a symbolic link owned by uid ${st.uid}, ` +
            `not by you or root`,
        );
      }
      realPath = Deno.realPathSync(path);
      st = lstatPath(realPath);
    }
  } catch (err) {
    if (err instanceof FsbusError) throw err;
    if (
      err instanceof Deno.errors.NotFound || (err instanceof SysError && err.code === "ENOENT")
    ) {
      const where = byName ? ` in "${root}"` : "";
      throw new FsbusError(
        "not_found",
        `Cannot open topic "${topicName(name)}"${where}: no such topic`,
      );
    }
    throw fromFsError(err, "Cannot open topic", path);
  }
  if (st.kind === "char") return { path, realPath, backend: "device", stat: st };
  if (st.kind === "file") return { path, realPath, backend: "ring", stat: st };
  throw new FsbusError(
    "invalid",
    `Cannot open topic "${topicName(name)}": "${path}" is neither a ring file nor a device`,
  );
}

/** Options of {@linkcode openReader}. */
export interface ReaderOptions extends RootOptions {
  /**
   * Start at the oldest data the ring still holds instead of "now".
   *
   * @default {false}
   */
  fromOldest?: boolean;
  /** Create the topic (with default settings, or these when an object) when it does not exist. */
  create?: boolean | Omit<CreateOptions, "root" | "exclusive">;
}

function maybeCreate(
  name: string,
  options: RootOptions & { create?: boolean | Omit<CreateOptions, "root" | "exclusive"> },
): void {
  if (!options.create || name.includes("/")) return;
  const extra = typeof options.create === "object" ? options.create : {};
  try {
    Deno.lstatSync(topicPath(name, options));
    return;
  } catch {
    // missing: create it
  }
  createTopic(name, {
    ...extra,
    ...(options.root ? { root: options.root } : {}),
    exclusive: false,
  });
}

/**
 * Opens a reader of a topic, on whichever backend holds it.
 *
 * @param name The topic's name (or a path containing "/").
 * @param options Root, start position, creation.
 * @returns The reader.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, openWriter } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using r = openReader("news", { root, create: true });
 * using w = openWriter("news", { root });
 * w.write("hello\n");
 * assert.ok(r.waitSync(1000));
 * assert.deepEqual(r.take().map((c) => new TextDecoder().decode(c)), ["hello\n"]);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function openReader(name: string, options: ReaderOptions = {}): TopicReader {
  maybeCreate(name, options);
  const t = resolveTopic(name, options);
  const topic = topicName(name);
  const { fromOldest = false } = options;
  const from = fromOldest ? { fromOldest: true } : {};
  if (t.backend === "device") {
    return new DeviceReader(topic, t.realPath, { ...from, expect: t.stat });
  }
  return new RingReader(topic, openRing(t), from);
}

function openRing(t: ResolvedTopic): Ring {
  try {
    return Ring.open(t.realPath, { expect: t.stat });
  } catch (err) {
    if (err instanceof FsbusError && t.realPath !== t.path) {
      throw new FsbusError(err.code, err.message.replace(t.realPath, t.path), { cause: err });
    }
    throw err;
  }
}

/** Options of {@linkcode openWriter}. */
export interface WriterOptions extends RootOptions {
  /**
   * How long a write waits for a ring's writer lock held by a live process before it fails
   * with a "busy" error, in milliseconds.
   *
   * @default {3000}
   */
  lockTimeoutMs?: number;
  /** Create the topic when it does not exist (with these settings when an object). */
  create?: boolean | Omit<CreateOptions, "root" | "exclusive">;
}

/**
 * Opens a writer of a topic, on whichever backend holds it.
 *
 * @param name The topic's name (or a path containing "/").
 * @param options Root and creation.
 * @returns The writer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openReader, openWriter } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * using w = openWriter("news", { root, create: { size: 1 << 20 } });
 * using r = openReader("news", { root, fromOldest: true });
 * w.write("hello\n");
 * assert.equal(new TextDecoder().decode(r.take()[0]), "hello\n");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function openWriter(name: string, options: WriterOptions = {}): TopicWriter {
  maybeCreate(name, options);
  const t = resolveTopic(name, options);
  const topic = topicName(name);
  if (t.backend === "device") {
    return new DeviceWriter(topic, t.realPath, undefined, t.stat);
  }
  const lock = options.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: options.lockTimeoutMs };
  return new RingWriter(topic, openRing(t), lock);
}

/** baf's one-publisher lock on a topic, held until closed. */
export interface PublisherLock {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock. */
  close(): void;
}

/**
 * Takes baf's one-publisher lock on a topic: a non-blocking exclusive `flock(2)` on
 * `ROOT/NAME.lock`, held until the returned lock is closed.
 *
 * The lock file gets the topic's permission bits and group (anyone who may open a file may
 * flock it, so a world-readable lock would let users who cannot even read the topic block
 * its publishers). It is opened without following symlinks and must be a regular file; an
 * existing one of the caller's is brought in line with the topic, and one owned by a user
 * who owns neither the topic nor the root is refused.
 *
 * @param name The topic's name.
 * @param options The root.
 * @returns The held lock.
 * @throws {FsbusError} "busy" when another publisher holds it; "not_found" when the topic
 *   does not exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createTopic, lockPublisher } from "@x/fsbus/fanout";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * createTopic("news", { root });
 * const lock = lockPublisher("news", { root });
 * try {
 *   assert.throws(() => lockPublisher("news", { root })); // one publisher at a time
 * } finally {
 *   lock.close();
 * }
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function lockPublisher(name: string, options: RootOptions = {}): PublisherLock {
  const topic = resolveTopic(name, options);
  const path = `${topic.path}.lock`;
  let lock: FileLock;
  try {
    lock = FileLock.fromFd(path, openLockFile(path, topic.stat));
  } catch (err) {
    throw sysToFsbus(err, "Cannot open lock file", path);
  }
  let held: boolean;
  try {
    held = lock.tryLock();
  } catch (err) {
    lock.close();
    throw sysToFsbus(err, "Cannot lock", path);
  }
  if (!held) {
    lock.close();
    throw new FsbusError("busy", `Cannot use topic "${topicName(name)}": already being used`);
  }
  return lock;
}

const LOCK_OPEN = O.NOFOLLOW | O.NOCTTY | O.NONBLOCK;

function openLockFile(path: string, topic: FdStat): number {
  const mode = topic.mode & 0o666;
  let fd: number | undefined;
  let created = false;
  try {
    fd = openFd(path, O.RDWR | O.CREAT | O.EXCL | LOCK_OPEN, mode);
    created = true;
  } catch (err) {
    if (!(err instanceof SysError) || err.code !== "EEXIST") throw err;
  }
  if (fd === undefined) {
    try {
      fd = openFd(path, O.RDWR | LOCK_OPEN);
    } catch (err) {
      // Read permission is enough for flock(2).
      if (!(err instanceof SysError) || (err.code !== "EACCES" && err.code !== "EROFS")) throw err;
      fd = openFd(path, O.RDONLY | LOCK_OPEN);
    }
  }
  try {
    const st = fstat(fd);
    if (st.kind !== "file") {
      throw new FsbusError("invalid", `Cannot open lock file "${path}": not a regular file`);
    }
    const mine = st.uid === Deno.uid();
    if (!mine && !trustedOwner(st.uid) && st.uid !== topic.uid) {
      throw new FsbusError(
        "permission_denied",
        `Cannot open lock file "${path}": it is owned by uid ${st.uid}, who owns neither the ` +
          `topic nor the root (remove it)`,
      );
    }
    if (created || mine || Deno.uid() === 0) {
      // umask trimmed the bits of a new file; an old one may be 0644 from an older fsbus.
      if (st.gid !== topic.gid) libc().fchown(fd, -1 >>> 0, topic.gid);
      if (st.mode !== mode) libc().fchmod(fd, mode);
    }
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}
