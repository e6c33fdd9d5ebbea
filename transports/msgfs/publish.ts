/**
 * Publishing to a directory bus: each message is a new file, created in place with
 * `O_CREAT|O_EXCL|O_NOFOLLOW`, written fully and closed once (one `IN_CLOSE_WRITE`), or, in
 * atomic mode, written in the hidden temp directory and renamed in (`IN_MOVED_TO`).
 *
 * @module
 */

import { fromFsError, FsbusError, toBytes } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, O, writeAllFd } from "../../sys/fs.ts";
import { openAtBytes, openDir, renameAtBytes, unlinkAt } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";
import { checkTopic, idTime, lastIdMs, newIdInto } from "./names.ts";
import { readConfig } from "./config.ts";
import { Sweeper, TEMP_DIR } from "./retention.ts";
import { type BusMode, busMode, makeTopicByPath, openChild, openTopic } from "./_tree.ts";

/** How many topic directories a publisher keeps open at once. */
const TOPIC_FDS = 64;

/**
 * How a {@linkcode Publisher} writes.
 *
 * @example
 * ```ts
 * import type { PublisherOptions } from "./publish.ts";
 * const options: PublisherOptions = { atomic: true };
 * ```
 */
export interface PublisherOptions {
  /**
   * Write each message to a hidden temp directory and rename it into the bus, so that no
   * subscriber can ever see a partial file. Subscribers must watch `IN_MOVED_TO`, as fsbus
   * does; the msgfs reference listener and `inotifywait -e close_write` do not.
   *
   * @default {false}
   */
  atomic?: boolean;
  /**
   * Sweep expired messages while publishing.
   *
   * @default {true}
   */
  sweep?: boolean;
  /**
   * In atomic mode, keep the file for the next message ready in the temp directory: a
   * publish is then a write, a close and a rename, the file having been made after the
   * message before, off this one's path. For a long-running publisher that counts each
   * microsecond of latency (a bridge writing into a bus). It holds one empty file in the
   * temp directory while it runs, removed by {@linkcode Publisher.close} (or, if the process
   * dies, by a sweep once it is older than the bus's time to live). A spare that a sweep
   * removed meanwhile is noticed at the rename, and the message made anew. Only with FFI.
   *
   * @default {false}
   */
  spare?: boolean;
}

/**
 * What {@linkcode Publisher.publish} wrote.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Publisher } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const publisher = new Publisher(dir);
 * const { id, topic, path } = publisher.publish("hello");
 * assert.equal(path, `${dir}/${id}`);
 * assert.equal(topic, "");
 * assert.equal(Deno.readTextFileSync(path), "hello");
 * await publisher.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface Published {
  /** The message's id: its file name. */
  id: string;
  /** The topic it was published to ("" for the bus's root). */
  topic: string;
  /** The message file's path. */
  path: string;
}

