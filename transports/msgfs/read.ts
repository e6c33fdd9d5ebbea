/**
 * Reading message files safely: never through a symlink, never a FIFO or device, never past
 * a size limit. Through FFI, `openat(O_NOFOLLOW|O_NONBLOCK)` from the directory's descriptor,
 * then one `statx` on the file's, makes the check and the read one act: the four calls of the
 * C floor (open, status, read, close); without FFI, `lstat` then read (a narrow race, said in
 * the README).
 *
 * @module
 */

import { closeFds, type FileKind, O } from "../../sys/fs.ts";
import { openAt, readSized, statusAt, statusFd } from "../../sys/dirfd.ts";
import { Errno, SysError } from "../../sys/errno.ts";
import { Uring } from "../../sys/uring.ts";

/**
 * What a message file looks like: its kind, size, times, and what tells a rewrite or a
 * replacement apart ({@linkcode sameFile}: inode, size and modification time).
 *
 * @example
 * ```ts
 * import type { FileState } from "./read.ts";
 * const s: FileState = {
 *   kind: "file", size: 2, mtimeMs: 0, ctimeMs: 0, ino: 7, mtimeSec: 0, mtimeNsec: 0,
 * };
 * ```
 */
export interface FileState {
  /** The kind of file. */
  kind: FileKind;
  /** Size in bytes. */
  size: number;
  /** Modification time in milliseconds (with a fraction where known). */
  mtimeMs: number;
  /** Status change time in milliseconds: the last write, or when it was created or renamed. */
  ctimeMs: number;
  /** Inode number. */
  ino: number;
  /** Modification time: whole seconds. */
  mtimeSec: number;
  /** Modification time: nanoseconds within the second. */
  mtimeNsec: number;
}

type Known = Pick<FileState, "ino" | "size" | "mtimeSec" | "mtimeNsec">;

/**
 * Messages up to {@linkcode POOLED_MAX} bytes are read into views of one shared buffer of this
 * size per subscription, not each into its own: one allocation per some sixty 1 KiB messages.
 */
const POOL_BYTES = 64 * 1024;
/** The largest message read into the pool. */
const POOLED_MAX = 4096;
/**
 * The most files read and not closed yet: their descriptors are closed together, a run of
 * consecutive numbers in one `close_range(2)` (see {@linkcode MessageFiles.flush}).
 */
const CLOSE_BATCH = 16;
/**
 * The most files {@linkcode MessageFiles.readMany} reads at once: their opens go through
 * io_uring, one ring entry each (reads and closes are plain calls).
 */
export const READ_BATCH = 64;

/**
 * Whether two states are of the same file, unchanged: same inode, size and modification time.
 *
 * @param a A state.
 * @param b Another.
 * @returns True when neither was rewritten or replaced in between.
 *
 * @example
 * ```ts
 * import { type FileState, sameFile } from "./read.ts";
 * const a: FileState = {
 *   kind: "file", size: 2, mtimeMs: 0, ctimeMs: 0, ino: 7, mtimeSec: 0, mtimeNsec: 0,
 * };
 * console.log(sameFile(a, { ...a, size: 3 })); // false
 * ```
 */
export function sameFile(a: Known, b: Known): boolean {
  return a.ino === b.ino && a.size === b.size && a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec;
}

/**
 * The outcome of {@linkcode readMessageFile}: the bytes, or why there are none.
 *
 * @example
 * ```ts
 * import type { ReadOutcome } from "./read.ts";
 * const r: ReadOutcome = { ok: false, why: "gone" };
 * ```
 */
export type ReadOutcome =
  | { ok: true; state: FileState; data: Uint8Array }
  | { ok: false; why: "gone" }
  | { ok: false; why: "skip"; reason: string; state?: FileState };

