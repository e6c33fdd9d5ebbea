/**
 * The one binding of libc through Deno FFI: opened lazily, on first use, and shared.
 *
 * Everything else in `sys/` goes through {@linkcode libc}. Calls that block (poll, futex
 * waits) have `_async` twins that run on a worker thread and return a promise; errno is not
 * readable after those.
 *
 * @module
 */

import { SysError } from "./errno.ts";

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fsync: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  inotify_rm_watch: { parameters: ["i32", "i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // Pseudo-terminals and processes (sys/pty.ts, sys/spawn.ts).
  posix_openpt: { parameters: ["i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname_r: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** ioctl(2) whose argument is an integer, not a pointer (TIOCSIG). */
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "i64"], result: "i32" },
  sigemptyset: { parameters: ["buffer"], result: "i32" },
  sigfillset: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addopen: {
    parameters: ["buffer", "i32", "buffer", "i32", "u32"],
    result: "i32",
  },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  /** glibc 2.34 and later: close every other descriptor in the child. */
  posix_spawn_file_actions_addclosefrom_np: {
    parameters: ["buffer", "i32"],
    result: "i32",
    optional: true,
  },
  posix_spawnp: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** waitpid(2) on a worker thread: waits for a child to end without blocking the loop. */
  waitpid_async: {
    name: "waitpid",
    parameters: ["i32", "buffer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  /** syscall(2) with the six-argument shape of futex(2). */
  syscall6: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "u32", "pointer", "pointer", "u32"],
    result: "i64",
  },
  syscall6_async: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "u32", "pointer", "pointer", "u32"],
    result: "i64",
    nonblocking: true,
  },
  __errno_location: { parameters: [], result: "pointer" },
  /** flock(2) on a worker thread, for a lock that may be held for a while. */
  flock_async: { name: "flock", parameters: ["i32", "i32"], result: "i32", nonblocking: true },
  /** fallocate(2), for FALLOC_FL_PUNCH_HOLE (mq trims history). */
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  // FUSE (sys/fuse): mounting, and the descriptor fusermount3 passes back.
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** sigaction(2) and mprotect(2): the SIGBUS guard of shared mappings (sigbus.ts). */
  sigaction: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  mprotect: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  /** prctl(2) with integer arguments (PR_GET/SET_TIMERSLACK: precise short sleeps). */
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  /** fchmod(2) and fchown(2): lock files made like the file they lock. */
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  // Directory-descriptor calls (sys/dirfd.ts): walk and change a tree others may share
  // without following a symlink or re-walking a path.
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  futimens: { parameters: ["i32", "pointer"], result: "i32" },
  /** close_range(2) (Linux 5.9, glibc 2.34): many descriptors closed in one call. */
  close_range: { parameters: ["u32", "u32", "i32"], result: "i32", optional: true },
  /** syscall(2) with three integer-or-buffer arguments, for getdents64. */
  syscall3: { name: "syscall", parameters: ["i64", "i64", "buffer", "u64"], result: "i64" },
  /** io_uring_setup(2) through syscall(2) (sys/uring.ts). */
  uring_setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i64" },
  /** io_uring_enter(2) through syscall(2): submit, and wait for completions. */
  uring_enter: {
    name: "syscall",
    parameters: ["i64", "i32", "u32", "u32", "u32", "pointer", "usize"],
    result: "i64",
  },
} as const;

/** The libc symbols fsbus binds, typed. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

type Name = keyof typeof SYMBOLS;

let table: Libc | undefined;
let path: string | undefined;
let errnoView: Deno.UnsafePointerView | undefined;
let available: boolean | undefined;
/** Every library handle opened, one per bound symbol, kept open for the process's life. */
const handles: Deno.DynamicLibrary<Deno.ForeignLibraryInterface>[] = [];

/** Binds one symbol (a `Deno.dlopen` of libc with that symbol alone); null if optional and absent. */
function bind(name: Name): unknown {
  const lib = Deno.dlopen(path!, { [name]: SYMBOLS[name] } as Deno.ForeignLibraryInterface);
  handles.push(lib);
  return lib.symbols[name] ?? null;
}

/**
 * The table `libc()` returns: one property per symbol, each a stub that binds the symbol on
 * its first call, stores the bound function in its place and calls it. Binding every symbol
 * up front costs about 0.17 ms of CPU each (a trampoline compiled per symbol), 12 ms for the
 * whole table at start-up, where a one-shot command uses a handful of them. Optional symbols
 * are getters that bind on first read, so `c.close_range !== null` still says whether libc
 * has it.
 */
function makeTable(): Libc {
  const t: Record<string, unknown> = {};
  for (const name of Object.keys(SYMBOLS) as Name[]) {
    if ("optional" in SYMBOLS[name]) {
      let bound: unknown;
      let done = false;
      Object.defineProperty(t, name, {
        enumerable: true,
        get: () => {
          if (!done) [bound, done] = [bind(name), true];
          return bound;
        },
      });
    } else {
      let fn: ((...a: unknown[]) => unknown) | undefined;
      t[name] = (...args: unknown[]) => {
        if (fn === undefined) t[name] = fn = bind(name) as (...a: unknown[]) => unknown;
        return fn(...args);
      };
    }
  }
  return t as unknown as Libc;
}

