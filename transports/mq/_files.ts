/**
 * A group's directory, opened once: every file in it (and in `.mq`) is reached from the
 * directory's descriptor with `O_NOFOLLOW | O_NONBLOCK` and checked on the open descriptor
 * to be a regular file, so a symbolic link, FIFO or device planted by another user is
 * refused, never followed. Small files (settings, checkpoint) are read with a size cap.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { closeFd, type FdStat, fstat, O, openFd, writeAllFd } from "../../sys/fs.ts";
import { fchmod, mkdirAt, openAt, renameAt, unlinkAt } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";
import { preadFull } from "../../sys/fd_io.ts";

/** Where a file of a group lives: the group's directory, or its hidden `.mq`. */
export type Place = "group" | "meta";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An open group directory and its `.mq`. */
export class GroupDir implements Disposable {
  /** The group's path, for messages. */
  readonly path: string;
  /** The group directory's descriptor. */
  readonly fd: number;
  /** `.mq`'s descriptor, or -1 when there is none (a group never opened by a writer). */
  readonly metaFd: number;
  /** Permission bits for files made in the group (its directory's, without execute). */
  readonly fileMode: number;
  #closed = false;

  private constructor(path: string, fd: number, metaFd: number, fileMode: number) {
    this.path = path;
    this.fd = fd;
    this.metaFd = metaFd;
    this.fileMode = fileMode;
  }

