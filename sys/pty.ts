/**
 * Pseudo-terminals: open a master and name its slave (`posix_openpt`, `grantpt`, `unlockpt`,
 * `ptsname_r`), set and read the window size (`TIOCSWINSZ`/`TIOCGWINSZ`), signal the
 * slave's foreground process group (`TIOCSIG`), and non-blocking reads and writes on the
 * master.
 *
 * A command is started on the slave with {@linkcode spawnOnTerminal} from `./spawn.ts`.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";
import { Errno, SysError } from "./errno.ts";
import { O } from "./fs.ts";

const TIOCGWINSZ = 0x5413n;
const TIOCSWINSZ = 0x5414n;
const TIOCSIG = 0x40045436n;

/**
 * A terminal's size in character cells.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { WindowSize } from "./pty.ts";
 * const size: WindowSize = { rows: 24, cols: 80 };
 * assert.equal(size.cols, 80);
 * ```
 */
export interface WindowSize {
  /** Lines. */
  rows: number;
  /** Columns. */
  cols: number;
}

/**
 * An open pseudo-terminal master and the path of its slave.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, type Pty } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * const pty: Pty = openPty({ rows: 24, cols: 80 });
 * assert.match(pty.path, /^\/dev\/pts\/\d+$/);
 * closeFd(pty.fd);
 * ```
 */
export interface Pty {
  /** The master's descriptor: non-blocking, close-on-exec, not a controlling terminal. */
  fd: number;
  /** The slave's path, such as `/dev/pts/3`. */
  path: string;
}

/**
 * Opens a new pseudo-terminal master (non-blocking, close-on-exec) and unlocks its slave.
 *
 * @param size The initial window size.
 * @returns The master's descriptor and the slave's path.
 * @throws {SysError} When no pseudo-terminal can be had.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, windowSize } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * const pty = openPty({ rows: 24, cols: 80 });
 * assert.match(pty.path, /^\/dev\/pts\/\d+$/); // such as "/dev/pts/5"
 * assert.deepEqual(windowSize(pty.fd), { rows: 24, cols: 80 });
 * closeFd(pty.fd);
 * ```
 */