/**
 * Whether libc can be reached through FFI here: Linux, and `--allow-ffi` granted.
 *
 * @returns True when {@linkcode libc} will succeed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ffiAvailable } from "./libc.ts";
 * assert.equal(typeof ffiAvailable(), "boolean"); // false: fall back to Deno.watchFs
 * ```
 */
export function ffiAvailable(): boolean {
  if (available !== undefined) return available;
  if (Deno.build.os !== "linux") return (available = false);
  try {
    available = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    available = false;
  }
  if (available) {
    try {
      libc();
    } catch {
      available = false;
    }
  }
  return available;
}

/**
 * The libc symbols, opening the library on first use. Each symbol is bound on its first
 * call, so a short-lived command pays only for the calls it makes.
 *
 * @returns The bound symbols.
 * @throws {Error} When FFI is not permitted or libc cannot be opened.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { libc } from "./libc.ts";
 * const fd = libc().eventfd(0, 0);
 * assert.ok(fd >= 0);
 * assert.equal(libc().close(fd), 0);
 * ```
 */
export function libc(): Libc {
  if (table === undefined) {
    path = libcPath();
    // Bound now, not on the first errno(): binding may itself change errno.
    const errnoLocation = bind("__errno_location") as () => Deno.PointerValue;
    errnoView = new Deno.UnsafePointerView(errnoLocation()!);
    table = makeTable();
  }
  return table;
}

function libcPath(): string {
  // glibc's soname; musl ships "libc.so" only.
  for (const candidate of ["libc.so.6", "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1"]) {
    if (!candidate.startsWith("/")) return candidate;
    try {
      Deno.statSync(candidate);
      return candidate;
    } catch {
      // try the next
    }
  }
  return "libc.so.6";
}

/**
 * The calling thread's errno, as left by the last synchronous libc call.
 *
 * @returns The errno value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Errno } from "./errno.ts";
 * import { errno, libc } from "./libc.ts";
 * assert.equal(libc().close(-1), -1);
 * assert.equal(errno(), Errno.EBADF);
 * ```
 */
export function errno(): number {
  libc();
  return errnoView!.getInt32();
}

/**
 * Throws a {@linkcode SysError} when a libc call returned a negative value.
 *
 * @param ret The call's return value.
 * @param syscall The call's name, for the message.
 * @param path The path involved, if any.
 * @returns The return value, as a number, when it is not negative.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { check, libc } from "./libc.ts";
 * const fd = check(libc().eventfd(0, 0), "eventfd");
 * libc().close(fd);
 * assert.throws(() => check(libc().close(-1), "close"), { code: "EBADF" });
 * ```
 */
export function check(ret: number | bigint, syscall: string, path?: string): number {
  const n = Number(ret);
  if (n < 0) throw new SysError(syscall, errno(), path);
  return n;
}

const encoder = new TextEncoder();
const scratch = new Uint8Array(4096);

/**
 * Encodes a path as a NUL-terminated C string in a scratch buffer shared by every caller:
 * for synchronous calls that use the path at once and keep no pointer to it (open, statx,
 * inotify_add_watch). Use {@linkcode cstring} for anything that outlives the call.
 *
 * @param path The path.
 * @returns The scratch buffer itself, the path's bytes then NUL (what follows the NUL is left
 *   over from earlier calls), or a new buffer for very long paths: no view is made per call.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cpath, libc } from "./libc.ts";
 * const fd = libc().open(cpath("/dev/null"), 0, 0);
 * assert.ok(fd >= 0);
 * libc().close(fd);
 * ```
 */
export function cpath(path: string): Uint8Array<ArrayBuffer> {
  const n = path.length;
  if (n >= 1024) return cstring(path);
  for (let i = 0; i < n; i++) {
    const c = path.charCodeAt(i);
    if (c >= 0x80) {
      const { written } = encoder.encodeInto(path, scratch);
      scratch[written] = 0;
      return scratch;
    }
    scratch[i] = c;
  }
  scratch[n] = 0;
  return scratch;
}

/**
 * Encodes a path as a NUL-terminated C string.
 *
 * @param path The path.
 * @returns The bytes, ending in NUL.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cstring } from "./libc.ts";
 * assert.deepEqual([...cstring("/tmp")], [47, 116, 109, 112, 0]);
 * ```
 */
export function cstring(path: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(path.length * 3 + 1);
  const { written } = encoder.encodeInto(path, bytes);
  return bytes.subarray(0, written + 1);
}

/**
 * A converter of lengths to the `usize` BigInt that FFI calls take, keeping the last one made:
 * one per call site that passes lengths repeating from call to call (messages of one size), so
 * that no `BigInt` is made per call (one costs more than such a call's own JavaScript).
 *
 * @returns A function giving `BigInt(n)`, made anew only when `n` differs from the last.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lengthCache } from "./libc.ts";
 * const usize = lengthCache();
 * assert.equal(usize(1024), 1024n);
 * assert.equal(usize(1024), 1024n);
 * assert.equal(usize(7), 7n);
 * ```
 */
export function lengthCache(): (n: number) => bigint {
  let last = -1;
  let big = 0n;
  return (n) => {
    if (n !== last) {
      big = BigInt(n);
      last = n;
    }
    return big;
  };
}
