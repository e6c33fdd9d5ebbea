/**
 * Reading message files safely: never through a symlink, never a FIFO or device, never past
 * a size limit. Through FFI, `openat(O_NOFOLLOW|O_NONBLOCK)` from the directory's descriptor,
 * then `statx` on the file's, makes the check and the read one act; without FFI, `lstat` then
 * read (a narrow race, said in the README).
 *
 * @module
 */

import { closeFd, type FdStat, type FileKind, fstat, O, readAllFd, statAt } from "../../sys/fs.ts";
import { openAt } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";

/**
 * What a message file looks like: its kind, size, modification time, and a key that changes
 * whenever the file is replaced or rewritten.
 *
 * @example
 * ```ts
 * import type { FileState } from "./read.ts";
 * const s: FileState = { kind: "file", size: 2, mtimeMs: 0, ctimeMs: 0, key: "1:2:0" };
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
  /** Inode, size and modification time together. */
  key: string;
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
 * closeFd(bus);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class MessageFiles {
  readonly #ffi: boolean;

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
        const st = statAt(dirfd, name);
        return st && fromFdStat(st);
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
   * @param skipIf Returns true for a state not to read (already delivered).
   * @returns The bytes and state, or why not; undefined when `skipIf` said so, or when the
   *   file changed while it was read (a writer still at work: its close comes later).
   */
  read(
    dirfd: number,
    name: string,
    path: string,
    maxSize: number,
    skipIf?: (state: FileState) => boolean,
  ): ReadOutcome | undefined {
    return this.#ffi ? readFfi(dirfd, name, maxSize, skipIf) : readDeno(path, maxSize, skipIf);
  }
}

function fromFdStat(st: FdStat): FileState {
  return {
    kind: st.kind,
    size: st.size,
    mtimeMs: Number(st.mtimeNs / 1000n) / 1000,
    ctimeMs: Number(st.ctimeNs / 1000n) / 1000,
    key: `${st.ino}:${st.size}:${st.mtimeNs}`,
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
  return { kind, size: info.size, mtimeMs, ctimeMs, key: `${info.ino}:${info.size}:${mtimeMs}` };
}

function tooLarge(maxSize: number, state: FileState): ReadOutcome {
  return { ok: false, why: "skip", reason: `larger than the ${maxSize}-byte limit`, state };
}

function readFfi(
  dirfd: number,
  name: string,
  maxSize: number,
  skipIf?: (state: FileState) => boolean,
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
    const st = fstat(fd);
    const mtimeNs = st.mtimeNs;
    const state = fromFdStat(st);
    if (state.kind !== "file") {
      return { ok: false, why: "skip", reason: "not a regular file", state };
    }
    if (skipIf?.(state)) return undefined;
    const data = readAllFd(fd, state.size, maxSize);
    if (data === undefined) return tooLarge(maxSize, state);
    // Changed while read (still being written: its close comes later), or removed (a failed
    // publish is removed before its close): not a message, or not yet.
    const after = fstat(fd);
    if (after.nlink === 0) return { ok: false, why: "gone" };
    if (data.length !== state.size || after.size !== state.size || after.mtimeNs !== mtimeNs) {
      return undefined;
    }
    return { ok: true, state, data };
  } catch (err) {
    if (!(err instanceof SysError)) throw err;
    return { ok: false, why: "skip", reason: err.reason };
  } finally {
    closeFd(fd);
  }
}

function readDeno(
  path: string,
  maxSize: number,
  skipIf?: (state: FileState) => boolean,
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
  if (skipIf?.(state)) return undefined;
  if (state.size > maxSize) return tooLarge(maxSize, state);
  try {
    const data = Deno.readFileSync(path);
    if (data.length > maxSize) return tooLarge(maxSize, state);
    const after = fromFileInfo(Deno.lstatSync(path));
    if (data.length !== state.size || after.key !== state.key) return undefined; // changed
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
