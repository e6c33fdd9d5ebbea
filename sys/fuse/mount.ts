/**
 * Mounting and unmounting a FUSE file system without libfuse: `mount(2)` on `/dev/fuse` as
 * root, or `fusermount3` (which passes the descriptor back over a Unix socket, SCM_RIGHTS)
 * otherwise; stale mounts of dead servers are found and cleaned; the mount table is read
 * from `/proc/self/mountinfo`.
 *
 * @module
 */

import { check, cpath, errno, libc } from "../libc.ts";
import { Errno, SysError } from "../errno.ts";
import { closeFd, O, openFd, statPath } from "../fs.ts";
import { FsbusError } from "../../types.ts";

const { ENOTCONN, ECONNABORTED } = Errno;
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_STATX_FORCE_SYNC = 0x2000;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MNT_DETACH = 2;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const MSG_DONTWAIT = 0x40;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;

/** The FUSE device. */
export const FUSE_DEVICE = "/dev/fuse";

/** One line of `/proc/self/mountinfo`. */
export interface MountInfo {
  /** The mount's unique id. */
  id: number;
  /** The device, "major:minor". */
  dev: string;
  /** The mount point. */
  mountpoint: string;
  /** The file system type, such as "fuse.fsbus-mq". */
  fstype: string;
  /** The source (for FUSE: the fsname option). */
  source: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The mount table of this process's mount namespace.
 *
 * @returns One entry per mount, in the kernel's order (parents first).
 *
 * @example
 * ```ts
 * import { mountTable } from "./mount.ts";
 * console.log(mountTable().some((m) => m.mountpoint === "/"));
 * ```
 */
export function mountTable(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    if (line === "") continue;
    const f = line.split(" ");
    const dash = f.indexOf("-", 6);
    if (dash < 0 || f.length < dash + 3) continue;
    out.push({
      id: Number(f[0]),
      dev: f[2]!,
      mountpoint: unescape(f[4]!),
      fstype: f[dash + 1]!,
      source: unescape(f[dash + 2]!),
    });
  }
  return out;
}

/**
 * The mount whose mount point is `path` exactly (the topmost when several are stacked).
 *
 * @param path An absolute, resolved path.
 * @returns The mount, or undefined.
 *
 * @example
 * ```ts
 * import { mountAt } from "./mount.ts";
 * console.log(mountAt("/")?.fstype);
 * ```
 */
export function mountAt(path: string): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const m of mountTable()) if (m.mountpoint === path) found = m;
  return found;
}

/** How a mount was made, and so how it is unmounted. */
export type MountMethod = "mount" | "fusermount3";

/** Options for {@linkcode fuseMount}. */
export interface MountOptions {
  /** The source shown in the mount table (`fsname`), such as the directory served. */
  fsname: string;
  /** The type's suffix: the mount shows as `fuse.SUBTYPE`. */
  subtype: string;
  /** Let other users reach the mount (default: true for root; needs
   * `user_allow_other` in /etc/fuse.conf otherwise). */
  allowOther?: boolean;
  /** Called with a one-line notice when a stale mount was cleaned up first. */
  onNotice?: (message: string) => void;
  /** Mount through fusermount3 even as root (default: only when not root). */
  useFusermount?: boolean;
}

