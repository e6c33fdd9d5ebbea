/**
 * Starting a command on a terminal, which `Deno.Command` cannot do (it cannot give a child a
 * controlling terminal), and waiting for it: `posix_spawnp` with `POSIX_SPAWN_SETSID`, and
 * `waitpid` on a worker thread.
 *
 * glibc's `posix_spawn` child calls `setsid()` before it runs the file actions, so the
 * terminal opened onto descriptor 0 (without `O_NOCTTY`) becomes the new session's
 * controlling terminal, exactly as `login_tty` would make it.
 *
 * @module
 */

import { errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { O } from "./fs.ts";

const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const WNOHANG = 1;
// glibc: posix_spawnattr_t is 336 bytes, posix_spawn_file_actions_t 80, sigset_t 128.
const ATTR_SIZE = 1024;
const ACTIONS_SIZE = 512;
const SIGSET_SIZE = 256;

const SIGNALS: readonly string[] = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
];

/**
 * The name of a Linux signal number (x86_64 and aarch64 share them).
 *
 * @param signo The number.
 * @returns The name, such as `"SIGKILL"`, or `"SIG34"` for a real-time signal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalName } from "./spawn.ts";
 * assert.equal(signalName(9), "SIGKILL");
 * assert.equal(signalName(34), "SIG34");
 * ```
 */
export function signalName(signo: number): string {
  return SIGNALS[signo] || `SIG${signo}`;
}

/**
 * The number of a Linux signal name.
 *
 * @param name The name, such as `"SIGHUP"`.
 * @returns The number, or undefined for an unknown name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signalNumber } from "./spawn.ts";
 * assert.equal(signalNumber("SIGHUP"), 1);
 * assert.equal(signalNumber("SIGNOPE"), undefined);
 * ```
 */
export function signalNumber(name: string): number | undefined {
  const i = SIGNALS.indexOf(name);
  if (i > 0) return i;
  const m = /^SIG(\d+)$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * How a child process ended: its exit code, or the signal that killed it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ExitStatus } from "./spawn.ts";
 * const s: ExitStatus = { code: 3, signal: null };
 * assert.equal(s.signal, null);
 * ```
 */
export interface ExitStatus {
  /** The exit code (128 + the signal's number when killed, as shells report it). */
  code: number;
  /** The signal's name when a signal killed it, else null. */
  signal: string | null;
}

/** Options for {@linkcode spawnOnTerminal}. */
export interface SpawnOptions {
  /** The terminal (a pseudo-terminal's slave) to run on: descriptors 0, 1 and 2. */
  tty: string;
  /**
   * The environment, whole.
   *
   * @default {Deno.env.toObject()}
   */
  env?: Record<string, string>;
}

/**
 * Starts a command in a new session whose controlling terminal is `tty`, with standard
 * input, output and error on it, every signal at its default action and none blocked.
 * `PATH` is searched as a shell would (`posix_spawnp`).
 *
 * @param argv The command and its arguments.
 * @param options The terminal and the environment.
 * @returns The child's process id (also its session and process group id).
 * @throws {SysError} With the errno of the failed start: ENOENT for a command that does
 *   not exist, EACCES for one that cannot be run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * import { spawnOnTerminal, waitExit } from "./spawn.ts";
 * const pty = openPty();
 * // "test -t 0": standard input is a terminal
 * const pid = spawnOnTerminal(["sh", "-c", "test -t 0 && exit 3"], { tty: pty.path });
 * assert.deepEqual(await waitExit(pid), { code: 3, signal: null });
 * closeFd(pty.fd);
 * ```
 */
