/**
 * Topics: named rings under a topic root. A topic is `ROOT/NAME`, either a ring file made by
 * fsbus or a character device (a real /dev/fanout, or a `/dev/baf/NAME` symlink to one).
 * `ROOT/NAME.lock` is the lock file of baf's one-publisher rule; files starting with "." are
 * fsbus's own temporaries.
 *
 * This file creates, removes, lists, describes, resolves and opens topics; the root and topic
 * names are in `root.ts`, baf's one-publisher lock in `publisher_lock.ts`.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { closeFd, type FdStat, lstatPath, O, openFd } from "../../sys/fs.ts";
import { check, libc } from "../../sys/libc.ts";
import { SysError } from "../../sys/errno.ts";
import type { Backend, TopicReader, TopicWriter } from "./endpoint.ts";
import { checkRingSize, DEFAULT_RING_SIZE, initRingFile, inspectRing, Ring } from "./ring.ts";
import { RingReader, RingWriter } from "./ring_endpoint.ts";
import { deviceCounts, deviceMaxWrite, DeviceReader, DeviceWriter } from "./device.ts";
import { sysToFsbus } from "./ring.ts";
import {
  checkTopicName,
  defaultRoot,
  ensureRoot,
  type RootOptions,
  topicName,
  topicPath,
  trustedOwner,
} from "./root.ts";

/** The default permission bits of a new topic: owner and group read and write. */
export const DEFAULT_TOPIC_MODE = 0o660;

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
