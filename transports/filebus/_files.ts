/**
 * The three paths of a filebus (FILE, FILE.lock, FILE.__new__) and the file operations on
 * them: through libc when FFI is allowed (nanosecond change times, non-throwing existence
 * checks, a lock try that never blocks the event loop), through Deno's file API otherwise.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { SysError } from "../../sys/errno.ts";
import { FileLock } from "../../sys/flock.ts";
import {
  closeFd,
  fstat,
  O,
  openFd,
  readAllFd,
  renamePath,
  statPath,
  unlinkPath,
  writeAllFd,
} from "../../sys/fs.ts";

/** The largest chunk a consumer accepts (the file is read whole into memory). */
export const MAX_CHUNK = 1 << 30;

/** How long a busy lock is retried on the calling thread before waiting on a worker thread:
 * protocol holders keep it for one write or read, a few microseconds to tens. */
const LOCK_SPIN_US = 100;

/**
 * A caller that may block its thread (see {@linkcode LockFile.takeNow}) spins this long, then
 * sleeps this long between tries, for at most this long in all before waiting on a worker
 * thread. The usual holder is a producer that renamed (which woke the consumer) and is about to
 * unlock: on a busy machine the woken consumer often takes its CPU, and a spin would keep it
 * from unlocking, while a wait on a worker thread costs two thread wake-ups (measured: a fifth
 * of takes waited there, about 0.5 ms each, 2 ms with four consumers, at load ~10).
 */
const PATIENT_SPIN_US = 10;
const PATIENT_NAP_US = 20;
const PATIENT_WITHIN_US = 2000;

/** What identifies one chunk's file well enough to tell it from the previous one. */
export interface Identity {
  ino: bigint;
  ctimeNs: bigint;
  mtimeNs: bigint;
  size: number;
}

/** Whether two identities are the same file in the same state. */
export function sameIdentity(a: Identity | undefined, b: Identity | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.ctimeNs === b.ctimeNs &&
    a.mtimeNs === b.mtimeNs && a.size === b.size;
}

/**
 * Whether two identities are the same chunk's file, for a reader that holds the first one open
 * (so its inode number cannot have been given to another file): same inode, modification time
 * and size. The change time is left out: it moves when the file is renamed, or replaced by the
 * next chunk (a reader that checks a chunk just after opening it can see either).
 */
export function sameChunk(a: Identity | undefined, b: Identity | undefined): boolean {
  return a !== undefined && b !== undefined && a.ino === b.ino && a.mtimeNs === b.mtimeNs &&
    a.size === b.size;
}

/** A lock file, locked with flock(2) LOCK_EX. */
export interface Lock {
  /** Takes the lock if free; false when another holder has it (or trying is not possible). */
  tryLock(): boolean;
  /**
   * Takes the lock if free now or soon: retried for `spinUs` µs, then (with `napUs`) every
   * `napUs` µs of sleep until `withinUs` µs have passed.
   */
  trySoon(spinUs: number, napUs?: number, withinUs?: number): boolean;
  /** Takes the lock, waiting without blocking the event loop. */
  lock(): Promise<void>;
  /** Releases the lock. */
  unlock(): void;
  /** Closes the lock file (releasing the lock). */
  close(): void;
}

class DenoLock implements Lock {
  readonly #file: Deno.FsFile;
  #closed = false;
  constructor(file: Deno.FsFile) {
    this.#file = file;
  }
  tryLock(): boolean {
    return false;
  }
  trySoon(): boolean {
    return false;
  }
  lock(): Promise<void> {
    return this.#file.lock(true);
  }
  unlock(): void {
    this.#file.unlockSync();
  }
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

/**
 * FILE.lock as the protocol uses it: opened (created when missing) only when a role first
 * locks, as the original does, and reopened at the next lock after it was removed or
 * replaced. Never recreated by a mere event, so `rm -rf` of a bus directory is not undone
 * by a consumer that sees FILE.lock go.
 */
export class LockFile {
  readonly #files: Files;
  #lock: Lock | undefined;
  #stale = false;

  /**
   * Makes the holder; nothing is opened yet.
   *
   * @param files The bus's paths.
   */
  constructor(files: Files) {
    this.#files = files;
  }