export function spawnOnTerminal(argv: readonly string[], options: SpawnOptions): number {
  if (argv.length === 0) throw new SysError("posix_spawnp", Errno.EINVAL);
  const c = libc();
  const enc = new TextEncoder();
  const keep: Uint8Array[] = [];
  const cstr = (s: string): bigint => {
    const b = enc.encode(s + "\0");
    keep.push(b);
    return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  };
  const array = (items: readonly string[]): BigUint64Array<ArrayBuffer> => {
    const a = new BigUint64Array(items.length + 1);
    items.forEach((s, i) => (a[i] = cstr(s)));
    return a;
  };
  const { tty: ttyPath, env = Deno.env.toObject() } = options;
  const argvC = array(argv);
  const envC = array(Object.entries(env).map(([k, v]) => `${k}=${v}`));
  const file = enc.encode(argv[0] + "\0");
  const tty = enc.encode(ttyPath + "\0");

  const attr = new Uint8Array(ATTR_SIZE);
  const actions = new Uint8Array(ACTIONS_SIZE);
  const none = new Uint8Array(SIGSET_SIZE);
  const all = new Uint8Array(SIGSET_SIZE);
  const fail = (call: string, e: number): never => {
    throw new SysError(call, e, call === "posix_spawnp" ? argv[0] : ttyPath);
  };
  c.sigemptyset(none);
  c.sigfillset(all);
  let e = c.posix_spawnattr_init(attr);
  if (e !== 0) fail("posix_spawnattr_init", e);
  try {
    e = c.posix_spawn_file_actions_init(actions);
    if (e !== 0) fail("posix_spawn_file_actions_init", e);
    try {
      e = c.posix_spawnattr_setflags(
        attr,
        POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF,
      );
      if (e === 0) e = c.posix_spawnattr_setsigmask(attr, none);
      // Deno ignores SIGPIPE, and ignored signals survive exec: reset them all.
      if (e === 0) e = c.posix_spawnattr_setsigdefault(attr, all);
      if (e !== 0) fail("posix_spawnattr_setflags", e);
      // After setsid(), the first terminal opened without O_NOCTTY becomes the controlling one.
      e = c.posix_spawn_file_actions_addopen(actions, 0, tty, O.RDWR, 0);
      if (e === 0) e = c.posix_spawn_file_actions_adddup2(actions, 0, 1);
      if (e === 0) e = c.posix_spawn_file_actions_adddup2(actions, 0, 2);
      // Descriptors this process inherited without close-on-exec stay out of the session.
      if (e === 0 && c.posix_spawn_file_actions_addclosefrom_np) {
        e = c.posix_spawn_file_actions_addclosefrom_np(actions, 3);
      }
      if (e !== 0) fail("posix_spawn_file_actions_addopen", e);
      const pid = new Int32Array(1);
      e = c.posix_spawnp(
        new Uint8Array(pid.buffer),
        file,
        actions,
        attr,
        new Uint8Array(argvC.buffer),
        new Uint8Array(envC.buffer),
      );
      keep.length = 0;
      if (e !== 0) fail("posix_spawnp", e);
      return pid[0]!;
    } finally {
      c.posix_spawn_file_actions_destroy(actions);
    }
  } finally {
    c.posix_spawnattr_destroy(attr);
  }
}

function decode(status: number): ExitStatus {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null };
  return { code: 128 + sig, signal: signalName(sig) };
}

/**
 * Whether a child started by {@linkcode spawnOnTerminal} has ended, without waiting; reaps
 * it when it has.
 *
 * @param pid The child's process id.
 * @returns How it ended, or undefined while it runs.
 * @throws {SysError} ECHILD when `pid` is not an unreaped child of this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * import { pollExit, spawnOnTerminal } from "./spawn.ts";
 * const pty = openPty();
 * const pid = spawnOnTerminal(["true"], { tty: pty.path });
 * let status = pollExit(pid);
 * while (status === undefined) { // a real caller does other work between checks
 *   await new Promise((resolve) => setTimeout(resolve, 5));
 *   status = pollExit(pid);
 * }
 * assert.equal(status.code, 0);
 * closeFd(pty.fd);
 * ```
 */
export function pollExit(pid: number): ExitStatus | undefined {
  const status = new Int32Array(1);
  for (;;) {
    const r = libc().waitpid(pid, new Uint8Array(status.buffer), WNOHANG);
    if (r === pid) return decode(status[0]!);
    if (r === 0) return undefined;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError("waitpid", e);
  }
}

/**
 * Waits, on a worker thread, for a child started by {@linkcode spawnOnTerminal} to end, and
 * reaps it.
 *
 * @param pid The child's process id.
 * @returns How it ended.
 * @throws {SysError} ECHILD when `pid` is not an unreaped child of this process.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * import { spawnOnTerminal, waitExit } from "./spawn.ts";
 * const pty = openPty();
 * const pid = spawnOnTerminal(["sh", "-c", "kill -9 $$"], { tty: pty.path });
 * const { code, signal } = await waitExit(pid);
 * assert.deepEqual([code, signal], [137, "SIGKILL"]);
 * closeFd(pty.fd);
 * ```
 */
export async function waitExit(pid: number): Promise<ExitStatus> {
  const status = new Int32Array(1);
  const buf = new Uint8Array(status.buffer);
  for (;;) {
    const r = await libc().waitpid_async(pid, buf, 0);
    if (r === pid) return decode(status[0]!);
    // errno is not readable after an async call: ask again without blocking (EINTR in
    // practice; ECHILD is thrown from there).
    const now = pollExit(pid);
    if (now) return now;
  }
}
