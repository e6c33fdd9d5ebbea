/**
 * The messagefs tree, mounted with FUSE: what the original messagefs meant, working.
 *
 * - The root lists every node of the network as a file (this node's own included), each
 *   group as a directory, and the hidden files `.all` and `.inbox`.
 * - A group's directory lists the nodes in that group, its subgroups, and `.all`.
 * - Writing a node's file sends that node one direct message per `write(2)`.
 * - Writing a directory's `.all` sends one message to every other node in that group and
 *   the groups below it, once each (the root's `.all` reaches everyone).
 * - Reading this node's own file gives the last message it received.
 * - `mkdir` joins a group (making it), `rmdir` leaves it.
 * - `.inbox` (at the root) blocks until a message comes and returns one per read, as a line
 *   `FROM: text` (direct) or `FROM @/GROUP: text` (broadcast), so `cat mnt/.inbox` follows
 *   the conversation. Each open sees the messages received from then on.
 *
 * @module
 */

import {
  type Deferred,
  type FileSystem,
  type FuseAttr,
  type FuseContext,
  type FuseDirEntry,
  type FuseEntry,
  FuseError,
  mount as fuseMount,
} from "../../sys/fuse/mod.ts";
import { Errno } from "../../sys/errno.ts";
import { FsbusError } from "../../types.ts";
import { checkGroup, heardGroups } from "./names.ts";
import type { Node, NodeMessage } from "./node.ts";

const { ENOENT, EIO, EACCES, EEXIST, ENOTDIR, EISDIR, EINVAL, EMSGSIZE, ENOTEMPTY } = Errno;

const DIR = 0o040755;
const FILE = 0o100644;
const WRITE_ONLY = 0o100222;

const encoder = new TextEncoder();

/**
 * A mounted messagefs tree.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join, mountNode } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const bob = await join({ root, name: "bob", groups: ["ops"] });
 * const mnt = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const m = await mountNode(alice, mnt);
 * assert.equal(m.mountpoint, mnt);
 * await m.unmount();
 * await m.done;
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * Deno.removeSync(mnt);
 * ```
 */
export interface MountedTree {
  /** The mount point. */
  readonly mountpoint: string;
  /** Resolves when the tree is unmounted (by `unmount()`, `umount`, or a signal). */
  readonly done: Promise<void>;
  /** Unmounts the tree; the node stays in the network. */
  unmount(): Promise<void>;
}

/**
 * Options of {@linkcode mountNode}.
 *
 * @example
 * ```ts
 * import type { MountTreeOptions } from "./mount.ts";
 * const o: MountTreeOptions = { handleSignals: true };
 * ```
 */
export interface MountTreeOptions {
  /** Unmount on SIGINT and SIGTERM. */
  handleSignals?: boolean;
  /** Told about unexpected errors while serving. */
  onError?: (err: unknown) => void;
}

type Kind =
  | { t: "dir"; group: string }
  | { t: "node"; group: string; name: string }
  | { t: "all"; group: string }
  | { t: "inbox" };

interface InboxHandle {
  queue: Uint8Array[];
  waiting: Deferred<Uint8Array> | undefined;
  close: () => Promise<void>;
}

function errnoOf(err: unknown): number {
  if (err instanceof FsbusError) {
    if (err.code === "not_found") return ENOENT;
    if (err.code === "too_large") return EMSGSIZE;
    if (err.code === "invalid") return EINVAL;
    if (err.code === "permission_denied") return EACCES;
  }
  return EIO;
}

function line(m: NodeMessage): Uint8Array {
  const prefix = encoder.encode(m.group === undefined ? `${m.from}: ` : `${m.from} @/${m.group}: `);
  const nl = m.data.length === 0 || m.data[m.data.length - 1] !== 10;
  const out = new Uint8Array(prefix.length + m.data.length + (nl ? 1 : 0));
  out.set(prefix);
  out.set(m.data, prefix.length);
  if (nl) out[out.length - 1] = 10;
  return out;
}

/** The file system of one node's view of its network. */
class Tree implements FileSystem {
  readonly #node: Node;
  readonly #ids = new Map<string, number>();
  readonly #kinds = new Map<number, Kind>();
  readonly #inboxes = new Map<number, InboxHandle>();
  #nextId = 2;
  #nextFh = 1;
  readonly #started = Date.now();

  constructor(node: Node) {
    this.#node = node;
    this.#ids.set("d:", 1);
    this.#kinds.set(1, { t: "dir", group: "" });
  }