export function openPty(size: WindowSize = { rows: 24, cols: 80 }): Pty {
  const c = libc();
  const fd = check(
    c.posix_openpt(O.RDWR | O.NOCTTY | O.NONBLOCK | O.CLOEXEC),
    "posix_openpt",
    "/dev/ptmx",
  );
  try {
    check(c.grantpt(fd), "grantpt");
    check(c.unlockpt(fd), "unlockpt");
    const name = new Uint8Array(128);
    const e = c.ptsname_r(fd, name, BigInt(name.length));
    if (e !== 0) throw new SysError("ptsname_r", e);
    const path = new TextDecoder().decode(name.subarray(0, name.indexOf(0)));
    setWindowSize(fd, size);
    return { fd, path };
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/**
 * Sets a terminal's window size; the kernel sends `SIGWINCH` to its foreground process
 * group when the size changes.
 *
 * @param fd A descriptor of the terminal (the master or the slave).
 * @param size The size; each side is clamped to 1..65535.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, setWindowSize, windowSize } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * const pty = openPty();
 * setWindowSize(pty.fd, { rows: 50, cols: 132 });
 * assert.deepEqual(windowSize(pty.fd), { rows: 50, cols: 132 });
 * closeFd(pty.fd);
 * ```
 */
export function setWindowSize(fd: number, size: WindowSize): void {
  const ws = new Uint16Array(4);
  ws[0] = clamp(size.rows);
  ws[1] = clamp(size.cols);
  check(libc().ioctl(fd, TIOCSWINSZ, new Uint8Array(ws.buffer)), "ioctl(TIOCSWINSZ)");
}

function clamp(n: number): number {
  return Math.min(65535, Math.max(1, Math.floor(Number.isFinite(n) ? n : 1)));
}

/**
 * A terminal's window size.
 *
 * @param fd A descriptor of the terminal.
 * @returns The size.
 * @throws {SysError} ENOTTY when `fd` is not a terminal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, windowSize } from "./pty.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const pty = openPty({ rows: 50, cols: 132 });
 * assert.deepEqual(windowSize(pty.fd), { rows: 50, cols: 132 });
 * closeFd(pty.fd);
 * const notTerminal = openFd("/dev/null", O.RDONLY);
 * assert.throws(() => windowSize(notTerminal), { code: "ENOTTY" });
 * closeFd(notTerminal);
 * ```
 */
export function windowSize(fd: number): WindowSize {
  const ws = new Uint16Array(4);
  check(libc().ioctl(fd, TIOCGWINSZ, new Uint8Array(ws.buffer)), "ioctl(TIOCGWINSZ)");
  return { rows: ws[0]!, cols: ws[1]! };
}

/**
 * Sends a signal to the foreground process group of a pseudo-terminal's slave, as its line
 * discipline does for Ctrl-C (`TIOCSIG` on the master).
 *
 * @param fd The master's descriptor.
 * @param signo The signal number (2 for SIGINT).
 * @returns False when the terminal has no foreground process group.
 *
 * @example Stop a command as Ctrl-C would
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, readSome, signalForeground } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * import { spawnOnTerminal, waitExit } from "./spawn.ts";
 * const pty = openPty();
 * const pid = spawnOnTerminal(["sh", "-c", "echo ready; exec sleep 60"], { tty: pty.path });
 * const buf = new Uint8Array(1024);
 * let seen = "";
 * while (!seen.includes("ready")) { // the command now owns the terminal
 *   const r = readSome(pty.fd, buf);
 *   if (typeof r === "number") seen += new TextDecoder().decode(buf.subarray(0, r));
 *   else await new Promise((resolve) => setTimeout(resolve, 5));
 * }
 * assert.equal(signalForeground(pty.fd, 2), true); // SIGINT
 * assert.deepEqual(await waitExit(pid), { code: 130, signal: "SIGINT" });
 * closeFd(pty.fd);
 * ```
 */
export function signalForeground(fd: number, signo: number): boolean {
  if (libc().ioctl_int(fd, TIOCSIG, BigInt(signo)) === 0) return true;
  const e = errno();
  if (e === Errno.EINVAL || e === Errno.ENOTTY || e === Errno.EIO) return false;
  throw new SysError("ioctl(TIOCSIG)", e);
}

/**
 * Reads what is available on a non-blocking descriptor.
 *
 * @param fd The descriptor (a pseudo-terminal master).
 * @param buf Where to put the bytes.
 * @returns The count read (more than 0), `"again"` when nothing is available now, or
 *   `"closed"` when the other side has gone (a master reads EIO once no process holds the
 *   slave open, and 0 at end of file).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, readSome } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * const pty = openPty();
 * const r = readSome(pty.fd, new Uint8Array(65536));
 * assert.equal(r, "again"); // nothing written on the slave side: nothing to read
 * closeFd(pty.fd);
 * ```
 */
export function readSome(fd: number, buf: Uint8Array): number | "again" | "closed" {
  const c = libc();
  for (;;) {
    const n = Number(c.read(fd, buf as Uint8Array<ArrayBuffer>, BigInt(buf.length)));
    if (n > 0) return n;
    if (n === 0) return "closed";
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN) return "again";
    if (e === Errno.EIO) return "closed";
    throw new SysError("read", e);
  }
}

/**
 * Writes what a non-blocking descriptor takes now.
 *
 * @param fd The descriptor (a pseudo-terminal master).
 * @param data The bytes.
 * @returns How many bytes were written (0 when it would block), or `"closed"` when the
 *   other side has gone.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openPty, writeSome } from "./pty.ts";
 * import { closeFd } from "./fs.ts";
 * const pty = openPty();
 * const n = writeSome(pty.fd, new TextEncoder().encode("ls\n"));
 * assert.equal(n, 3); // typed into the terminal, for whatever runs there to read
 * closeFd(pty.fd);
 * ```
 */
export function writeSome(fd: number, data: Uint8Array): number | "closed" {
  if (data.length === 0) return 0;
  const c = libc();
  for (;;) {
    const n = Number(c.write(fd, data as Uint8Array<ArrayBuffer>, BigInt(data.length)));
    if (n >= 0) return n;
    const e = errno();
    if (e === Errno.EINTR) continue;
    if (e === Errno.EAGAIN) return 0;
    if (e === Errno.EIO || e === Errno.EPIPE) return "closed";
    throw new SysError("write", e);
  }
}
