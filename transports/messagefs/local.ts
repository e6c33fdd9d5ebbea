/**
 * A messagefs network on one machine, with no server: a registry directory that every node
 * of the network watches, and one inbox per node that is a msgfs directory bus.
 *
 * Layout of a network's directory (`ROOT/NETWORK`, mode 0700):
 * - `.lock`: taken (flock) while a node claims its name, so two nodes cannot take one name.
 * - `nodes/UUID.json`: a node's name, groups, pid and start time (replaced by rename).
 * - `nodes/UUID.lock`: flocked by its node for its whole life. The kernel drops the lock when
 *   the process dies, however it dies, and the close of its descriptor is an inotify event
 *   (`IN_CLOSE_WRITE`) for every other node, which then tries the lock: if it gets it, the
 *   node is gone, and its files are removed.
 * - `inbox/UUID/`: the node's inbox, a msgfs bus: a message is a new file holding an
 *   envelope; the node removes each one once it has read it. Nothing is lost while the node
 *   lives: files wait until read.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, fstat, O, openFd, readAllFd } from "../../sys/fs.ts";
import { tryLockFd } from "../../sys/fd_io.ts";
import { FileLock } from "../../sys/flock.ts";
import { IN, Inotify } from "../../sys/inotify.ts";
import { SysError } from "../../sys/errno.ts";
import { type BusSubscription, Publisher, subscribe } from "../msgfs/mod.ts";
import { decode, encode, type Header, MAX_HEADER } from "./envelope.ts";
import type { Carrier, CarrierEvents, Peer, SelfInfo } from "./node.ts";
import { checkInfo, type NodeInfo, toPeer } from "./_info.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_INFO = 64 * 1024;

/**
 * The default directory that holds local networks: `$XDG_RUNTIME_DIR/fsbus/messagefs`, or
 * `/tmp/fsbus-UID/messagefs` when XDG_RUNTIME_DIR is not set.
 *
 * @returns The path.
 *
 * @example
 * ```ts
 * import { defaultRoot } from "./local.ts";
 * console.log(defaultRoot());
 * ```
 */