  /**
   * Opens FILE.lock now (creating it when missing unless `onlyIfPresent`), so that a lock
   * file the user cannot open is reported at start rather than at the first lock.
   *
   * @param onlyIfPresent Open only an existing FILE.lock; never create one.
   */
  open(onlyIfPresent = false): void {
    if (this.#lock !== undefined) return;
    if (onlyIfPresent) {
      try {
        Deno.lstatSync(this.#files.lockPath);
      } catch {
        return;
      }
    }
    this.#lock = this.#files.openLock();
  }

  /** Notes that FILE.lock was removed or replaced: the next {@linkcode LockFile.take} reopens. */
  replaced(): void {
    this.#stale = true;
  }

  #current(): Lock {
    if (this.#lock === undefined || this.#stale) {
      const fresh = this.#files.openLock();
      this.#lock?.close();
      this.#lock = fresh;
      this.#stale = false;
    }
    return this.#lock;
  }

  /**
   * Takes the lock without waiting on another thread: when it is free, or comes free after a
   * short retry on this thread (holders keep it for one write or read).
   *
   * @param patient Whether the caller may block its thread for a while (a consumer that waits
   *   in poll(2) anyway): then it sleeps between tries, for up to 2 ms, rather than spinning.
   * @returns The held lock, or undefined when it is still busy: then use
   *   {@linkcode LockFile.take}.
   */
  takeNow(patient = false): Lock | undefined {
    const lock = this.#current();
    const taken = patient
      ? lock.trySoon(PATIENT_SPIN_US, PATIENT_NAP_US, PATIENT_WITHIN_US)
      : lock.trySoon(LOCK_SPIN_US);
    return taken ? lock : undefined;
  }

  /**
   * Takes the lock, opening FILE.lock first when needed.
   *
   * @returns The held lock: release it with `unlock()`.
   */
  async take(): Promise<Lock> {
    const lock = this.#current();
    await lock.lock();
    return lock;
  }

  /** Closes FILE.lock (releasing the lock if held). */
  close(): void {
    this.#lock?.close();
    this.#lock = undefined;
  }
}

/** What a chunk read returned. */
export interface ReadResult {
  data: Uint8Array;
  id: Identity;
}

function notAFile(path: string, kind: string): FsbusError {
  if (kind === "directory") {
    return new FsbusError(
      "is_a_directory",
      `Cannot use "${path}" as a filebus file: is a directory`,
    );
  }
  const what = kind === "symlink"
    ? "is a symbolic link (fsbus never follows one)"
    : kind === "file"
    ? "is not a regular file"
    : `is a ${kind === "fifo" ? "FIFO" : kind === "char" || kind === "block" ? "device" : kind}`;
  return new FsbusError("invalid", `Cannot use "${path}" as a filebus file: ${what}`);
}

/** Translates a failed open: ELOOP under O_NOFOLLOW means a planted symlink. */
function openError(err: unknown, action: string, path: string): FsbusError {
  if (err instanceof SysError && err.code === "ELOOP") return notAFile(path, "symlink");
  return fromFsError(err, action, path);
}

/**
 * The paths of one filebus and the operations the protocol needs on them.
 */
export class Files {
  /** FILE: the current chunk. */
  readonly path: string;
  /** FILE.lock. */
  readonly lockPath: string;
  /** FILE.__new__. */
  readonly newPath: string;
  /** FILE's directory. */
  readonly dir: string;
  /** FILE's name within its directory. */
  readonly base: string;
  /** Whether libc is used (else Deno's file API). */
  readonly ffi: boolean;

  constructor(path: string) {
    if (path === "") {
      throw new FsbusError("invalid", 'Cannot use the filebus file "": the name is empty');
    }
    this.path = path;
    this.lockPath = `${path}.lock`;
    this.newPath = `${path}.__new__`;
    const slash = path.lastIndexOf("/");
    this.dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
    this.base = path.slice(slash + 1);
    this.ffi = ffiAvailable();
  }

  /**
   * Checks, without creating anything, that FILE's directory exists and that FILE and
   * FILE.lock, where present, are regular files (not symlinks, FIFOs or directories).
   *
   * @throws {FsbusError} Saying what is wrong.
   */
  check(): void {
    let dir: Deno.FileInfo;
    try {
      dir = Deno.statSync(this.dir);
    } catch (err) {
      throw fromFsError(err, "Cannot use the directory", this.dir);
    }
    if (!dir.isDirectory) {
      throw new FsbusError(
        "not_a_directory",
        `Cannot use the directory "${this.dir}": not a directory`,
      );
    }
    const st = this.stat();
    if (st !== undefined && st.kind !== "file") throw notAFile(this.path, st.kind);
    const lock = kindOf(this.lockPath, this.ffi);
    if (lock !== undefined && lock !== "file") throw notAFile(this.lockPath, lock);
  }