  /**
   * Opens a group's directory and its `.mq` (made when missing and `create` is set).
   *
   * @param path The group's directory.
   * @param create Make `.mq` when it is missing.
   * @returns The open directory.
   * @throws {FsbusError} When it is not a directory, or `.mq` is not one.
   */
  static open(path: string, create: boolean): GroupDir {
    let fd: number;
    try {
      fd = openFd(path, O.RDONLY | O.DIRECTORY);
    } catch (err) {
      if (err instanceof SysError && err.code === "ENOENT") {
        throw new FsbusError("not_found", `Cannot open group "${path}": no such directory`);
      }
      throw fromFsError(err, "Cannot open group", path);
    }
    try {
      const st = fstat(fd);
      if (create) {
        try {
          if (mkdirAt(fd, ".mq", 0o777)) {
            const meta = openAt(fd, ".mq", O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
            fchmod(meta, st.mode & 0o3777);
            closeFd(meta);
          }
        } catch (err) {
          throw fromFsError(err, "Cannot open group", path);
        }
      }
      let meta = -1;
      try {
        meta = openAt(fd, ".mq", O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
      } catch (err) {
        if (!(err instanceof SysError && err.code === "ENOENT")) {
          throw fromFsError(err, "Cannot open group", `${path}/.mq`);
        }
      }
      return new GroupDir(path, fd, meta, st.mode & 0o666);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  #dir(place: Place): number {
    if (place === "meta" && this.metaFd < 0) {
      throw new FsbusError("not_found", `Cannot open "${this.path}/.mq": no such directory`);
    }
    return place === "group" ? this.fd : this.metaFd;
  }

  /**
   * The path of a file, for messages.
   *
   * @param place Where it is.
   * @param name Its name.
   * @returns The path.
   */
  pathOf(place: Place, name: string): string {
    return place === "group" ? `${this.path}/${name}` : `${this.path}/.mq/${name}`;
  }

  /**
   * Opens a regular file of the group, never through a symbolic link. A file it makes
   * gets the group's file mode (see {@linkcode GroupDir.fileMode}), whatever the umask.
   *
   * @param place Where it is.
   * @param name Its name.
   * @param flags `O.*` flags (`O.CREAT` to make it when missing).
   * @param action What the caller is doing, for messages ("Cannot open group").
   * @returns The descriptor, or -1 when it does not exist and `O.CREAT` was not given
   *   and `optional` is set.
   * @throws {FsbusError} When it cannot be opened or is not a regular file.
   */
  openFile(place: Place, name: string, flags: number, action: string, optional = false): number {
    const dir = this.#dir(place);
    const plain = (flags & ~O.CREAT) | O.NOFOLLOW | O.NONBLOCK;
    let fd = -1;
    try {
      if (flags & O.CREAT) {
        try {
          fd = openAt(dir, name, plain | O.CREAT | O.EXCL, this.fileMode);
          fchmod(fd, this.fileMode);
        } catch (err) {
          if (!(err instanceof SysError && err.code === "EEXIST")) throw err;
        }
      }
      if (fd < 0) fd = openAt(dir, name, plain);
    } catch (err) {
      if (fd >= 0) closeFd(fd);
      if (optional && err instanceof SysError && err.code === "ENOENT") return -1;
      throw fromFsError(err, action, this.pathOf(place, name));
    }
    if (fstat(fd).kind !== "file") {
      closeFd(fd);
      throw new FsbusError(
        "invalid",
        `${action} "${this.pathOf(place, name)}": not a regular file`,
      );
    }
    return fd;
  }

  /**
   * Reads a small regular file of the group whole.
   *
   * @param place Where it is.
   * @param name Its name.
   * @param cap The most bytes it may hold.
   * @returns The text, or undefined when the file does not exist.
   * @throws {FsbusError} When it is not a regular file, or larger than `cap`.
   */
  readText(place: Place, name: string, cap: number): string | undefined {
    const fd = this.openFile(place, name, O.RDONLY, "Cannot read", true);
    if (fd < 0) return undefined;
    try {
      const size = fstat(fd).size;
      if (size > cap) {
        throw new FsbusError(
          "damaged",
          `Cannot read "${this.pathOf(place, name)}": ${size} bytes, more than ${cap} allowed`,
        );
      }
      const buf = new Uint8Array(size);
      return decoder.decode(buf.subarray(0, preadFull(fd, buf, 0)));
    } finally {
      closeFd(fd);
    }
  }

  /**
   * Replaces a file of the group atomically: writes a temporary file, then renames it.
   *
   * @param place Where it is.
   * @param name Its name.
   * @param text The new content.
   */
  writeText(place: Place, name: string, text: string): void {
    const dir = this.#dir(place);
    const tmp = `.${name}.tmp`; // hidden: never taken for a stream
    try {
      unlinkAt(dir, tmp);
      const fd = openAt(
        dir,
        tmp,
        O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | O.NONBLOCK,
        this.fileMode,
      );
      try {
        fchmod(fd, this.fileMode);
        writeAllFd(fd, encoder.encode(text));
      } finally {
        closeFd(fd);
      }
      renameAt(dir, tmp, dir, name);
    } catch (err) {
      throw fromFsError(err, "Cannot write", this.pathOf(place, name));
    }
  }

  /**
   * Removes a file of the group.
   *
   * @param place Where it is.
   * @param name Its name.
   * @returns False when there was none.
   */
  remove(place: Place, name: string): boolean {
    try {
      return unlinkAt(this.#dir(place), name);
    } catch (err) {
      throw fromFsError(err, "Cannot remove", this.pathOf(place, name));
    }
  }

  /**
   * What is at a name in the group, without following a symbolic link.
   *
   * @param place Where it is.
   * @param name Its name.
   * @returns The status, or undefined when nothing is there.
   */
  stat(place: Place, name: string): FdStat | undefined {
    let fd: number;
    try {
      fd = openAt(this.#dir(place), name, O.PATH | O.NOFOLLOW);
    } catch (err) {
      if (err instanceof SysError && (err.code === "ENOENT" || err.code === "ENOTDIR")) {
        return undefined;
      }
      throw err;
    }
    try {
      return fstat(fd);
    } finally {
      closeFd(fd);
    }
  }

  /**
   * The names in the group's directory (as open, even if its path now names another).
   *
   * @returns The entries.
   */
  list(): Deno.DirEntry[] {
    return [...Deno.readDirSync(`/proc/self/fd/${this.fd}`)];
  }

  /** Closes both descriptors. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.metaFd >= 0) closeFd(this.metaFd);
    closeFd(this.fd);
  }
}
