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
import { type FileStatus, openAt, readSized, statusAt, statusFd } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";

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
        return st && fromStatus(st);
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
      if (err.code === "ENOENT") return { ok: false, why: "gone" };
      if (err.code === "ELOOP") return { ok: false, why: "skip", reason: "a symbolic link" };
      return { ok: false, why: "skip", reason: err.reason };
    }
    try {
      const st = statusFd(fd);
      if (st.kind !== "file") {
        return { ok: false, why: "skip", reason: "not a regular file", state: fromStatus(st) };
      }
      // Removed before it could be read: a failed publish is removed before its close.
      if (st.nlink === 0) return { ok: false, why: "gone" };
      if (delivered !== undefined && sameFile(delivered, st)) return undefined;
      const state = fromStatus(st);
      if (state.size > maxSize) return tooLarge(maxSize, state);
      // More or fewer bytes than its status said: still being written (its close comes later).
      const data = readSized(fd, state.size, this.#space(state.size));
      if (data === undefined) return undefined;
      return { ok: true, state, data };
    } catch (err) {
      if (!(err instanceof SysError)) throw err;
      return { ok: false, why: "skip", reason: err.reason };
    } finally {
      this.#toClose[this.#unclosed++] = fd;
      if (this.#unclosed === CLOSE_BATCH) this.flush();
    }
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

function fromStatus(st: FileStatus): FileState {
  return {
    kind: st.kind,
    size: st.size,
    mtimeMs: st.mtimeSec * 1000 + st.mtimeNsec / 1e6,
    ctimeMs: st.ctimeMs,
    ino: st.ino,
    mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec,
  };
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
