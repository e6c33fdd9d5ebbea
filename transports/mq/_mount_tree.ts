/**
 * The node table of a mounted mq tree, private to `mount.ts`: which path each node id the
 * kernel holds stands for, what kind of file it is (directory, group, `ctl`, `order` or a
 * stream), its attributes and directory listings, read from the served directory, and the
 * lookup counts that tell when the kernel has forgotten a node.
 *
 * @example Name the files of a group the way the mount shows them
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup } from "./mod.ts";
 * import { MqNodes } from "./_mount_tree.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * mkgroup(`${dir}/chat`).close();
 * Deno.writeTextFileSync(`${dir}/chat/0`, "");
 * const nodes = new MqNodes(dir);
 * const chat = nodes.classify(nodes.get(1), "chat");
 * assert.equal(chat.kind, "group");
 * assert.deepEqual(nodes.list(chat).map((e) => e.name), ["ctl", "order", "0"]);
 * assert.equal(nodes.classify(chat, "0").kind, "stream");
 * assert.throws(() => nodes.classify(chat, ".mq")); // the engine's files are not shown
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { SysError } from "../../sys/errno.ts";
import { statPath } from "../../sys/fs.ts";
import type { FdStat } from "../../sys/fs.ts";
import { type FuseAttr, type FuseDirEntry, FuseError } from "../../sys/fuse/mod.ts";

/** The errno values the tree answers with. */
export const E = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  EBADF: 9,
  EACCES: 13,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTEMPTY: 39,
} as const;

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** What a node of the tree is. */
export type Kind = "dir" | "group" | "ctl" | "order" | "stream";

/** A node the kernel knows: its path under the served directory and its kind. */
export interface Node {
  /** The node id (1 is the root). */
  id: number;
  /** The path relative to the served directory ("" for the root). */
  rel: string;
  /** What it is. */
  kind: Kind;
  /** Lookups the kernel holds (FORGET gives them back; at 0 the node is dropped). */
  lookups: number;
}

/**
 * Joins a relative path and a name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "./_mount_tree.ts";
 * assert.equal(join("", "chat"), "chat");
 * assert.equal(join("chat", "0"), "chat/0");
 * ```
 */
export function join(a: string, b: string): string {
  return a === "" ? b : `${a}/${b}`;
}

/**
 * The relative path of a node's parent ("" for the root's children).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parentOf } from "./_mount_tree.ts";
 * assert.equal(parentOf("chat/0"), "chat");
 * assert.equal(parentOf("chat"), "");
 * ```
 */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

/**
 * The last name of a relative path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { baseOf } from "./_mount_tree.ts";
 * assert.equal(baseOf("chat/0"), "0");
 * ```
 */
export function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

/**
 * The errno a caller gets for an error thrown while serving a request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FsbusError } from "../../types.ts";
 * import { SysError } from "../../sys/errno.ts";
 * import { E, errnoOf } from "./_mount_tree.ts";
 * assert.equal(errnoOf(new FsbusError("not_found", `Cannot open "x": no such file`)), E.ENOENT);
 * assert.equal(errnoOf(new SysError("write", 28)), 28); // ENOSPC, as the system call said
 * assert.equal(errnoOf(new Error("?")), E.EIO);
 * ```
 */
export function errnoOf(err: unknown): number {
  if (err instanceof FuseError) return err.errno;
  // A failed system call (ENOSPC, EDQUOT, ...): its own errno, also under an "io" error.
  if (err instanceof SysError) return err.errno;
  if (err instanceof FsbusError && err.code === "io" && err.cause instanceof SysError) {
    return err.cause.errno;
  }
  if (err instanceof FsbusError) {
    switch (err.code) {
      case "not_found":
        return E.ENOENT;
      case "permission_denied":
        return E.EACCES;
      case "already_exists":
        return E.EEXIST;
      case "not_a_directory":
        return E.ENOTDIR;
      case "is_a_directory":
        return E.EISDIR;
      case "invalid":
      case "usage":
        return E.EINVAL;
      default:
        return E.EIO;
    }
  }
  if (err instanceof Deno.errors.NotFound) return E.ENOENT;
  if (err instanceof Deno.errors.PermissionDenied) return E.EACCES;
  if (err instanceof Deno.errors.AlreadyExists) return E.EEXIST;
  return E.EIO;
}

/**
 * The nodes of a served directory (see the module doc for an example).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MqNodes } from "./_mount_tree.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const nodes = new MqNodes(dir);
 * assert.equal(nodes.get(1).kind, "dir");
 * assert.equal(nodes.size, 1);
 * Deno.removeSync(dir);
 * ```
 */
export class MqNodes {
  /** The directory served. */
  readonly dir: string;
  readonly #nodes = new Map<number, Node>();
  readonly #byRel = new Map<string, Node>();
  #nextNode = 2;

  /**
   * Makes the table of a directory, holding its root.
   *
   * @param dir The directory holding groups (or a group itself).
   */
  constructor(dir: string) {
    this.dir = dir;
    const root: Node = { id: 1, rel: "", kind: "dir", lookups: 1 };
    if (this.isGroupDir("")) root.kind = "group";
    this.#nodes.set(1, root);
    this.#byRel.set("", root);
  }