  /**
   * Opens (creating when missing) FILE.lock, and checks that FILE, if present, is a file.
   *
   * @returns The lock, not held.
   */
  openLock(): Lock {
    let lock: Lock;
    if (this.ffi) {
      try {
        lock = FileLock.open(this.lockPath);
      } catch (err) {
        throw openError(err, "Cannot open", this.lockPath);
      }
      try {
        // O_NOFOLLOW|O_NONBLOCK opened whatever is there: only a regular file will do.
        const kind = fstat((lock as FileLock).fd).kind;
        if (kind !== "file") throw notAFile(this.lockPath, kind);
      } catch (err) {
        lock.close();
        throw fromFsError(err, "Cannot open", this.lockPath);
      }
    } else {
      let file: Deno.FsFile;
      try {
        file = Deno.openSync(this.lockPath, { read: true, write: true, create: true });
      } catch (err) {
        if (!(err instanceof Deno.errors.PermissionDenied)) {
          throw fromFsError(err, "Cannot open", this.lockPath);
        }
        try {
          file = Deno.openSync(this.lockPath, { read: true });
        } catch (err2) {
          const cause = err2 instanceof Deno.errors.NotFound ? err : err2;
          throw fromFsError(cause, "Cannot open", this.lockPath);
        }
      }
      lock = new DenoLock(file);
    }
    try {
      const st = this.stat();
      if (st !== undefined && st.kind !== "file") throw notAFile(this.path, st.kind);
    } catch (err) {
      lock.close();
      throw err;
    }
    return lock;
  }

  /**
   * FILE's kind and identity, or undefined when absent.
   *
   * @returns What is there.
   */
  stat(): { kind: string; id: Identity } | undefined {
    if (this.ffi) {
      let st;
      try {
        st = statPath(this.path);
      } catch (err) {
        throw fromFsError(err, "Cannot read", this.path);
      }
      if (st === undefined) return undefined;
      const { ino, ctimeNs, mtimeNs, size } = st;
      return { kind: st.kind, id: { ino, ctimeNs, mtimeNs, size } };
    }
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(this.path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
        return undefined;
      }
      throw fromFsError(err, "Cannot read", this.path);
    }
    return { kind: denoKind(st), id: denoIdentity(st) };
  }

  /**
   * Opens FILE for reading, through libc (FFI only): what a lossy consumer does under the
   * lock. The chunk in it never changes after that (producers replace FILE by renaming a new
   * file over it), so it can be checked and read after the lock is released.
   *
   * @returns The descriptor (close it with `closeFd`), or undefined when FILE is absent.
   */
  openChunk(): number | undefined {
    try {
      return openFd(this.path, O.RDONLY | O.NOCTTY | O.NONBLOCK | O.NOFOLLOW);
    } catch (err) {
      if (err instanceof SysError && err.code === "ENOENT") return undefined;
      throw openError(err, "Cannot read", this.path);
    }
  }

  /**
   * The identity of a chunk opened with {@linkcode Files.openChunk}, checked to be a regular
   * file.
   *
   * @param fd The descriptor.
   * @returns Its identity.
   */
  chunkIdentity(fd: number): Identity {
    let st;
    try {
      st = fstat(fd);
    } catch (err) {
      throw fromFsError(err, "Cannot read", this.path);
    }
    if (st.kind !== "file") throw notAFile(this.path, st.kind);
    return { ino: st.ino, ctimeNs: st.ctimeNs, mtimeNs: st.mtimeNs, size: st.size };
  }

  /**
   * Reads a chunk opened with {@linkcode Files.openChunk} whole (the descriptor stays open).
   *
   * @param fd The descriptor.
   * @param size Its size from {@linkcode Files.chunkIdentity}.
   * @returns The bytes.
   */
  readChunk(fd: number, size: number): Uint8Array {
    let data;
    try {
      data = readAllFd(fd, size, MAX_CHUNK);
    } catch (err) {
      throw fromFsError(err, "Cannot read", this.path);
    }
    if (data === undefined) {
      throw new FsbusError("too_large", `Cannot read "${this.path}": larger than 1 GiB`);
    }
    return data;
  }

  /**
   * Reads FILE whole.
   *
   * @returns The bytes and the file's identity, or undefined when FILE is absent.
   */
  read(): ReadResult | undefined {
    if (this.ffi) {
      const fd = this.openChunk();
      if (fd === undefined) return undefined;
      try {
        const id = this.chunkIdentity(fd);
        return { data: this.readChunk(fd, id.size), id };
      } finally {
        closeFd(fd);
      }
    }
    // Without FFI there is no O_NOFOLLOW: look first (a narrower guard, not a race-free one).
    const before = this.stat();
    if (before === undefined) return undefined;
    if (before.kind !== "file") throw notAFile(this.path, before.kind);
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(this.path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw fromFsError(err, "Cannot read", this.path);
    }
    try {
      const st = file.statSync();
      if (!st.isFile) throw notAFile(this.path, st.isDirectory ? "directory" : "special file");
      const chunks: Uint8Array[] = [];
      let total = 0;
      const buf = new Uint8Array(Math.max(st.size + 1, 4096));
      for (;;) {
        const n = file.readSync(buf);
        if (n === null || n === 0) break;
        chunks.push(buf.slice(0, n));
        total += n;
      }
      const data = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) {
        data.set(c, off);
        off += c.length;
      }
      return { data, id: denoIdentity(st) };
    } catch (err) {
      throw fromFsError(err, "Cannot read", this.path);
    } finally {
      file.close();
    }
  }

