/**
 * FUSE without libfuse: mount a typed {@linkcode FileSystem} on a directory and serve it
 * from this process, speaking the kernel protocol over `/dev/fuse` through FFI (libc only).
 * Mounting uses `mount(2)` as root and `fusermount3` otherwise; a stale mount left by a
 * killed server is cleaned by the next mount on that path; the mount goes away on
 * `stop()`, on SIGINT/SIGTERM (with `handleSignals`), at exit, and when someone unmounts it.
 *
 * The file system must never use its own mount point (that deadlocks the kernel): it serves
 * from memory or from other paths.
 *
 * @example A hello-world file system: one read-only file, `hello`
 * ```ts
 * import assert from "node:assert/strict";
 * import { type FileSystem, FuseError, mount } from "./mod.ts";
 *
 * const text = new TextEncoder().encode("hello, world\n");
 * const HELLO = 2;
 * const hello: FileSystem = {
 *   lookup(parent, name) {
 *     if (parent !== 1 || name !== "hello") throw new FuseError(2); // ENOENT
 *     return { node: HELLO, attr: { mode: 0o100444, size: text.length } };
 *   },
 *   getattr(node) {
 *     if (node === 1) return { mode: 0o040755 };
 *     return { mode: 0o100444, size: text.length };
 *   },
 *   readdir: () => [{ name: "hello", ino: HELLO, mode: 0o100444 }],
 *   read: (_node, _fh, offset, size) => text.subarray(offset, offset + size),
 * };
 *
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const server = await mount(dir, hello, { fsname: "hello", handleSignals: true });
 * // `cat DIR/hello` works until Ctrl-C, `umount DIR` or server.stop() (from another process:
 * // a read of this process's own mount would wait on itself).
 * const cat = await new Deno.Command("cat", { args: [`${dir}/hello`] }).output();
 * assert.equal(new TextDecoder().decode(cat.stdout), "hello, world\n");
 * await server.stop();
 * await server.done;
 * Deno.removeSync(dir);
 * ```
 *
 * @module
 */

import { fuseMount, type MountOptions } from "./mount.ts";
import type { FileSystem } from "./file_system.ts";
import { FuseServer, type ServeOptions } from "./server.ts";

export {
  Deferred,
  type FileSystem,
  type FuseAttr,
  type FuseContext,
  type FuseDirEntry,
  type FuseEntry,
  FuseError,
  type FuseOpened,
  type FuseSetAttr,
  type FuseStatfs,
  type Maybe,
} from "./file_system.ts";
export { FuseServer, type ServeOptions } from "./server.ts";
export { MAX_WRITE } from "./_requests.ts";
export {
  type FuseConnection,
  fuseMount,
  mountAt,
  type MountInfo,
  type MountMethod,
  type MountOptions,
  mountTable,
  prepareMountpoint,
  unmountPath,
} from "./mount.ts";

/** Options for {@linkcode mount}. */
export interface MountServeOptions extends ServeOptions, Partial<MountOptions> {
  /**
   * The source shown in the mount table.
   *
   * @default {"fsbus"}
   */
  fsname?: string;
  /**
   * The type's suffix: the mount shows as `fuse.SUBTYPE`.
   *
   * @default {"fsbus"}
   */
  subtype?: string;
  /**
   * Unmount on SIGINT and SIGTERM (the process then carries on; `done` resolves).
   *
   * @default {false}
   */
  handleSignals?: boolean;
}

/**
 * Mounts a file system on an empty directory and starts serving it. The mount is removed by
 * `server.stop()`, by an unmount from outside, at process exit, and on SIGINT/SIGTERM when
 * `handleSignals` is set.
 *
 * @param mountpoint An empty directory.
 * @param fs The file system.
 * @param options Mount and serve options.
 * @returns The running server; `await server.done` until it stops.
 * @throws {FsbusError} When it cannot be mounted (one line saying why); nothing is mounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type FileSystem, FuseError, mount, mountAt } from "./mod.ts";
 * const empty: FileSystem = {
 *   lookup: () => {
 *     throw new FuseError(2); // ENOENT
 *   },
 *   getattr: () => ({ mode: 0o040755 }),
 *   readdir: () => [],
 * };
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const server = await mount(dir, empty, { fsname: "x", subtype: "demo" });
 * assert.equal(mountAt(dir)?.fstype, "fuse.demo");
 * await server.stop();
 * assert.equal(mountAt(dir), undefined);
 * Deno.removeSync(dir);
 * ```
 */
export async function mount(
  mountpoint: string,
  fs: FileSystem,
  options: MountServeOptions = {},
): Promise<FuseServer> {
  const { fsname = "fsbus", subtype = "fsbus" } = options;
  const conn = await fuseMount(mountpoint, {
    fsname,
    subtype,
    ...(options.allowOther !== undefined ? { allowOther: options.allowOther } : {}),
    ...(options.onNotice ? { onNotice: options.onNotice } : {}),
    ...(options.useFusermount ? { useFusermount: true } : {}),
  });
  const server = new FuseServer(conn, fs, options);
  const onSignal = () => void server.stop();
  const onUnload = () => server.stopSync();
  globalThis.addEventListener("unload", onUnload);
  if (options.handleSignals) {
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  }
  void server.done.finally(() => {
    globalThis.removeEventListener("unload", onUnload);
    if (options.handleSignals) {
      Deno.removeSignalListener("SIGINT", onSignal);
      Deno.removeSignalListener("SIGTERM", onSignal);
    }
  });
  return server;
}