  /** The path on disk of a relative path. */
  path(rel: string): string {
    return rel === "" ? this.dir : `${this.dir}/${rel}`;
  }

  /** What is on disk at a relative path, or undefined when nothing (or it cannot be seen). */
  stat(rel: string): FdStat | undefined {
    try {
      return statPath(this.path(rel));
    } catch {
      return undefined;
    }
  }

  /** Whether a relative path is a group's directory (it holds a `ctl` file). */
  isGroupDir(rel: string): boolean {
    return this.stat(join(rel, "ctl"))?.kind === "file";
  }

  /** The node of a relative path, made (with no lookups) when new; its kind updated. */
  node(rel: string, kind: Kind): Node {
    let n = this.#byRel.get(rel);
    if (n === undefined) {
      n = { id: this.#nextNode++, rel, kind, lookups: 0 };
      this.#nodes.set(n.id, n);
      this.#byRel.set(rel, n);
    } else {
      n.kind = kind;
    }
    return n;
  }

  /** The node of an id; ENOENT when unknown. */
  get(id: number): Node {
    const n = this.#nodes.get(id);
    if (n === undefined) throw new FuseError(E.ENOENT, `unknown node ${id}`);
    return n;
  }

  /** The node of a name in a directory, by what is on disk; ENOENT when not shown. */
  classify(parent: Node, name: string): Node {
    if (name.startsWith(".") || name.includes("/")) throw new FuseError(E.ENOENT);
    const rel = join(parent.rel, name);
    const inGroup = parent.kind === "group";
    if (inGroup && (name === "ctl" || name === "order")) {
      return this.node(rel, name);
    }
    const st = this.stat(rel);
    if (st === undefined) throw new FuseError(E.ENOENT);
    if (st.kind === "directory") return this.node(rel, this.isGroupDir(rel) ? "group" : "dir");
    if (st.kind === "file" && inGroup) return this.node(rel, "stream");
    throw new FuseError(E.ENOENT);
  }

  /**
   * A node's attributes, from the file behind it.
   *
   * @param n The node.
   * @param ctlSize The size of a `ctl` node (its rendered settings).
   */
  attr(n: Node, ctlSize: () => number): FuseAttr {
    const backing = this.stat(n.rel);
    if (n.id === 1 && backing === undefined) throw new FuseError(E.EIO, "the directory is gone");
    if (backing === undefined) throw new FuseError(E.ENOENT);
    const base = {
      ino: Number(backing.ino),
      uid: backing.uid,
      mtimeMs: Number(backing.mtimeNs / 1_000_000n),
    };
    switch (n.kind) {
      case "dir":
      case "group":
        if (backing.kind !== "directory") throw new FuseError(E.ENOENT);
        return { ...base, mode: S_IFDIR | backing.mode };
      case "ctl":
        return { ...base, mode: S_IFREG | (backing.mode & 0o666), size: ctlSize() };
      case "order":
        return { ...base, mode: S_IFREG | (backing.mode & 0o444) };
      case "stream":
        if (backing.kind !== "file") throw new FuseError(E.ENOENT);
        return { ...base, mode: S_IFREG | (backing.mode & 0o777) };
    }
  }

  /** A directory's entries as the mount shows them, sorted by name. */
  list(n: Node): FuseDirEntry[] {
    if (n.kind !== "dir" && n.kind !== "group") throw new FuseError(E.ENOTDIR);
    const out: FuseDirEntry[] = [];
    const group = n.kind === "group";
    // Inode numbers are the files' own (as getattr gives): listing makes no nodes, which
    // the kernel would never forget.
    const ino = (rel: string) => Number(this.stat(rel)?.ino ?? 0n);
    if (group) {
      out.push({ name: "ctl", ino: ino(join(n.rel, "ctl")), mode: S_IFREG });
      out.push({ name: "order", ino: ino(join(n.rel, "order")), mode: S_IFREG });
    }
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.path(n.rel))];
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const rel = join(n.rel, e.name);
      if (e.isDirectory) {
        out.push({ name: e.name, ino: ino(rel), mode: S_IFDIR });
      } else if (group && e.isFile && e.name !== "ctl" && e.name !== "order") {
        out.push({ name: e.name, ino: ino(rel), mode: S_IFREG });
      }
    }
    return out;
  }

  /** Takes back lookups the kernel held; a node left with none is dropped (never the root). */
  forget(node: number, nlookup: number): void {
    const n = this.#nodes.get(node);
    if (n === undefined || n.id === 1) return;
    n.lookups -= nlookup;
    if (n.lookups > 0) return;
    this.#nodes.delete(n.id);
    if (this.#byRel.get(n.rel) === n) this.#byRel.delete(n.rel);
  }

  /** Unbinds a removed path, so a new file of that name gets a new node. */
  forgetRel(rel: string): void {
    const n = this.#byRel.get(rel);
    if (n !== undefined) this.#byRel.delete(rel);
  }

  /** How many nodes the table holds. */
  get size(): number {
    return this.#nodes.size;
  }
}