  #id(key: string, kind: Kind): number {
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#nextId++;
      this.#ids.set(key, id);
      this.#kinds.set(id, kind);
    }
    return id;
  }

  #kind(id: number): Kind {
    const k = this.#kinds.get(id);
    if (!k) throw new FuseError(ENOENT);
    return k;
  }

  /** Every node with its groups, this one included. */
  #everyone(): { name: string; groups: readonly string[] }[] {
    return [{ name: this.#node.name, groups: this.#node.groups }, ...this.#node.peers()];
  }

  #groups(): Set<string> {
    return heardGroups(this.#everyone().flatMap((n) => n.groups));
  }

  /** What `name` is inside group directory `group`, or undefined. */
  #child(group: string, name: string): Kind | undefined {
    if (name === ".all") return { t: "all", group };
    if (name === ".inbox" && group === "") return { t: "inbox" };
    const path = group ? `${group}/${name}` : name;
    for (const n of this.#everyone()) {
      if (n.name === name && (group === "" || n.groups.includes(group))) {
        return { t: "node", group, name };
      }
    }
    if (this.#groups().has(path)) return { t: "dir", group: path };
    return undefined;
  }

  #key(k: Kind): string {
    switch (k.t) {
      case "dir":
        return `d:${k.group}`;
      case "node":
        return `n:${k.group}/${k.name}`;
      case "all":
        return `a:${k.group}`;
      case "inbox":
        return "i:";
    }
  }

  #attr(k: Kind, id: number): FuseAttr {
    const base = { ino: id, mtimeMs: this.#started };
    switch (k.t) {
      case "dir":
        return { ...base, mode: DIR };
      case "all":
        return { ...base, mode: WRITE_ONLY };
      case "inbox":
        return { ...base, mode: 0o100444 };
      case "node": {
        if (k.name !== this.#node.name) return { ...base, mode: WRITE_ONLY };
        const last = this.#node.lastMessage;
        return {
          ...base,
          mode: FILE,
          size: last?.data.length ?? 0,
          mtimeMs: last?.time.getTime() ?? this.#started,
        };
      }
    }
  }

  #entry(k: Kind): FuseEntry {
    const id = this.#id(this.#key(k), k);
    return { node: id, attr: this.#attr(k, id) };
  }

  #dirOf(id: number): string {
    const k = this.#kind(id);
    if (k.t !== "dir") throw new FuseError(ENOTDIR);
    return k.group;
  }

  lookup(parent: number, name: string): FuseEntry {
    const k = this.#child(this.#dirOf(parent), name);
    if (!k) throw new FuseError(ENOENT);
    return this.#entry(k);
  }

  getattr(node: number): FuseAttr {
    const k = this.#kind(node);
    if (k.t === "dir" && k.group !== "" && !this.#groups().has(k.group)) {
      throw new FuseError(ENOENT);
    }
    return this.#attr(k, node);
  }

  setattr(node: number, changes: { size?: number }): FuseAttr {
    // `echo hi > file` truncates first: nothing to truncate, and nothing else changes.
    if (changes.size !== undefined && changes.size !== 0) throw new FuseError(EINVAL);
    return this.getattr(node);
  }

  open(node: number) {
    const k = this.#kind(node);
    if (k.t === "dir") throw new FuseError(EISDIR);
    const fh = this.#nextFh++;
    if (k.t === "inbox") {
      const sub = this.#node.messages();
      const handle: InboxHandle = { queue: [], waiting: undefined, close: () => sub.close() };
      this.#inboxes.set(fh, handle);
      void this.#follow(fh, handle, sub);
      return { fh, directIo: true, stream: true };
    }
    // Others' files and .all read as empty; this node's own file, as its last message.
    return { fh, directIo: true };
  }

  async #follow(fh: number, handle: InboxHandle, sub: AsyncIterable<NodeMessage>): Promise<void> {
    for await (const m of sub) {
      if (!this.#inboxes.has(fh)) break;
      const bytes = line(m);
      if (handle.waiting) {
        const w = handle.waiting;
        handle.waiting = undefined;
        w.resolve(bytes);
      } else handle.queue.push(bytes);
    }
  }

  read(node: number, fh: number, offset: number, size: number, ctx: FuseContext) {
    const k = this.#kind(node);
    if (k.t === "inbox") {
      const handle = this.#inboxes.get(fh);
      if (!handle) throw new FuseError(EIO);
      const next = handle.queue.shift();
      if (next) return this.#part(handle, next, size);
      const later = ctx.defer<Uint8Array>();
      handle.waiting = later;
      later.onInterrupt = () => {
        if (handle.waiting === later) handle.waiting = undefined;
      };
      return later;
    }
    if (k.t === "node" && k.name === this.#node.name) {
      const data = this.#node.lastMessage?.data ?? new Uint8Array();
      return data.subarray(offset, offset + size);
    }
    return new Uint8Array();
  }

  /** One message per read; a message longer than the read goes on in the next read. */
  #part(handle: InboxHandle, bytes: Uint8Array, size: number): Uint8Array {
    if (bytes.length <= size) return bytes;
    handle.queue.unshift(bytes.subarray(size));
    return bytes.subarray(0, size);
  }

  write(node: number, _fh: number, _offset: number, data: Uint8Array, ctx: FuseContext) {
    const k = this.#kind(node);
    let sending: Promise<unknown>;
    const copy = data.slice(); // the buffer is only valid during the call
    try {
      if (k.t === "node") sending = this.#node.send(k.name, copy);
      else if (k.t === "all") sending = this.#node.broadcast(k.group, copy);
      else throw new FuseError(k.t === "dir" ? EISDIR : EACCES);
    } catch (err) {
      if (err instanceof FuseError) throw err;
      throw new FuseError(errnoOf(err));
    }
    const later = ctx.defer<number>();
    sending.then(() => later.resolve(data.length), (err) => later.reject(errnoOf(err)));
    return later;
  }

  release(_node: number, fh: number): void {
    const handle = this.#inboxes.get(fh);
    if (!handle) return;
    this.#inboxes.delete(fh);
    handle.waiting?.reject(EIO);
    void handle.close();
  }

  readdir(node: number): FuseDirEntry[] {
    const group = this.#dirOf(node);
    const out: FuseDirEntry[] = [];
    const add = (k: Kind, name: string) => {
      const e = this.#entry(k);
      out.push({ name, ino: e.node, mode: e.attr.mode });
    };
    add({ t: "all", group }, ".all");
    if (group === "") add({ t: "inbox" }, ".inbox");
    const names = new Set<string>();
    for (const n of this.#everyone()) {
      if (group !== "" && !n.groups.includes(group)) continue;
      if (names.has(n.name)) continue;
      names.add(n.name);
      add({ t: "node", group, name: n.name }, n.name);
    }
    const prefix = group ? `${group}/` : "";
    for (const g of [...this.#groups()].sort()) {
      if (!g.startsWith(prefix) || g === group) continue;
      const rest = g.slice(prefix.length);
      if (rest.includes("/") || names.has(rest)) continue;
      add({ t: "dir", group: g }, rest);
    }
    return out;
  }

  mkdir(parent: number, name: string, _mode: number, ctx: FuseContext) {
    const group = this.#dirOf(parent);
    let path: string;
    try {
      path = checkGroup(group ? `${group}/${name}` : name);
    } catch {
      throw new FuseError(EINVAL);
    }
    if (this.#node.groups.includes(path) || this.#child(group, name)?.t === "node") {
      throw new FuseError(EEXIST);
    }
    const later = ctx.defer<FuseEntry>();
    this.#node.joinGroup(path).then(
      () => later.resolve(this.#entry({ t: "dir", group: path })),
      (err) => later.reject(errnoOf(err)),
    );
    return later;
  }

  rmdir(parent: number, name: string, ctx: FuseContext) {
    const group = this.#dirOf(parent);
    const path = group ? `${group}/${name}` : name;
    if (!this.#groups().has(path)) throw new FuseError(ENOENT);
    if (!this.#node.groups.includes(path)) {
      // Other nodes' group (or only a parent of groups): not this node's to leave.
      throw new FuseError(ENOTEMPTY);
    }
    const later = ctx.defer<void>();
    this.#node.leaveGroup(path).then(() => later.resolve(), (err) => later.reject(errnoOf(err)));
    return later;
  }

  create(): never {
    // A file that is not there is a node that is not in the network.
    throw new FuseError(ENOENT);
  }

  unlink(): void {
    throw new FuseError(EACCES);
  }

  shutdown(): void {
    for (const fh of [...this.#inboxes.keys()]) this.release(0, fh);
  }
}

/**
 * Mounts a node's view of its network on an empty directory (root, or fusermount3).
 *
 * @param node The node (it stays in the network after the tree is unmounted).
 * @param mountpoint An empty directory.
 * @param options Signal handling, error reporting.
 * @returns The mounted tree.
 * @throws {FsbusError} When it cannot be mounted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join, mountNode } from "@x/fsbus/messagefs";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const alice = await join({ root, name: "alice" });
 * const bob = await join({ root, name: "bob", groups: ["ops"] });
 * const mnt = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const tree = await mountNode(alice, mnt, { handleSignals: true });
 * // What a shell does (in another process: a read of this process's own mount would wait on
 * // itself): write to a node's file to send to it.
 * const sh = await new Deno.Command("sh", { args: ["-c", `echo hi > ${mnt}/bob`] }).output();
 * assert.equal(sh.code, 0);
 * for await (const m of bob.messages()) {
 *   assert.equal(m.from, "alice");
 *   assert.equal(new TextDecoder().decode(m.data), "hi\n");
 *   break;
 * }
 * await tree.unmount(); // or Ctrl-C, or `umount DIR`
 * await tree.done;
 * await alice.leave();
 * await bob.leave();
 * Deno.removeSync(root, { recursive: true });
 * Deno.removeSync(mnt);
 * ```
 */
export async function mountNode(
  node: Node,
  mountpoint: string,
  options: MountTreeOptions = {},
): Promise<MountedTree> {
  const server = await fuseMount(mountpoint, new Tree(node), {
    fsname: `messagefs:${node.network}:${node.name}`,
    subtype: "messagefs",
    entryTtlMs: 0,
    attrTtlMs: 0,
    ...(options.handleSignals ? { handleSignals: true } : {}),
    ...(options.onError ? { onError: options.onError } : {}),
  });
  return {
    mountpoint,
    done: server.done,
    unmount: () => server.stop(),
  };
}