export function defaultRoot(): string {
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/fsbus/messagefs`;
  return `/tmp/fsbus-${Deno.uid() ?? "user"}/messagefs`;
}

/**
 * Makes (when missing) and checks a directory fsbus relies on: a real directory (not a
 * symlink), owned by this user (or root, for `shared`), and not writable by others unless
 * sticky.
 */
function ensureDir(path: string, what: string, ownOnly: boolean): void {
  try {
    Deno.mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) {
      if (err instanceof Deno.errors.NotFound) {
        // A parent is missing: make the chain, each one checked in turn.
        const parent = path.slice(0, path.lastIndexOf("/"));
        if (parent && parent !== path) {
          ensureDir(parent, what, false);
          return ensureDir(path, what, ownOnly);
        }
      }
      throw fromFsError(err, `Cannot use ${what}`, path);
    }
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    throw fromFsError(err, `Cannot use ${what}`, path);
  }
  const refuse = (why: string) =>
    new FsbusError("permission_denied", `Cannot use ${what} "${path}": ${why}`);
  if (info.isSymlink) throw refuse("a symbolic link");
  if (!info.isDirectory) throw refuse("not a directory");
  const me = Deno.uid();
  if (me !== null && info.uid !== me && (ownOnly || info.uid !== 0)) {
    throw refuse(`owned by another user (uid ${info.uid})`);
  }
  const mode = info.mode ?? 0;
  if (ownOnly && (mode & 0o077) !== 0) throw refuse("others have access to it (mode must be 0700)");
  if ((mode & 0o002) !== 0 && (mode & 0o1000) === 0) {
    throw refuse("writable by others and not sticky");
  }
}

interface Info extends NodeInfo {
  v: 1;
}

function parseInfo(bytes: Uint8Array, id: string): Info | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  const i = checkInfo(raw);
  return i !== undefined && i.id === id ? i as Info : undefined;
}

function isGone(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || (err instanceof SysError && err.code === "ENOENT");
}

function unlinkQuiet(path: string, recursive = false): void {
  try {
    Deno.removeSync(path, { recursive });
  } catch {
    // already gone
  }
}

/**
 * Options of a {@linkcode LocalCarrier}.
 *
 * @example
 * ```ts
 * import type { LocalOptions } from "./local.ts";
 * const o: LocalOptions = { root: "/dev/shm/mfs", network: "default", maxSize: 1 << 20 };
 * ```
 */
export interface LocalOptions {
  /** The directory holding networks. */
  root: string;
  /** The network's name. */
  network: string;
  /** The largest payload, in bytes. */
  maxSize: number;
}

/**
 * Reads the nodes of a local network without joining it (for `ls`).
 *
 * @param root The directory holding networks.
 * @param network The network's name.
 * @returns The live nodes; none when the network does not exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "@x/fsbus/messagefs";
 * import { listLocal } from "./local.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.deepEqual(listLocal(root, "default"), []); // no such network yet
 * const alice = await join({ root, name: "alice" });
 * assert.deepEqual(listLocal(root, "default").map((p) => p.name), ["alice"]);
 * await alice.leave();
 * assert.deepEqual(listLocal(root, "default"), []);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function listLocal(root: string, network: string): Peer[] {
  const dir = `${root}/${network}`;
  try {
    Deno.lstatSync(`${dir}/nodes`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw fromFsError(err, "Cannot list network", dir);
  }
  ensureDir(root, "the messagefs root", false);
  ensureDir(dir, "the network directory", true);
  const registry = new Registry(dir);
  return [...registry.scan(undefined).values()].map(toPeer);
}

/** Reading the registry: node files, liveness, and removing the dead. */
class Registry {
  readonly dir: string;
  readonly nodes: string;
  constructor(dir: string) {
    this.dir = dir;
    this.nodes = `${dir}/nodes`;
  }

  /** Reads one node's info file; undefined when missing or invalid. */
  read(id: string): Info | undefined {
    let fd: number;
    try {
      fd = openFd(`${this.nodes}/${id}.json`, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
    } catch {
      return undefined;
    }
    try {
      const st = fstat(fd);
      if (st.kind !== "file" || st.size > MAX_INFO) return undefined;
      const bytes = readAllFd(fd, st.size, MAX_INFO);
      return bytes === undefined ? undefined : parseInfo(bytes, id);
    } catch {
      return undefined;
    } finally {
      closeFd(fd);
    }
  }

  /**
   * Whether node `id` holds its lock. When it does not, its files are removed (the lock is
   * held meanwhile, so the check and the removal are one step for every other checker).
   */
  alive(id: string): boolean {
    let fd: number;
    try {
      // Read-only: closing it is IN_CLOSE_NOWRITE, which no node watches.
      fd = openFd(`${this.nodes}/${id}.lock`, O.RDONLY | O.NOFOLLOW | O.NONBLOCK);
    } catch (err) {
      if (isGone(err)) {
        this.reap(id);
        return false;
      }
      return true; // cannot tell: never remove on a guess
    }
    try {
      if (!tryLockFd(fd)) return true;
      this.reap(id);
      return false;
    } catch {
      return true;
    } finally {
      closeFd(fd);
    }
  }

  /** Removes a dead node's files: its info first (others see it leave), then the rest. */
  reap(id: string): void {
    unlinkQuiet(`${this.nodes}/${id}.json`);
    unlinkQuiet(`${this.dir}/inbox/${id}`, true);
    unlinkQuiet(`${this.nodes}/${id}.lock`);
  }

  /** Every live node but `self`, removing the dead ones found. */
  scan(self: string | undefined): Map<string, Info> {
    const out = new Map<string, Info>();
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.nodes)];
    } catch (err) {
      throw fromFsError(err, "Cannot read the registry", this.nodes);
    }
    const names = new Set(entries.map((e) => e.name));
    for (const e of entries) {
      const m = e.name.match(/^(.+)\.(json|lock)$/);
      if (!m || !UUID.test(m[1]!) || m[1] === self) continue;
      const id = m[1]!;
      if (m[2] === "lock") {
        // A lock without an info file: a node that died while joining (or is joining now).
        if (!names.has(`${id}.json`)) this.#staleLock(id);
        continue;
      }
      const info = this.read(id);
      if (info && this.alive(id)) out.set(id, info);
    }
    return out;
  }

  #staleLock(id: string): void {
    try {
      const st = Deno.lstatSync(`${this.nodes}/${id}.lock`);
      if ((st.mtime?.getTime() ?? Date.now()) > Date.now() - 10_000) return;
    } catch {
      return;
    }
    this.alive(id);
  }
}

/**
 * The carrier of a network on one machine.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LocalCarrier } from "./local.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const carrier = new LocalCarrier({ root, network: "default", maxSize: 1 << 20 });
 * assert.equal(carrier.mode, "local");
 * assert.equal(carrier.where, `${root}/default`);
 * assert.equal(carrier.maxSize, 1 << 20);
 * await carrier.close();
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export class LocalCarrier implements Carrier {
  /** Always "local". */
  readonly mode = "local" as const;
  /** The largest payload, in bytes. */
  readonly maxSize: number;
  /** The network's directory. */
  readonly where: string;
  readonly #network: string;
  readonly #root: string;
  readonly #registry: Registry;
  readonly #peers = new Map<string, Info>();
  readonly #publishers = new Map<string, Publisher>();
  #self: Info | undefined;
  #events: CarrierEvents | undefined;
  #lockFd = -1;
  #inbox: BusSubscription | undefined;
  #pump: Promise<void> | undefined;
  #ino: Inotify | undefined;
  #watch: Promise<void> | undefined;
  #closed = false;

  /**
   * Makes the carrier; nothing happens until {@linkcode LocalCarrier.start}.
   *
   * @param options Root, network, size limit.
   */
  constructor(options: LocalOptions) {
    this.#root = options.root.replace(/(.)\/+$/, "$1");
    this.#network = options.network;
    this.maxSize = options.maxSize;
    this.where = `${this.#root}/${options.network}`;
    this.#registry = new Registry(this.where);
  }

  /**
   * Registers the node: its inbox and lock first, then (under the network's lock) its name,
   * which must be free among the live nodes.
   *
   * @param self The node.
   * @param events Where to report messages and presence.
   */
  async start(self: SelfInfo, events: CarrierEvents): Promise<void> {
    if (!ffiAvailable()) {
      throw new FsbusError(
        "unsupported",
        `Cannot join network "${this.#network}": a local network needs --allow-ffi (flock, inotify)`,
      );
    }
    this.#events = events;
    const dir = this.where;
    ensureDir(this.#root, "the messagefs root", false);
    ensureDir(dir, "the network directory", true);
    ensureDir(`${dir}/nodes`, "the registry", true);
    ensureDir(`${dir}/inbox`, "the inbox directory", true);
    const id = self.id;
    this.#self = {
      v: 1,
      id,
      name: self.name,
      groups: self.groups,
      pid: Deno.pid,
      host: Deno.hostname(),
      since: Date.now(),
    };
    try {
      Deno.mkdirSync(`${dir}/inbox/${id}`, { mode: 0o700 });
      this.#lockFd = openFd(
        `${dir}/nodes/${id}.lock`,
        O.RDWR | O.CREAT | O.EXCL | O.NOFOLLOW,
        0o600,
      );
      if (!tryLockFd(this.#lockFd)) throw new Error("lock taken");
    } catch (err) {
      await this.close();
      throw fromFsError(err, "Cannot join network", this.#network);
    }
    // Receive before anyone can know the inbox: files that come early wait there.
    this.#inbox = subscribe(`${dir}/inbox/${id}`, {
      since: "all",
      maxSize: this.maxSize + MAX_HEADER + 8,
    });
    this.#pump = this.#receive(this.#inbox);
    this.#ino = new Inotify();
    this.#ino.add(
      `${dir}/nodes`,
      IN.MOVED_TO | IN.DELETE | IN.CLOSE_WRITE | IN.ONLYDIR | IN.DONT_FOLLOW,
    );
    const lock = FileLock.open(`${dir}/.lock`);
    try {
      await lock.lock();
      for (const [pid, info] of this.#registry.scan(id)) this.#peers.set(pid, info);
      for (const p of this.#peers.values()) {
        if (p.name === self.name) {
          throw new FsbusError(
            "already_exists",
            `Cannot join network "${this.#network}" as "${self.name}": the name is taken ` +
              `by node ${p.id.slice(0, 8)} (pid ${p.pid})`,
          );
        }
      }
      this.#writeInfo();
    } catch (err) {
      lock.close();
      await this.close();
      throw err;
    }
    lock.close();
    this.#watch = this.#watchRegistry(this.#ino);
  }

  #writeInfo(): void {
    const info = this.#self!;
    const path = `${this.where}/nodes/${info.id}.json`;
    const tmp = `${this.where}/nodes/.${info.id}.json.tmp`;
    try {
      Deno.writeTextFileSync(tmp, JSON.stringify(info) + "\n", { mode: 0o600 });
      Deno.renameSync(tmp, path);
    } catch (err) {
      unlinkQuiet(tmp);
      throw fromFsError(err, "Cannot register in", this.where);
    }
  }

  #read: string[] = [];
  #unlinkTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Removes read messages from the inbox in batches: each removal is an inotify event for the
   * inbox's own watch, and one wake-up per batch costs less than one per message.
   */
  #consumed(path: string): void {
    this.#read.push(path);
    this.#unlinkTimer ??= setTimeout(() => this.#unlinkRead(), 20);
  }

  #unlinkRead(): void {
    clearTimeout(this.#unlinkTimer);
    this.#unlinkTimer = undefined;
    const paths = this.#read;
    this.#read = [];
    for (const p of paths) unlinkQuiet(p);
  }

  async #receive(sub: BusSubscription): Promise<void> {
    try {
      for await (const m of sub) {
        this.#consumed(m.path);
        const env = decode(m.data);
        if (env && !this.#closed) this.#events!.message(env.header, env.data);
      }
    } catch (err) {
      if (!this.#closed) this.#events?.notice(`Inbox failed: ${(err as Error).message}`);
    }
  }

  async #watchRegistry(ino: Inotify): Promise<void> {
    while (!this.#closed) {
      await ino.wait();
      if (this.#closed) return;
      let events;
      try {
        events = ino.read();
      } catch {
        return;
      }
      let rescan = false;
      const load = new Set<string>();
      const check = new Set<string>();
      for (const e of events) {
        if (e.mask & IN.Q_OVERFLOW) rescan = true;
        const m = e.name.match(/^(.+)\.(json|lock)$/);
        if (!m || !UUID.test(m[1]!) || m[1] === this.#self!.id) continue;
        if (m[2] === "json") load.add(m[1]!);
        else check.add(m[1]!);
      }
      if (rescan) this.#rescan();
      else {
        for (const id of load) this.#load(id);
        for (const id of check) if (!load.has(id)) this.#load(id);
      }
    }
  }

  /** Looks again at one node: its info file and its lock. */
  #load(id: string): void {
    const info = this.#registry.read(id);
    if (info === undefined || !this.#registry.alive(id)) return this.#gone(id);
    this.#seen(info);
  }

  #seen(info: Info): void {
    const old = this.#peers.get(info.id);
    this.#peers.set(info.id, info);
    if (old === undefined) this.#events!.presence({ kind: "join", peer: toPeer(info) });
    else if (old.groups.join("\n") !== info.groups.join("\n")) {
      this.#events!.presence({ kind: "update", peer: toPeer(info) });
    }
  }

  #gone(id: string): void {
    const old = this.#peers.get(id);
    this.#publishers.delete(id);
    if (old === undefined) return;
    this.#peers.delete(id);
    this.#events!.presence({ kind: "leave", peer: toPeer(old) });
  }

  #rescan(): void {
    const now = this.#registry.scan(this.#self!.id);
    for (const id of [...this.#peers.keys()]) if (!now.has(id)) this.#gone(id);
    for (const info of now.values()) this.#seen(info);
  }

  /** The live peers. */
  peers(): Peer[] {
    return [...this.#peers.values()].map((i) => this.#peerOf(i));
  }

  /**
   * Finds a peer by name, reading the registry again when it is not known (it may have
   * joined a moment ago).
   *
   * @param name The peer's name.
   * @returns The peer, or undefined.
   */
  find(name: string): Promise<Peer | undefined> {
    if (!this.#closed) this.#rescan();
    return Promise.resolve(this.lookup(name));
  }

  /**
   * Finds a peer by name among those known now.
   *
   * @param name The peer's name.
   * @returns The peer, or undefined.
   */
  lookup(name: string): Peer | undefined {
    for (const p of this.#peers.values()) if (p.name === name) return this.#peerOf(p);
    return undefined;
  }

  readonly #peerCache = new WeakMap<Info, Peer>();
  #peerOf(info: Info): Peer {
    let p = this.#peerCache.get(info);
    if (p === undefined) this.#peerCache.set(info, p = toPeer(info));
    return p;
  }

  #deliver(peer: Peer, bytes: Uint8Array): void {
    let pub = this.#publishers.get(peer.id);
    try {
      if (pub === undefined) {
        pub = new Publisher(`${this.where}/inbox/${peer.id}`, { sweep: false });
        this.#publishers.set(peer.id, pub);
      }
      pub.publish(bytes);
    } catch (err) {
      if (err instanceof FsbusError && err.code === "not_found") {
        this.#load(peer.id);
        throw new FsbusError(
          "not_found",
          `Cannot send to "${peer.name}": the node left network "${this.#network}"`,
        );
      }
      throw err;
    }
  }

  /**
   * Writes a direct message into the peer's inbox.
   *
   * @param peer The recipient.
   * @param header The envelope's header.
   * @param data The payload.
   */
  send(peer: Peer, header: Header, data: Uint8Array): Promise<void> {
    try {
      this.#deliver(peer, encode(header, data));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Writes a broadcast into each recipient's inbox. A recipient that left meanwhile is
   * skipped.
   *
   * @param _group The group.
   * @param recipients The peers it reaches.
   * @param header The envelope's header.
   * @param data The payload.
   */
  broadcast(_group: string, recipients: Peer[], header: Header, data: Uint8Array): Promise<void> {
    const bytes = encode(header, data);
    try {
      for (const p of recipients) {
        try {
          this.#deliver(p, bytes);
        } catch (err) {
          if (!(err instanceof FsbusError && err.code === "not_found")) throw err;
        }
      }
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Rewrites this node's info file with its new groups.
   *
   * @param groups The groups.
   */
  setGroups(groups: string[]): Promise<void> {
    this.#self!.groups = groups;
    try {
      this.#writeInfo();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Nothing to wait for: a send returns once the message is in the recipient's inbox. */
  flush(_timeoutMs: number): Promise<void> {
    return Promise.resolve();
  }

  /** Leaves: removes the info file (others see the node go), the inbox, then the lock. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const self = this.#self;
    if (self) unlinkQuiet(`${this.where}/nodes/${self.id}.json`);
    this.#ino?.wake();
    await this.#inbox?.close();
    await this.#pump;
    this.#unlinkRead();
    await this.#watch;
    await this.#ino?.close();
    if (self) {
      unlinkQuiet(`${this.where}/inbox/${self.id}`, true);
      if (this.#lockFd >= 0) unlinkQuiet(`${this.where}/nodes/${self.id}.lock`);
    }
    if (this.#lockFd >= 0) closeFd(this.#lockFd);
    this.#lockFd = -1;
  }
}
