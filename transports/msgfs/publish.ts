/**
 * Publishing to a directory bus: each message is a new file, created in place with
 * `O_CREAT|O_EXCL|O_NOFOLLOW`, written fully and closed once (one `IN_CLOSE_WRITE`), or, in
 * atomic mode, written in the hidden temp directory and renamed in (`IN_MOVED_TO`).
 *
 * @module
 */

import { fromFsError, FsbusError, toBytes } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, O, openFd, writeAllFd } from "../../sys/fs.ts";
import { SysError } from "../../sys/errno.ts";
import { checkTopic, newId } from "./names.ts";
import { readConfig } from "./config.ts";
import { Sweeper, TEMP_DIR } from "./retention.ts";

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
   */
  atomic?: boolean;
  /** Sweep expired messages while publishing (default true). */
  sweep?: boolean;
}

/**
 * What {@linkcode Publisher.publish} wrote.
 *
 * @example
 * ```ts ignore
 * const { id, path } = publisher.publish("hello");
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

  /**
   * Opens a bus for publishing.
   *
   * @param dir The bus directory; it must exist.
   * @param options Atomic mode, sweeping.
   * @throws {FsbusError} When `dir` is missing, not a directory, or unreadable.
   */
  constructor(dir: string, options: PublisherOptions = {}) {
    this.dir = dir.replace(/(.)\/+$/, "$1");
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(this.dir);
    } catch (err) {
      throw fromFsError(err, "Cannot publish to", this.dir);
    }
    if (!info.isDirectory) {
      throw new FsbusError("not_a_directory", `Cannot publish to "${this.dir}": not a directory`);
    }
    // Readable by those who may read the bus; writable by the publisher alone.
    this.#mode = 0o600 | ((info.mode ?? 0) & 0o044);
    this.#atomic = options.atomic ?? false;
    this.#ffi = ffiAvailable();
    if (options.sweep ?? true) {
      let ttlMs: number;
      try {
        ttlMs = readConfig(this.dir).ttlMs;
      } catch (err) {
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
   * @param options The topic (a subdirectory, created when missing).
   * @returns The message's id and path.
   * @throws {FsbusError} When the file cannot be written (permission, space, ...).
   */
  publish(data: Uint8Array | string, options: { topic?: string } = {}): Published {
    const bytes = toBytes(data);
    const topic = options.topic ? checkTopic(options.topic) : "";
    const id = newId();
    const dir = topic ? `${this.dir}/${topic}` : this.dir;
    const path = `${dir}/${id}`;
    try {
      this.#write(dir, topic, path, id, bytes);
    } catch (err) {
      throw fromFsError(err, "Cannot publish", path);
    }
    this.#sweeper?.maybeSweep();
    return { id, topic, path };
  }

  #write(dir: string, topic: string, path: string, id: string, bytes: Uint8Array): void {
    if (topic && !this.#madeTopics.has(topic)) {
      Deno.mkdirSync(dir, { recursive: true });
      this.#madeTopics.add(topic);
    }
    if (!this.#atomic) {
      this.#create(path, bytes);
      return;
    }
    const tmp = `${this.dir}/${TEMP_DIR}/${id}`;
    try {
      this.#create(tmp, bytes);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      Deno.mkdirSync(`${this.dir}/${TEMP_DIR}`, { recursive: true, mode: 0o700 });
      this.#create(tmp, bytes);
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

  #create(path: string, bytes: Uint8Array): void {
    if (!this.#ffi) {
      Deno.writeFileSync(path, bytes, { createNew: true, mode: this.#mode });
      return;
    }
    const fd = openFd(path, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, this.#mode);
    try {
      writeAllFd(fd, bytes);
    } catch (err) {
      closeFd(fd);
      try {
        Deno.removeSync(path);
      } catch {
        // already gone
      }
      throw err;
    }
    closeFd(fd);
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
  return new Publisher(dir, rest).publish(data, topic === undefined ? {} : { topic });
}