/**
 * Publishes messages to one bus. Synchronous: a publish returns once the file is complete.
 * With FFI it holds the bus (and recently used topics) open and creates files relative to
 * those descriptors, so a topic swapped for a symlink is never written through; topics it
 * makes take the bus's mode and group. Call {@linkcode Publisher.close} when done.
 *
 * @example Publish two messages, one to a topic
 * ```ts
 * import { Publisher } from "./publish.ts";
 * const dir = Deno.makeTempDirSync();
 * const pub = new Publisher(dir);
 * pub.publish("hello");
 * pub.publish(new Uint8Array([0, 1, 2]), { topic: "binary" });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Publisher {
  /** The bus directory. */
  readonly dir: string;
  readonly #atomic: boolean;
  readonly #ffi: boolean;
  readonly #mode: number;
  readonly #sweeper: Sweeper | undefined;
  readonly #madeTopics = new Set<string>();
  /** The bus's descriptor (with FFI). */
  #busFd = -1;
  #busMode: BusMode = { mode: 0o700, gid: -1 };
  /** Descriptors of topic directories, least recently used first. */
  readonly #topicFds = new Map<string, number>();
  #tmpFd = -1;
  /** The message's name as a C string: written by publish(), read by the open. */
  readonly #cname = new Uint8Array(37);
  readonly #spare: boolean;
  /** The spare file (see {@linkcode PublisherOptions.spare}): its descriptor and name. */
  #spareFd = -1;
  #spareName = "";
  readonly #spareC = new Uint8Array(37);

  /**
   * Opens a bus for publishing.
   *
   * @param dir The bus directory; it must exist.
   * @param options Atomic mode, sweeping.
   * @throws {FsbusError} When `dir` is missing, not a directory, or unreadable.
   */
  constructor(dir: string, options: PublisherOptions = {}) {
    this.dir = dir.replace(/(.)\/+$/, "$1");
    this.#ffi = ffiAvailable();
    let mode: number;
    if (this.#ffi) {
      try {
        this.#busFd = openDir(this.dir);
        this.#busMode = busMode(this.#busFd);
      } catch (err) {
        if (this.#busFd >= 0) closeFd(this.#busFd);
        throw fromFsError(err, "Cannot publish to", this.dir);
      }
      mode = this.#busMode.mode;
    } else {
      let info: Deno.FileInfo;
      try {
        info = Deno.statSync(this.dir);
      } catch (err) {
        throw fromFsError(err, "Cannot publish to", this.dir);
      }
      if (!info.isDirectory) {
        throw new FsbusError("not_a_directory", `Cannot publish to "${this.dir}": not a directory`);
      }
      mode = info.mode ?? 0;
    }
    // Readable by those who may read the bus; writable by the publisher alone.
    this.#mode = 0o600 | (mode & 0o044);
    const { atomic = false, sweep = true, spare = false } = options;
    this.#atomic = atomic;
    this.#spare = atomic && spare && this.#ffi;
    if (sweep) {
      let ttlMs: number;
      try {
        ttlMs = readConfig(this.dir).ttlMs;
      } catch (err) {
        this.#release();
        if (err instanceof FsbusError && err.code === "permission_denied") {
          throw new FsbusError(
            "permission_denied",
            `Cannot publish to "${this.dir}": permission denied`,
          );
        }
        throw err;
      }
      this.#sweeper = new Sweeper(this.dir, ttlMs);
    }
  }

  /**
   * Publishes one message.
   *
   * @param data The payload: bytes, or text (encoded as UTF-8).
   * @param options The topic (a subdirectory, created when missing); the id, for a caller
   *   that must know it before the message appears (one made by {@linkcode newId} just
   *   before; default a new one).
   * @returns The message's id and path.
   * @throws {FsbusError} When the file cannot be written (permission, space, ...), or `id`
   *   is not an id.
   */
  publish(data: Uint8Array | string, options?: { topic?: string; id?: string }): Published {
    const bytes = typeof data === "string" ? toBytes(data) : data;
    const topic = options?.topic ? checkTopic(options.topic) : "";
    let id: string;
    let nowMs: number;
    // The name's bytes go to the system call as written here (37 bytes: the id, then NUL).
    const cname = this.#cname;
    if (options === undefined || options.id === undefined) {
      id = newIdInto(cname);
      nowMs = lastIdMs();
    } else {
      id = options.id;
      // The pattern admits hex digits and dashes only: one path segment, 36 ASCII bytes.
      if (idTime(id) === undefined) {
        throw new FsbusError("invalid", `Cannot publish "${id}": not a message id`);
      }
      for (let i = 0; i < 36; i++) cname[i] = id.charCodeAt(i);
      nowMs = Date.now();
    }
    const path = topic ? `${this.dir}/${topic}/${id}` : `${this.dir}/${id}`;
    try {
      this.#write(topic, path, id, bytes);
    } catch (err) {
      throw fromFsError(err, "Cannot publish", path);
    }
    if (this.#sweeper !== undefined) this.#sweeper.maybeSweep(nowMs);
    return { id, topic, path };
  }

  #write(topic: string, path: string, id: string, bytes: Uint8Array): void {
    if (!this.#ffi) {
      this.#writeByPath(topic, path, id, bytes);
      return;
    }
    let target = topic ? this.#topicFd(topic) : this.#busFd;
    if (!this.#atomic) {
      try {
        this.#createAt(target, id, bytes);
      } catch (err) {
        // A cached topic directory removed meanwhile: open (or make) it again, once.
        if (!topic || !isNotFound(err)) throw err;
        this.#dropTopic(topic);
        this.#createAt(this.#topicFd(topic), id, bytes);
      }
      return;
    }
    if (this.#tmpFd < 0) this.#tmpFd = openChild(this.#busFd, TEMP_DIR, this.#busMode);
    if (this.#spareFd >= 0 && this.#fromSpare(target, id, bytes)) {
      this.#makeSpare();
      return;
    }
    this.#createAt(this.#tmpFd, id, bytes);
    try {
      try {
        renameAtBytes(this.#tmpFd, this.#cname, target, this.#cname, id);
      } catch (err) {
        if (!topic || !isNotFound(err)) throw err;
        this.#dropTopic(topic);
        target = this.#topicFd(topic);
        renameAtBytes(this.#tmpFd, this.#cname, target, this.#cname, id);
      }
    } catch (err) {
      try {
        unlinkAt(this.#tmpFd, id);
      } catch {
        // nothing left to clean
      }
      throw err;
    }
    if (this.#spare) this.#makeSpare();
  }

  /**
   * Publishes through the spare file: written fully (a failed write removes it before it is
   * closed, and fails the publish), closed, renamed to the message's name. False when the
   * rename found no spare (a sweep took it) or no topic directory (removed meanwhile): the
   * caller makes the message anew.
   */
  #fromSpare(target: number, id: string, bytes: Uint8Array): boolean {
    const fd = this.#spareFd;
    const name = this.#spareName;
    this.#spareFd = -1;
    try {
      writeAllFd(fd, bytes);
    } catch (err) {
      this.#dropSpare(name);
      closeFd(fd);
      throw err;
    }
    closeFd(fd);
    try {
      renameAtBytes(this.#tmpFd, this.#spareC, target, this.#cname, id);
      return true;
    } catch (err) {
      this.#dropSpare(name);
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Makes the next spare file; without one (no room, ...), the next publish makes its own. */
  #makeSpare(): void {
    try {
      const name = newIdInto(this.#spareC);
      this.#spareFd = openAtBytes(
        this.#tmpFd,
        this.#spareC,
        O.WRONLY | O.CREAT | O.EXCL,
        this.#mode,
        name,
      );
      this.#spareName = name;
    } catch {
      this.#spareFd = -1;
    }
  }

  #dropSpare(name: string): void {
    try {
      unlinkAt(this.#tmpFd, name);
    } catch {
      // gone already
    }
  }

  /** The descriptor of a topic's directory, made with the bus's mode when missing. */
  #topicFd(topic: string): number {
    const cached = this.#topicFds.get(topic);
    if (cached !== undefined) {
      this.#topicFds.delete(topic);
      this.#topicFds.set(topic, cached);
      return cached;
    }
    const fd = openTopic(this.#busFd, topic, this.#busMode);
    if (this.#topicFds.size >= TOPIC_FDS) {
      const [oldest, oldFd] = this.#topicFds.entries().next().value!;
      this.#topicFds.delete(oldest);
      closeFd(oldFd);
    }
    this.#topicFds.set(topic, fd);
    return fd;
  }

  #dropTopic(topic: string): void {
    const fd = this.#topicFds.get(topic);
    if (fd === undefined) return;
    this.#topicFds.delete(topic);
    closeFd(fd);
  }

  /**
   * Creates a message file in an open directory: written fully, then closed once. A write that
   * fails (ENOSPC, EDQUOT, EIO, ...) removes the file *before* closing it, so the close that
   * announces it finds no file: a failed publish is never delivered.
   */
  #createAt(dirfd: number, name: string, bytes: Uint8Array): void {
    // `name` is the id whose bytes publish() wrote in #cname.
    const fd = openAtBytes(dirfd, this.#cname, O.WRONLY | O.CREAT | O.EXCL, this.#mode, name);
    try {
      writeAllFd(fd, bytes);
    } catch (err) {
      try {
        unlinkAt(dirfd, name);
      } catch {
        // already gone
      }
      closeFd(fd);
      throw err;
    }
    closeFd(fd);
  }

  /** Without FFI: the same by path (a topic swapped for a symlink is not detected). */
  #writeByPath(topic: string, path: string, id: string, bytes: Uint8Array): void {
    if (topic && !this.#madeTopics.has(topic)) {
      makeTopicByPath(this.dir, topic);
      this.#madeTopics.add(topic);
    }
    if (!this.#atomic) {
      this.#createByPath(path, bytes);
      return;
    }
    const tmp = `${this.dir}/${TEMP_DIR}/${id}`;
    try {
      this.#createByPath(tmp, bytes);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      makeTopicByPath(this.dir, TEMP_DIR);
      this.#createByPath(tmp, bytes);
    }
    try {
      Deno.renameSync(tmp, path);
    } catch (err) {
      try {
        Deno.removeSync(tmp);
      } catch {
        // nothing left to clean
      }
      throw err;
    }
  }

  /** Without FFI: create, write fully, and on failure remove before closing. */
  #createByPath(path: string, bytes: Uint8Array): void {
    const file = Deno.openSync(path, { write: true, createNew: true, mode: this.#mode });
    try {
      for (let off = 0; off < bytes.length;) off += file.writeSync(bytes.subarray(off));
    } catch (err) {
      try {
        Deno.removeSync(path);
      } catch {
        // already gone
      }
      file.close();
      throw err;
    }
    file.close();
  }

  #release(): void {
    if (this.#spareFd >= 0) {
      this.#dropSpare(this.#spareName);
      closeFd(this.#spareFd);
      this.#spareFd = -1;
    }
    for (const fd of this.#topicFds.values()) closeFd(fd);
    this.#topicFds.clear();
    if (this.#tmpFd >= 0) closeFd(this.#tmpFd);
    if (this.#busFd >= 0) closeFd(this.#busFd);
    this.#tmpFd = this.#busFd = -1;
  }

  /**
   * Waits for a background sweep to finish and releases the publisher's descriptors. A
   * short-lived process calls this before it exits, so that the sweep it started (and
   * recorded in the bus's marker) is really done.
   *
   * @example
   * ```ts
   * import { Publisher } from "./publish.ts";
   * const dir = Deno.makeTempDirSync();
   * const pub = new Publisher(dir);
   * pub.publish("hello");
   * await pub.close();
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  async close(): Promise<void> {
    await this.#sweeper?.running;
    this.#release();
  }

  /** Same as {@linkcode Publisher.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function isNotFound(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || (err instanceof SysError && err.code === "ENOENT");
}

/**
 * Publishes one message to a bus: the one-shot form of {@linkcode Publisher}.
 *
 * @param dir The bus directory.
 * @param data The payload.
 * @param options The topic, atomic mode.
 * @returns The message's id and path.
 *
 * @example
 * ```ts
 * import { publish } from "./publish.ts";
 * const dir = Deno.makeTempDirSync();
 * const { id } = publish(dir, "hello");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function publish(
  dir: string,
  data: Uint8Array | string,
  options: PublisherOptions & { topic?: string } = {},
): Published {
  const { topic, ...rest } = options;
  const publisher = new Publisher(dir, rest);
  try {
    return publisher.publish(data, topic === undefined ? {} : { topic });
  } finally {
    void publisher.close(); // after a background sweep, if one started
  }
}