/** A mounted FUSE connection: the device descriptor to serve and how to undo the mount. */
export interface FuseConnection {
  /** The `/dev/fuse` descriptor (non-blocking, close-on-exec). */
  fd: number;
  /** The mount point, resolved. */
  mountpoint: string;
  /** The mount's id in the mount table. */
  mountId: number;
  /** How it was mounted. */
  method: MountMethod;
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

function escapeOption(s: string): string {
  return s.replace(/[,\\]/g, (c) => "\\" + c);
}

/**
 * Checks a mount point and cleans a stale FUSE mount on it (a server that died leaves one:
 * every access fails with ENOTCONN).
 *
 * @param mountpoint The mount point given.
 * @param onNotice Told when a stale mount was removed.
 * @returns The resolved path.
 * @throws {FsbusError} When it is missing, not a directory, not empty, or already mounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { prepareMountpoint } from "./mount.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(prepareMountpoint(dir), dir);
 * Deno.writeTextFileSync(`${dir}/file`, "");
 * assert.throws(() => prepareMountpoint(dir), /not empty/);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function prepareMountpoint(mountpoint: string, onNotice?: (m: string) => void): string {
  const what = `Cannot mount on "${mountpoint}"`;
  let real: string;
  try {
    real = Deno.realPathSync(mountpoint);
  } catch {
    real = absolute(mountpoint);
  }
  const existing = mountAt(real);
  if (existing !== undefined && existing.fstype.startsWith("fuse") && isDead(real)) {
    unmountPath(real, isRoot() ? "mount" : "fusermount3", true);
    onNotice?.(`Removed a stale mount on "${mountpoint}" (its server had died)`);
  }
  let st;
  try {
    st = statPath(real);
  } catch (err) {
    throw new FsbusError("io", `${what}: ${reason(err)}`);
  }
  if (st === undefined) throw new FsbusError("not_found", `${what}: no such directory`);
  if (st.kind !== "directory") throw new FsbusError("not_a_directory", `${what}: not a directory`);
  real = Deno.realPathSync(real);
  if (mountAt(real) !== undefined) {
    throw new FsbusError("busy", `${what}: something is mounted there already`);
  }
  for (const _ of Deno.readDirSync(real)) {
    throw new FsbusError("invalid", `${what}: the directory is not empty`);
  }
  return real;
}

/** Whether a FUSE mount's server is gone: a stat that must reach it fails ENOTCONN. */
function isDead(path: string): boolean {
  const buf = new Uint8Array(256);
  const r = libc().statx(AT_FDCWD, cpath(path), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, 1, buf);
  if (r === 0) return false;
  const e = errno();
  return e === ENOTCONN || e === ECONNABORTED;
}

function absolute(path: string): string {
  if (path.startsWith("/")) return path;
  return `${Deno.cwd()}/${path}`.replace(/\/\.?\/+/g, "/");
}

/**
 * Mounts a FUSE file system on an empty directory and returns the device descriptor to
 * serve (see `server.ts`): with `mount(2)` as root, else through `fusermount3`.
 *
 * @param mountpoint An empty directory.
 * @param options The fsname, subtype and access options.
 * @returns The connection.
 * @throws {FsbusError} With one line saying why (no /dev/fuse, no permission, a bad
 *   mount point); nothing is mounted then.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fuseMount, mountAt, unmountPath } from "./mount.ts";
 * import { closeFd } from "../fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const conn = await fuseMount(dir, { fsname: "demo", subtype: "demo" });
 * assert.equal(mountAt(dir)?.fstype, "fuse.demo");
 * // Nobody serves it: unmount at once, lazily (an access would wait for an answer).
 * unmountPath(conn.mountpoint, conn.method, true);
 * closeFd(conn.fd);
 * assert.equal(mountAt(dir), undefined);
 * Deno.removeSync(dir);
 * ```
 */
export async function fuseMount(
  mountpoint: string,
  options: MountOptions,
): Promise<FuseConnection> {
  const real = prepareMountpoint(mountpoint, options.onNotice);
  const what = `Cannot mount on "${mountpoint}"`;
  if (statPath(FUSE_DEVICE) === undefined) {
    throw new FsbusError(
      "unsupported",
      `${what}: ${FUSE_DEVICE} is missing (load the fuse module, or run where FUSE is allowed)`,
    );
  }
  const allowOther = options.allowOther ?? isRoot();
  const opts = [
    `fsname=${escapeOption(options.fsname)}`,
    `subtype=${escapeOption(options.subtype)}`,
    "default_permissions",
    ...(allowOther ? ["allow_other"] : []),
  ];
  let fd: number;
  let method: MountMethod;
  if (isRoot() && !options.useFusermount) {
    fd = mountAsRoot(real, options.fsname, options.subtype, opts, what);
    method = "mount";
  } else {
    fd = await mountWithFusermount(real, opts, what);
    method = "fusermount3";
  }
  const flags = libc().fcntl(fd, F_GETFL, 0);
  libc().fcntl(fd, F_SETFL, flags | O.NONBLOCK);
  libc().fcntl(fd, F_SETFD, 1);
  const entry = mountAt(real);
  return { fd, mountpoint: real, mountId: entry?.id ?? -1, method };
}

function mountAsRoot(
  real: string,
  fsname: string,
  subtype: string,
  opts: string[],
  what: string,
): number {
  let fd: number;
  try {
    fd = openFd(FUSE_DEVICE, O.RDWR);
  } catch (err) {
    throw new FsbusError(
      "permission_denied",
      `${what}: cannot open ${FUSE_DEVICE}: ${reason(err)}`,
    );
  }
  const data = [`fd=${fd}`, "rootmode=40000", `user_id=${Deno.uid()}`, `group_id=${Deno.gid()}`]
    .concat(opts.filter((o) => !o.startsWith("fsname=") && !o.startsWith("subtype=")))
    .join(",");
  const ret = libc().mount(
    cstr(fsname),
    cstr(real),
    cstr(`fuse.${subtype}`),
    BigInt(MS_NOSUID | MS_NODEV),
    cstr(data),
  );
  if (ret !== 0) {
    const e = errno();
    closeFd(fd);
    throw new FsbusError(
      e === Errno.EPERM || e === Errno.EACCES ? "permission_denied" : "io",
      `${what}: mount: ${new SysError("mount", e).reason}`,
    );
  }
  return fd;
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

function reason(err: unknown): string {
  return err instanceof SysError ? err.reason : err instanceof Error ? err.message : String(err);
}

async function mountWithFusermount(real: string, opts: string[], what: string): Promise<number> {
  const sv = new Int32Array(2);
  check(
    libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, new Uint8Array(sv.buffer)),
    "socketpair",
  );
  const [ours, theirs] = [sv[0]!, sv[1]!];
  try {
    libc().fcntl(theirs, F_SETFD, 0); // the child inherits this end only
    let child;
    try {
      child = new Deno.Command("fusermount3", {
        args: ["-o", opts.join(","), "--", real],
        env: { _FUSE_COMMFD: String(theirs) },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound
        ? "not root, and fusermount3 is not installed (install fuse3)"
        : reason(err);
      throw new FsbusError("unsupported", `${what}: ${why}`);
    } finally {
      closeFd(theirs);
    }
    const { code, stderr } = await child.output();
    const fd = receiveFd(ours);
    if (fd < 0 || code !== 0) {
      if (fd >= 0) closeFd(fd);
      const msg = new TextDecoder().decode(stderr).trim().split("\n")[0] ?? "";
      throw new FsbusError(
        "permission_denied",
        `${what}: ${
          msg.replace(/^(\S*\/)?fusermount3?: /, "") || `fusermount3 failed (exit ${code})`
        }`,
      );
    }
    return fd;
  } finally {
    closeFd(ours);
  }
}

/** Receives one descriptor sent with SCM_RIGHTS, or -1 when none came. */
function receiveFd(sock: number): number {
  const data = new Uint8Array(8);
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data))), true);
  iv.setBigUint64(8, BigInt(data.length), true);
  const control = new Uint8Array(64);
  const msg = new Uint8Array(56);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov))), true);
  mv.setBigUint64(24, 1n, true);
  mv.setBigUint64(32, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(control))), true);
  mv.setBigUint64(40, BigInt(control.length), true);
  const n = Number(libc().recvmsg(sock, msg, MSG_DONTWAIT));
  if (n <= 0) return -1;
  const cv = new DataView(control.buffer);
  const len = Number(cv.getBigUint64(0, true));
  if (len < 20 || cv.getInt32(8, true) !== SOL_SOCKET || cv.getInt32(12, true) !== SCM_RIGHTS) {
    return -1;
  }
  return cv.getInt32(16, true);
}