  /**
   * Writes a chunk to FILE.__new__ and renames it over FILE (call with the lock held).
   *
   * FILE.__new__ is always a file of this call's own: whatever is at that name (a stale
   * temp file, or a symlink another user planted) is removed first, and the file is made
   * with O_CREAT|O_EXCL|O_NOFOLLOW, so no link is ever followed. A write that fails (a full
   * disk) removes the partial file and leaves FILE as it was.
   *
   * @param data The chunk.
   */
  write(data: Uint8Array): void {
    this.#writeNew(data);
    try {
      if (this.ffi) renamePath(this.newPath, this.path);
      else Deno.renameSync(this.newPath, this.path);
    } catch (err) {
      this.#removeNew();
      const st = this.stat();
      if (st !== undefined && st.kind !== "file") throw notAFile(this.path, st.kind);
      throw fromFsError(err, "Cannot write", this.path);
    }
  }

  #writeNew(data: Uint8Array): void {
    for (let attempt = 0;; attempt++) {
      if (this.ffi) {
        // O_EXCL first: FILE.__new__ is normally absent (each write renames it away), and
        // whatever is there (a stale temp file, a planted symlink) fails the open and is
        // removed before the next try.
        let fd: number;
        try {
          fd = openFd(this.newPath, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | O.NOCTTY, 0o666);
        } catch (err) {
          // Something is at the name (or was made again after the removal): remove it and
          // try again, a few times.
          if (err instanceof SysError && err.code === "EEXIST" && attempt < 4) {
            this.#removeNew();
            continue;
          }
          throw openError(err, "Cannot write", this.newPath);
        }
        try {
          writeAllFd(fd, data);
        } catch (err) {
          closeFd(fd);
          this.#removeNew();
          throw fromFsError(err, "Cannot write", this.newPath);
        }
        closeFd(fd);
        return;
      }
      this.#removeNew();
      let file: Deno.FsFile;
      try {
        file = Deno.openSync(this.newPath, { write: true, createNew: true });
      } catch (err) {
        if (err instanceof Deno.errors.AlreadyExists && attempt < 3) continue;
        throw fromFsError(err, "Cannot write", this.newPath);
      }
      try {
        let off = 0;
        while (off < data.length) off += file.writeSync(data.subarray(off));
      } catch (err) {
        file.close();
        this.#removeNew();
        throw fromFsError(err, "Cannot write", this.newPath);
      } finally {
        try {
          file.close();
        } catch {
          // closed above
        }
      }
      return;
    }
  }

  /** Removes FILE.__new__ if present (a symlink there is removed, never followed). */
  #removeNew(): void {
    if (this.ffi) {
      try {
        unlinkPath(this.newPath);
        return;
      } catch (err) {
        // A directory there: remove it as Deno does (when empty), below.
        if (!(err instanceof SysError && err.code === "EISDIR")) {
          throw fromFsError(err, "Cannot remove", this.newPath);
        }
      }
    }
    try {
      Deno.removeSync(this.newPath);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw fromFsError(err, "Cannot remove", this.newPath);
    }
  }

  /**
   * Removes FILE (the "consumed" signal of back-pressure mode).
   *
   * @returns False when it was already gone.
   */
  unlink(): boolean {
    try {
      Deno.removeSync(this.path);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw fromFsError(err, "Cannot remove", this.path);
    }
  }
}

/** The kind of file Deno's (l)stat saw, in the names sys/fs.ts's statx gives. */
function denoKind(st: Deno.FileInfo): string {
  return st.isFile
    ? "file"
    : st.isDirectory
    ? "directory"
    : st.isSymlink
    ? "symlink"
    : "special file";
}

/** What is at `path` (never following a symlink), or undefined when nothing is. */
function kindOf(path: string, ffi: boolean): string | undefined {
  try {
    if (ffi) return statPath(path)?.kind;
    return denoKind(Deno.lstatSync(path));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw fromFsError(err, "Cannot open", path);
  }
}

function denoIdentity(st: Deno.FileInfo): Identity {
  return {
    ino: BigInt(st.ino ?? 0),
    ctimeNs: BigInt(st.ctime?.getTime() ?? 0) * 1_000_000n,
    mtimeNs: BigInt(st.mtime?.getTime() ?? 0) * 1_000_000n,
    size: st.size,
  };
}