/**
 * Reads message files with or without FFI.
 *
 * With FFI, a file read stays open until {@linkcode MessageFiles.flush} (or until
 * {@linkcode CLOSE_BATCH} files wait): closing the files of a batch together saves most of
 * one system call per message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MessageFiles } from "./read.ts";
 * import { openDir } from "../../sys/dirfd.ts";
 * import { closeFd } from "../../sys/fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.writeTextFileSync(`${dir}/msg`, "hello");
 * const files = new MessageFiles(true);
 * const bus = openDir(dir);
 * const r = files.read(bus, "msg", `${dir}/msg`, 1 << 20);
 * assert.ok(r?.ok);
 * assert.equal(new TextDecoder().decode(r.data), "hello");
 * assert.deepEqual(files.read(bus, "gone", `${dir}/gone`, 1 << 20), { ok: false, why: "gone" });
 * files.flush();
 * closeFd(bus);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class MessageFiles {
  readonly #ffi: boolean;
  /** Small messages are read into this shared buffer, at `#poolAt` (see {@linkcode POOL_BYTES}). */
  #pool = new Uint8Array(0);
  #poolAt = 0;
  /** Descriptors of files read, to close: the first `#unclosed`. */
  readonly #toClose = new Int32Array(CLOSE_BATCH);
  #unclosed = 0;
  /** The ring of {@linkcode MessageFiles.readMany}: null until first used, undefined when
   * io_uring cannot be used here. */
  #ring: Uring | undefined | null = null;
  /** readMany's descriptors. */
  readonly #fds = new Int32Array(READ_BATCH);

  /**
   * @param ffi Whether libc may be used.
   */
  constructor(ffi: boolean) {
    this.#ffi = ffi;
  }

  /**
   * The state of a file, without following a symlink.
   *
   * @param dirfd The directory's descriptor (with FFI).
   * @param name The file's name in it.
   * @param path The file's path (without FFI).
   * @returns The state, or undefined when the file does not exist (or cannot be looked at).
   */
  state(dirfd: number, name: string, path: string): FileState | undefined {
    try {
      if (this.#ffi) {
        const st = statusAt(dirfd, name);
        return st; // a status has every field a state has
      }
      return fromFileInfo(Deno.lstatSync(path));
    } catch {
      return undefined;
    }
  }

  /**
   * Reads a message file.
   *
   * @param dirfd The directory's descriptor (with FFI).
   * @param name The file's name in it.
   * @param path The file's path (without FFI).
   * @param maxSize The largest message accepted.
   * @param delivered The state it had when delivered before, if it was: the file is not read
   *   again while unchanged.
   * @returns The bytes and state, or why not; undefined when it is unchanged since
   *   `delivered`, or when it holds more or fewer bytes than its status said (a writer still
   *   at work: its close comes later). With FFI the file is looked at once, before it is read:
   *   a writer that rewrites it in place, at the same size, during that read (never fsbus)
   *   may have it delivered mixed, then again once it closes.
   */
  read(
    dirfd: number,
    name: string,
    path: string,
    maxSize: number,
    delivered?: Known,
  ): ReadOutcome | undefined {
    return this.#ffi
      ? this.#readFfi(dirfd, name, maxSize, delivered)
      : readDeno(path, maxSize, delivered);
  }

  #readFfi(
    dirfd: number,
    name: string,
    maxSize: number,
    delivered?: Known,
  ): ReadOutcome | undefined {
    let fd: number;
    try {
      fd = openAt(dirfd, name, O.RDONLY | O.NONBLOCK | O.NOCTTY);
    } catch (err) {
      if (!(err instanceof SysError)) throw err;
      return openFailed(err.errno);
    }
    try {
      return this.#readOpen(fd, maxSize, delivered);
    } finally {
      this.#toClose[this.#unclosed++] = fd;
      if (this.#unclosed === CLOSE_BATCH) this.flush();
    }
  }

  /** Checks an open message file through its descriptor, then reads it (see `read`). */
  #readOpen(fd: number, maxSize: number, delivered?: Known): ReadOutcome | undefined {
    try {
      const st = statusFd(fd);
      if (st.kind !== "file") {
        return { ok: false, why: "skip", reason: "not a regular file", state: st };
      }
      // Removed before it could be read: a failed publish is removed before its close.
      if (st.nlink === 0) return { ok: false, why: "gone" };
      if (delivered !== undefined && sameFile(delivered, st)) return undefined;
      const state: FileState = st;
      if (state.size > maxSize) return tooLarge(maxSize, state);
      // More or fewer bytes than its status said: still being written (its close comes later).
      const data = readSized(fd, state.size, this.#space(state.size));
      if (data === undefined) return undefined;
      return { ok: true, state, data };
    } catch (err) {
      if (!(err instanceof SysError)) throw err;
      return { ok: false, why: "skip", reason: err.reason };
    }
  }

  /**
   * Whether {@linkcode MessageFiles.readMany} reads through io_uring (sets the ring up on first
   * call): false without FFI, where io_uring cannot be used, or with `FSBUS_URING=0`.
   *
   * @returns True when a batch's opens cost one kernel entry.
   */
  batches(): boolean {
    if (!this.#ffi) return false;
    if (this.#ring === null) this.#ring = Uring.open(READ_BATCH);
    return this.#ring !== undefined;
  }

  /**
   * Reads several message files, with the same checks as {@linkcode MessageFiles.read}
   * (never through a symlink, nothing but a regular file, not past `maxSize`): every file's
   * `openat` in one io_uring submission, then for each a `statx` of its open descriptor (the
   * check is on the file opened, not on a name that could be swapped) and its read, then the
   * closes (`close_range(2)`). Every file is closed when it returns. Without io_uring, one
   * {@linkcode MessageFiles.read} after another. Needs FFI (directory descriptors).
   *
   * Unlike `read`, it does not compare with what was delivered before: the caller does, with
   * {@linkcode sameFile} on the state returned.
   *
   * @param dirfds Each file's directory descriptor (undefined: none, the outcome is too).
   * @param names Each file's name in it.
   * @param count How many of the above to read: {@linkcode READ_BATCH} at most.
   * @param maxSize The largest message accepted.
   * @param out Where the outcomes go, one per file, in order (undefined: a writer still at
   *   work, or no directory).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageFiles, type ReadOutcome } from "./read.ts";
   * import { openDir } from "../../sys/dirfd.ts";
   * import { closeFd } from "../../sys/fs.ts";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * Deno.writeTextFileSync(`${dir}/a`, "hello");
   * Deno.symlinkSync(`${dir}/a`, `${dir}/link`);
   * const files = new MessageFiles(true);
   * const bus = openDir(dir);
   * const out: (ReadOutcome | undefined)[] = [];
   * files.readMany([bus, bus, bus], ["a", "link", "gone"], 3, 1 << 20, out);
   * assert.ok(out[0]?.ok && new TextDecoder().decode(out[0].data) === "hello");
   * assert.deepEqual(out[1], { ok: false, why: "skip", reason: "a symbolic link" });
   * assert.deepEqual(out[2], { ok: false, why: "gone" });
   * files.close();
   * closeFd(bus);
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  readMany(
    dirfds: ArrayLike<number | undefined>,
    names: ArrayLike<string>,
    count: number,
    maxSize: number,
    out: (ReadOutcome | undefined)[],
  ): void {
    if (count > READ_BATCH) throw new RangeError(`readMany: ${count} files, ${READ_BATCH} at most`);
    if (!this.#ffi) throw new Error("readMany needs FFI: use read()");
    out.length = count;
    if (!this.batches()) {
      for (let i = 0; i < count; i++) {
        const fd = dirfds[i];
        out[i] = fd === undefined ? undefined : this.read(fd, names[i]!, "", maxSize);
      }
      this.flush();
      return;
    }
    try {
      this.#readRing(this.#ring!, dirfds, names, count, maxSize, out);
    } catch (err) {
      // The ring failed as a whole (not one of its calls): use the plain calls from now on.
      this.#ring!.close();
      this.#ring = undefined;
      throw err;
    }
  }

  #readRing(
    ring: Uring,
    dirfds: ArrayLike<number | undefined>,
    names: ArrayLike<string>,
    count: number,
    maxSize: number,
    out: (ReadOutcome | undefined)[],
  ): void {
    const fds = this.#fds;
    let queued = 0;
    for (let i = 0; i < count; i++) {
      out[i] = undefined;
      fds[i] = -1;
      const dirfd = dirfds[i];
      if (dirfd === undefined) continue;
      try {
        ring.openAt(dirfd, names[i]!, O.RDONLY | O.NONBLOCK | O.NOCTTY, i);
        queued++;
      } catch (err) {
        if (!(err instanceof SysError)) throw err;
        out[i] = { ok: false, why: "skip", reason: err.reason };
      }
    }
    if (queued === 0) return;
    ring.submit((i, res) => {
      if (res >= 0) fds[i] = res;
      else out[i] = openFailed(-res);
    });
    // Each file opened is checked through its descriptor before it is read, as read() does.
    // The reads are plain read(2)s: a tmpfs file cannot be read without blocking as io_uring
    // asks, so a read in the ring would go to a kernel worker thread, and cost more.
    let open = 0;
    for (let i = 0; i < count; i++) {
      const fd = fds[i]!;
      if (fd < 0) continue;
      out[i] = this.#readOpen(fd, maxSize);
      fds[open++] = fd;
    }
    // Opened one after another, their numbers mostly run on: one close_range(2) each run.
    closeFds(fds, open);
  }

  /** Frees what the reader holds: open files and its ring. */
  close(): void {
    this.flush();
    this.#ring?.close();
    this.#ring = undefined;
  }

  /**
   * Closes the files read since the last flush: call it before waiting, and when done.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { MessageFiles } from "./read.ts";
   * import { openDir } from "../../sys/dirfd.ts";
   * import { closeFd } from "../../sys/fs.ts";
   * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
   * Deno.writeTextFileSync(`${dir}/msg`, "hello");
   * const files = new MessageFiles(true);
   * const bus = openDir(dir);
   * assert.ok(files.read(bus, "msg", `${dir}/msg`, 1 << 20)?.ok);
   * files.flush(); // msg's descriptor is closed now
   * closeFd(bus);
   * Deno.removeSync(dir, { recursive: true });
   * ```
   */
  flush(): void {
    if (this.#unclosed === 0) return;
    closeFds(this.#toClose, this.#unclosed);
    this.#unclosed = 0;
  }

  /** Room for a small message (and the one byte more that shows a file that grew) in the
   * pool, or undefined for a large one (read into its own buffer). */
  #space(size: number): Uint8Array | undefined {
    if (size > POOLED_MAX) return undefined;
    if (this.#poolAt + size + 1 > this.#pool.length) {
      this.#pool = new Uint8Array(POOL_BYTES);
      this.#poolAt = 0;
    }
    const at = this.#poolAt;
    // The next message starts 8-aligned, after this one (over its byte more).
    this.#poolAt = (at + size + 8) & ~7;
    return this.#pool.subarray(at, at + size + 1);
  }
}

/** The outcome of an open that failed with `errno`, as {@linkcode MessageFiles.read} says it. */
function openFailed(errno: number): ReadOutcome {
  if (errno === Errno.ENOENT) return { ok: false, why: "gone" };
  if (errno === Errno.ELOOP) return { ok: false, why: "skip", reason: "a symbolic link" };
  return { ok: false, why: "skip", reason: new SysError("openat", errno).reason };
}

function fromFileInfo(info: Deno.FileInfo): FileState {
  const kind: FileKind = info.isSymlink
    ? "symlink"
    : info.isFile
    ? "file"
    : info.isDirectory
    ? "directory"
    : info.isFifo
    ? "fifo"
    : info.isCharDevice
    ? "char"
    : info.isBlockDevice
    ? "block"
    : "socket";
  const mtimeMs = info.mtime?.getTime() ?? 0;
  const ctimeMs = info.ctime?.getTime() ?? mtimeMs;
  const mtimeSec = Math.floor(mtimeMs / 1000);
  return {
    kind,
    size: info.size,
    mtimeMs,
    ctimeMs,
    ino: info.ino ?? 0,
    mtimeSec,
    mtimeNsec: (mtimeMs - mtimeSec * 1000) * 1e6,
  };
}

function tooLarge(maxSize: number, state: FileState): ReadOutcome {
  return { ok: false, why: "skip", reason: `larger than the ${maxSize}-byte limit`, state };
}

function readDeno(
  path: string,
  maxSize: number,
  delivered?: Known,
): ReadOutcome | undefined {
  let state: FileState;
  try {
    state = fromFileInfo(Deno.lstatSync(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, why: "gone" };
    return { ok: false, why: "skip", reason: describe(err) };
  }
  if (state.kind === "symlink") return { ok: false, why: "skip", reason: "a symbolic link", state };
  if (state.kind !== "file") return { ok: false, why: "skip", reason: "not a regular file", state };
  if (delivered !== undefined && sameFile(delivered, state)) return undefined;
  if (state.size > maxSize) return tooLarge(maxSize, state);
  try {
    const data = Deno.readFileSync(path);
    if (data.length > maxSize) return tooLarge(maxSize, state);
    const after = fromFileInfo(Deno.lstatSync(path));
    if (data.length !== state.size || !sameFile(after, state)) return undefined; // changed
    return { ok: true, state, data };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, why: "gone" };
    return { ok: false, why: "skip", reason: describe(err) };
  }
}

function describe(err: unknown): string {
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  return err instanceof Error
    ? err.message.replace(/ \(os error \d+\).*$/, "").toLowerCase()
    : String(err);
}