/**
 * Unmounts a FUSE mount: `umount2(2)` as root (lazily when `lazy`, or when busy), else
 * `fusermount3 -u` (with `-z` when `lazy`).
 *
 * @param mountpoint The mount point (resolved).
 * @param method How it was mounted.
 * @param lazy Detach now even if files are open.
 * @throws {FsbusError} When it cannot be unmounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fuseMount, mountAt, unmountPath } from "./mount.ts";
 * import { closeFd } from "../fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const conn = await fuseMount(dir, { fsname: "demo", subtype: "demo" });
 * unmountPath(conn.mountpoint, conn.method, true);
 * closeFd(conn.fd);
 * assert.equal(mountAt(dir), undefined);
 * Deno.removeSync(dir);
 * ```
 */
export function unmountPath(mountpoint: string, method: MountMethod, lazy: boolean): void {
  if (method === "mount") {
    const c = libc();
    if (c.umount2(cpath(mountpoint), lazy ? MNT_DETACH : 0) === 0) return;
    const e = errno();
    if (e === Errno.EBUSY && !lazy && c.umount2(cpath(mountpoint), MNT_DETACH) === 0) return;
    throw new FsbusError(
      e === Errno.EPERM ? "permission_denied" : "io",
      `Cannot unmount "${mountpoint}": ${new SysError("umount2", errno()).reason}`,
    );
  }
  let out;
  try {
    out = new Deno.Command("fusermount3", {
      args: lazy ? ["-u", "-z", "--", mountpoint] : ["-u", "--", mountpoint],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync();
  } catch (err) {
    throw new FsbusError("unsupported", `Cannot unmount "${mountpoint}": ${reason(err)}`);
  }
  if (out.code !== 0) {
    const msg = new TextDecoder().decode(out.stderr).trim().split("\n")[0] ?? "";
    throw new FsbusError(
      "io",
      `Cannot unmount "${mountpoint}": ${msg.replace(/^(\S*\/)?fusermount3?: /, "")}`,
    );
  }
}
