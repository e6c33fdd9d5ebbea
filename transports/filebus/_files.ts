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
import { closeFd, fstat, O, openFd, readAllFd, statPath } from "../../sys/fs.ts";

/** The largest chunk a consumer accepts (the file is read whole into memory). */
export const MAX_CHUNK = 1 << 30;

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

/** A lock file, locked with flock(2) LOCK_EX. */
export interface Lock {
  /** Takes the lock if free; false when another holder has it (or trying is not possible). */
  tryLock(): boolean;
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

/** What a chunk read returned. */
export interface ReadResult {
  data: Uint8Array;
  id: Identity;
}

function notAFile(path: string, kind: string): FsbusError {
  return kind === "directory"
    ? new FsbusError("is_a_directory", `Cannot use "${path}" as a filebus file: is a directory`)
    : new FsbusError("invalid", `Cannot use "${path}" as a filebus file: is a ${kind}`);
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
    if (path === "") throw new FsbusError("invalid", "Cannot use an empty filebus file name");
    this.path = path;
    this.lockPath = `${path}.lock`;
    this.newPath = `${path}.__new__`;
    const slash = path.lastIndexOf("/");
    this.dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
    this.base = path.slice(slash + 1);
    this.ffi = ffiAvailable();
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
    const kind = st.isFile
      ? "file"
      : st.isDirectory
      ? "directory"
      : st.isSymlink
      ? "symlink"
      : "special file";
    return { kind, id: denoIdentity(st) };
  }

  /**
   * Reads FILE whole.
   *
   * @returns The bytes and the file's identity, or undefined when FILE is absent.
   */
  read(): ReadResult | undefined {
    if (this.ffi) {
      let fd: number;
      try {
        fd = openFd(this.path, O.RDONLY | O.NOCTTY | O.NONBLOCK);
      } catch (err) {
        if (err instanceof SysError && err.code === "ENOENT") return undefined;
        throw fromFsError(err, "Cannot read", this.path);
      }
      try {
        const st = fstat(fd);
        if (st.kind !== "file") throw notAFile(this.path, st.kind);
        const data = readAllFd(fd, st.size, MAX_CHUNK);
        if (data === undefined) {
          throw new FsbusError("too_large", `Cannot read "${this.path}": larger than 1 GiB`);
        }
        const { ino, ctimeNs, mtimeNs } = st;
        return { data, id: { ino, ctimeNs, mtimeNs, size: st.size } };
      } catch (err) {
        throw fromFsError(err, "Cannot read", this.path);
      } finally {
        closeFd(fd);
      }
    }
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
   * @param data The chunk.
   */
  write(data: Uint8Array): void {
    try {
      Deno.writeFileSync(this.newPath, data);
    } catch (err) {
      throw fromFsError(err, "Cannot write", this.newPath);
    }
    try {
      Deno.renameSync(this.newPath, this.path);
    } catch (err) {
      const st = this.stat();
      if (st !== undefined && st.kind !== "file") throw notAFile(this.path, st.kind);
      throw fromFsError(err, "Cannot write", this.path);
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

function denoIdentity(st: Deno.FileInfo): Identity {
  return {
    ino: BigInt(st.ino ?? 0),
    ctimeNs: BigInt(st.ctime?.getTime() ?? 0) * 1_000_000n,
    mtimeNs: BigInt(st.mtime?.getTime() ?? 0) * 1_000_000n,
    size: st.size,
  };
}
