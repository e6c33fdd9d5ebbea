/**
 * mq(4) as a mounted file tree: the groups under a directory, served through FUSE so that
 * unmodified programs use them as on Plan 9. `cat grp/1` blocks and prints every message as
 * it is written; `echo hi > grp/0` is one message; `echo replay all > grp/ctl` changes the
 * group; `mkdir grp2` makes a group with its `ctl` and `order`.
 *
 * The tree is the same on-disk engine as the rest of this module, so writes through the
 * mount, through {@linkcode MqGroup.write} on the directory and plain appends there all land
 * in one order, and history survives a remount.
 *
 * Through the mount:
 * - each write(2) to a stream is one message (up to 1 MiB: larger writes reach the server in
 *   1 MiB parts, each a message);
 * - a stream opened for reading starts where the group's replay mode says (per open); in
 *   message mode each read(2) returns one message (a message longer than the read continues
 *   in the next reads), in coalesce mode as many bytes as are there; with nothing there a
 *   read blocks until the next write (Ctrl-C ends it at once);
 * - end of file comes from a zero-length message: written by `fsbus mq write` from empty
 *   input, or through the mount by opening a stream with truncation and closing it (the last
 *   descriptor) without writing: `: > grp/0` (Linux never passes a zero-length write(2) to a
 *   file system); or from the stream's removal (`rm grp/0`);
 * - `select(2)`, `poll(2)` and epoll on a stream or `order` wait until a read would return
 *   (a message, end of file or an error);
 * - `order` reads as the name of each written stream and a NUL, blocking likewise;
 * - `ctl` reads as the group's settings and takes mq's commands; a bad command fails with
 *   EINVAL (its usage message goes to the server's log);
 * - creating a file makes a stream, `mkdir` makes a group, `rmdir` removes a group that has
 *   no streams, `rm` removes a stream.
 *
 * Names starting with "." (the engine's `.mq`) are not shown.
 *
 * @module
 */

import { FsbusError, OverrunError } from "../../types.ts";
import { IN, Inotify } from "../../sys/inotify.ts";
import { statPath } from "../../sys/fs.ts";
import type { FdStat } from "../../sys/fs.ts";
import {
  type Deferred,
  type FileSystem,
  type FuseAttr,
  type FuseContext,
  type FuseDirEntry,
  type FuseEntry,
  FuseError,
  type FuseOpened,
  type FuseServer,
  type Maybe,
  mount,
  mountTable,
} from "../../sys/fuse/mod.ts";
import { renderCtl } from "./_ctl.ts";
import { checkStreamName, MqGroup } from "./group.ts";
import { MqReader } from "./reader.ts";

/** The mount type's suffix: mounts show as `fuse.fsbus-mq`, their source the directory. */
export const MQ_SUBTYPE = "fsbus-mq";

const E = {
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

const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLHUP = 0x10;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_TRUNC = 0o1000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const DIR_MASK = IN.CLOSE_WRITE | IN.CREATE | IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO |
  IN.DELETE_SELF | IN.MOVE_SELF | IN.ONLYDIR;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

type Kind = "dir" | "group" | "ctl" | "order" | "stream";

interface Node {
  id: number;
  rel: string;
  kind: Kind;
  /** Lookups the kernel holds (FORGET gives them back; at 0 the node is dropped). */
  lookups: number;
}

interface GroupState {
  rel: string;
  g: MqGroup;
  wds: number[];
  files: Set<OpenFile>;
}

interface Waiting {
  d: Deferred<Uint8Array>;
  size: number;
}

interface OpenFile {
  fh: number;
  kind: Kind;
  group: GroupState;
  name: string;
  reader: MqReader | undefined;
  queue: Uint8Array[];
  coalesce: boolean;
  waiting: Waiting[];
  trunc: boolean;
  wrote: boolean;
  failed: string | undefined;
  /** A poll(2) waiting for this file to become readable. */
  pollWake: (() => void) | undefined;
}

/** Options for {@linkcode mountGroups}. */
export interface MqMountOptions {
  /** Lines for the server's log: rejected ctl commands, unexpected errors. */
  onLog?: (line: string) => void;
  /** Block the serving thread in poll(2) up to this many ms between event-loop turns
   * (fastest; default 0: wait on a worker thread). */
  blockMs?: number;
  /** Unmount on SIGINT and SIGTERM. */
  handleSignals?: boolean;
}

function join(a: string, b: string): string {
  return a === "" ? b : `${a}/${b}`;
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf("/") + 1);
}

function errnoOf(err: unknown): number {
  if (err instanceof FuseError) return err.errno;
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
 * The file system of an mq tree (see the module doc); {@linkcode mountGroups} mounts it.
 *
 * @example
 * ```ts ignore
 * import { MqTree } from "./mount.ts";
 * import { mount } from "../../sys/fuse/mod.ts";
 * const tree = new MqTree("/dev/shm/mq");
 * const server = await mount("/mnt/mq", tree, { subtype: "fsbus-mq" });
 * tree.attach(server);
 * ```
 */
export class MqTree implements FileSystem {
  /** The directory served. */
  readonly dir: string;
  readonly #log: (line: string) => void;
  readonly #nodes = new Map<number, Node>();
  readonly #byRel = new Map<string, Node>();
  readonly #groups = new Map<string, GroupState>();
  readonly #files = new Map<number, OpenFile>();
  readonly #ino = new Inotify();
  readonly #wdGroup = new Map<number, GroupState>();
  #nextNode = 2;
  #nextFh = 1;
  #unwatch: (() => void) | undefined;
  #unidle: (() => void) | undefined;
  /** Writes through the mount queued index events not yet taken. */
  #eventsDue = false;
  #down = false;

  /**
   * Makes the tree of a directory.
   *
   * @param dir The directory holding groups (or a group itself).
   * @param onLog Where log lines go.
   */
  constructor(dir: string, onLog: (line: string) => void = () => {}) {
    this.dir = dir;
    this.#log = onLog;
    const root: Node = { id: 1, rel: "", kind: "dir", lookups: 1 };
    if (this.#isGroupDir("")) root.kind = "group";
    this.#nodes.set(1, root);
    this.#byRel.set("", root);
  }

  /**
   * Joins the server's wait, so changes made on the directory by other programs answer
   * parked reads.
   *
   * @param server The server serving this tree.
   */
  attach(server: FuseServer): void {
    this.#unwatch = server.watch(this.#ino.fd, () => this.#onEvents());
    // The index events of this server's own writes are taken once per burst of requests,
    // before the server waits (so it is not woken for them).
    this.#unidle = server.idle(() => {
      if (!this.#eventsDue) return;
      this.#eventsDue = false;
      this.#onEvents();
    });
  }

  #path(rel: string): string {
    return rel === "" ? this.dir : `${this.dir}/${rel}`;
  }

  #stat(rel: string): FdStat | undefined {
    try {
      return statPath(this.#path(rel));
    } catch {
      return undefined;
    }
  }

  #isGroupDir(rel: string): boolean {
    return this.#stat(join(rel, "ctl"))?.kind === "file";
  }

  #node(rel: string, kind: Kind): Node {
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

  #get(id: number): Node {
    const n = this.#nodes.get(id);
    if (n === undefined) throw new FuseError(E.ENOENT, `unknown node ${id}`);
    return n;
  }

  #group(rel: string): GroupState {
    let gs = this.#groups.get(rel);
    if (gs !== undefined) return gs;
    const g = MqGroup.open(this.#path(rel));
    const wds: number[] = [];
    gs = { rel, g, wds, files: new Set() };
    try {
      wds.push(this.#ino.add(g.path, DIR_MASK));
      wds.push(this.#ino.add(`${g.path}/.mq/index`, IN.MODIFY));
    } catch (err) {
      g.close();
      throw err;
    }
    for (const wd of wds) this.#wdGroup.set(wd, gs);
    this.#groups.set(rel, gs);
    return gs;
  }

  #dropGroup(rel: string): void {
    const gs = this.#groups.get(rel);
    if (gs === undefined) return;
    for (const wd of gs.wds) {
      this.#ino.remove(wd);
      this.#wdGroup.delete(wd);
    }
    for (const f of gs.files) this.#finish(f);
    gs.g.close();
    this.#groups.delete(rel);
  }

  /** What a group's directory (or a stream's group) is, for a node inside it. */
  #groupOf(n: Node): GroupState {
    const rel = n.kind === "group" ? n.rel : parentOf(n.rel);
    return this.#group(rel);
  }

  #classify(parent: Node, name: string): Node {
    if (name.startsWith(".") || name.includes("/")) throw new FuseError(E.ENOENT);
    const rel = join(parent.rel, name);
    const inGroup = parent.kind === "group";
    if (inGroup && (name === "ctl" || name === "order")) {
      return this.#node(rel, name);
    }
    const st = this.#stat(rel);
    if (st === undefined) throw new FuseError(E.ENOENT);
    if (st.kind === "directory") return this.#node(rel, this.#isGroupDir(rel) ? "group" : "dir");
    if (st.kind === "file" && inGroup) return this.#node(rel, "stream");
    throw new FuseError(E.ENOENT);
  }

  #attr(n: Node): FuseAttr {
    const backing = this.#stat(n.rel);
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
      case "ctl": {
        const size = encoder.encode(renderCtl(this.#groupOf(n).g.settings)).length;
        return { ...base, mode: S_IFREG | (backing.mode & 0o666), size };
      }
      case "order":
        return { ...base, mode: S_IFREG | (backing.mode & 0o444) };
      case "stream":
        if (backing.kind !== "file") throw new FuseError(E.ENOENT);
        return { ...base, mode: S_IFREG | (backing.mode & 0o777) };
    }
  }

  #entry(n: Node): FuseEntry {
    return { node: n.id, attr: this.#attr(n) };
  }

  /** An entry given to the kernel: one more lookup it holds until it forgets it. */
  #ref(n: Node): FuseEntry {
    const e = this.#entry(n);
    n.lookups++;
    return e;
  }

  /** How many nodes the tree holds (the root, and those the kernel has not forgotten). */
  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** {@inheritDoc FileSystem.forget} */
  forget(node: number, nlookup: number): void {
    const n = this.#nodes.get(node);
    if (n === undefined || n.id === 1) return;
    n.lookups -= nlookup;
    if (n.lookups > 0) return;
    this.#nodes.delete(n.id);
    if (this.#byRel.get(n.rel) === n) this.#byRel.delete(n.rel);
  }

  /** {@inheritDoc FileSystem.lookup} */
  lookup(parent: number, name: string): FuseEntry {
    const p = this.#get(parent);
    if (p.kind !== "dir" && p.kind !== "group") throw new FuseError(E.ENOTDIR);
    return this.#ref(this.#classify(p, name));
  }

  /** {@inheritDoc FileSystem.getattr} */
  getattr(node: number): FuseAttr {
    return this.#attr(this.#get(node));
  }

  /** {@inheritDoc FileSystem.setattr} */
  setattr(node: number): FuseAttr {
    // Truncation (`> file`) and times: nothing to change on a message stream.
    return this.#attr(this.#get(node));
  }

  /** {@inheritDoc FileSystem.readdir} */
  readdir(node: number): FuseDirEntry[] {
    const n = this.#get(node);
    if (n.kind !== "dir" && n.kind !== "group") throw new FuseError(E.ENOTDIR);
    const out: FuseDirEntry[] = [];
    const group = n.kind === "group";
    // Inode numbers are the files' own (as getattr gives): listing makes no nodes, which
    // the kernel would never forget.
    const ino = (rel: string) => Number(this.#stat(rel)?.ino ?? 0n);
    if (group) {
      out.push({ name: "ctl", ino: ino(join(n.rel, "ctl")), mode: S_IFREG });
      out.push({ name: "order", ino: ino(join(n.rel, "order")), mode: S_IFREG });
    }
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.#path(n.rel))];
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

  #openFile(n: Node, flags: number): OpenFile {
    const gs = this.#groupOf(n);
    const name = baseOf(n.rel);
    const forRead = (flags & O_ACCMODE) !== O_WRONLY;
    let reader: MqReader | undefined;
    let coalesce = false;
    if (forRead && (n.kind === "stream" || n.kind === "order")) {
      const settings = gs.g.settings;
      coalesce = settings.data === "coalesce";
      reader = MqReader.open(gs.g, [n.kind === "order" ? "order" : name], { watch: false });
    }
    const f: OpenFile = {
      fh: this.#nextFh++,
      kind: n.kind,
      group: gs,
      name,
      reader,
      queue: [],
      coalesce,
      waiting: [],
      trunc: (flags & O_TRUNC) !== 0,
      wrote: false,
      failed: undefined,
      pollWake: undefined,
    };
    this.#files.set(f.fh, f);
    gs.files.add(f);
    return f;
  }

  /** {@inheritDoc FileSystem.open} */
  open(node: number, flags: number): FuseOpened {
    if (this.#down) throw new FuseError(E.EIO, "unmounting");
    const n = this.#get(node);
    if (n.kind === "dir" || n.kind === "group") throw new FuseError(E.EISDIR);
    if (n.kind === "order" && (flags & O_ACCMODE) !== 0) throw new FuseError(E.EACCES);
    if (n.kind === "stream" && this.#stat(n.rel)?.kind !== "file") throw new FuseError(E.ENOENT);
    try {
      const f = this.#openFile(n, flags);
      // Direct I/O: each read(2) and write(2) reaches the server as it is. Seeking stays
      // allowed (and meaningless) so that `head` and `tail` can put back what they over-read.
      return { fh: f.fh, directIo: true };
    } catch (err) {
      throw new FuseError(errnoOf(err), String(err));
    }
  }

  /** {@inheritDoc FileSystem.create} */
  create(parent: number, name: string, _mode: number, flags: number): FuseEntry & FuseOpened {
    const p = this.#get(parent);
    if (p.kind !== "group") throw new FuseError(E.EPERM, "files can only be made in a group");
    try {
      const gs = this.#group(p.rel);
      checkStreamName(gs.g.path, name, true);
      gs.g.createStream(name);
    } catch (err) {
      if (err instanceof FsbusError) this.#log(err.message);
      throw new FuseError(errnoOf(err));
    }
    const n = this.#node(join(p.rel, name), "stream");
    const f = this.#openFile(n, flags);
    return { ...this.#ref(n), fh: f.fh, directIo: true };
  }

  /** Takes the messages that came for an open file, if it has none queued. */
  #fill(f: OpenFile): void {
    if (f.queue.length === 0 && f.reader !== undefined && f.failed === undefined) {
      try {
        for (const m of f.reader.poll()) if (m.data.length > 0) f.queue.push(m.data);
      } catch (err) {
        if (!(err instanceof OverrunError)) throw err;
        f.failed = err.message;
        this.#log(err.message);
      }
    }
  }

  /** Whether a read(2) of an open file would return now (data, end of file or an error). */
  #readable(f: OpenFile): boolean {
    if (f.kind === "ctl") return true;
    this.#fill(f);
    return f.queue.length > 0 || f.failed !== undefined || f.reader === undefined ||
      f.reader.done;
  }

  #take(f: OpenFile, size: number): Uint8Array | undefined {
    this.#fill(f);
    if (f.queue.length === 0) {
      if (f.failed !== undefined) throw new FuseError(E.EIO, f.failed);
      return f.reader === undefined || f.reader.done ? EMPTY : undefined;
    }
    if (!f.coalesce) {
      const head = f.queue[0]!;
      if (head.length <= size) {
        f.queue.shift();
        return head;
      }
      f.queue[0] = head.subarray(size);
      return head.subarray(0, size);
    }
    const out = new Uint8Array(size);
    let len = 0;
    while (len < size && f.queue.length > 0) {
      const head = f.queue[0]!;
      const n = Math.min(head.length, size - len);
      out.set(head.subarray(0, n), len);
      len += n;
      if (n === head.length) f.queue.shift();
      else f.queue[0] = head.subarray(n);
    }
    return out.subarray(0, len);
  }

  /** {@inheritDoc FileSystem.read} */
  read(node: number, fh: number, offset: number, size: number, ctx: FuseContext): Maybe<
    Uint8Array
  > {
    const f = this.#files.get(fh);
    if (f === undefined) {
      if (this.#down) return EMPTY; // unmounting: readers get end of file
      throw new FuseError(E.EBADF);
    }
    if (f.kind === "ctl") {
      const text = encoder.encode(renderCtl(f.group.g.settings));
      return text.subarray(offset, offset + size);
    }
    void node;
    const got = this.#take(f, size);
    if (got !== undefined) return got;
    const d = ctx.defer<Uint8Array>();
    const w: Waiting = { d, size };
    f.waiting.push(w);
    d.onInterrupt = () => {
      const i = f.waiting.indexOf(w);
      if (i >= 0) f.waiting.splice(i, 1);
    };
    return d;
  }

  /** Answers the parked reads of a file that can be answered now. */
  #serve(f: OpenFile): void {
    while (f.waiting.length > 0) {
      const w = f.waiting[0]!;
      let got: Uint8Array | undefined;
      try {
        got = this.#take(f, w.size);
      } catch (err) {
        f.waiting.shift();
        w.d.reject(errnoOf(err));
        continue;
      }
      if (got === undefined) return;
      f.waiting.shift();
      w.d.resolve(got);
    }
  }

  #serveGroup(gs: GroupState): void {
    for (const f of gs.files) {
      if (f.waiting.length > 0) this.#serve(f);
      if (f.pollWake !== undefined && this.#readable(f)) this.#wakePoll(f);
    }
  }

  #wakePoll(f: OpenFile): void {
    const wake = f.pollWake;
    f.pollWake = undefined;
    wake?.();
  }

  /** {@inheritDoc FileSystem.poll} */
  poll(_node: number, fh: number, events: number, wake: (() => void) | undefined): number {
    const f = this.#files.get(fh);
    if (f === undefined) return POLLIN | POLLHUP;
    let revents = POLLOUT | POLLWRNORM;
    if (this.#readable(f)) revents |= POLLIN | POLLRDNORM;
    else if (wake !== undefined && (events & (POLLIN | POLLRDNORM))) f.pollWake = wake;
    return revents;
  }

  /** {@inheritDoc FileSystem.write} */
  write(node: number, fh: number, _offset: number, data: Uint8Array): number {
    const f = this.#files.get(fh);
    if (f === undefined) throw new FuseError(E.EBADF);
    void node;
    const g = f.group.g;
    if (f.kind === "order") throw new FuseError(E.EACCES);
    if (f.kind === "ctl") {
      try {
        g.ctl(new TextDecoder().decode(data));
      } catch (err) {
        this.#log(`Rejected a write to "${g.path}/ctl": ${(err as Error).message}`);
        throw new FuseError(errnoOf(err));
      }
      return data.length;
    }
    try {
      g.write(f.name, data);
    } catch (err) {
      this.#log(`Cannot write to "${g.path}/${f.name}": ${(err as Error).message}`);
      throw new FuseError(errnoOf(err));
    }
    f.wrote = true;
    this.#serveGroup(f.group); // answer readers now
    this.#eventsDue = true;
    return data.length;
  }

  /** Opened with truncation and closed without a write (`: > stream`): a zero-length
   * message, end of file for the stream's readers. */
  #endOfFile(f: OpenFile): void {
    if (f.kind !== "stream" || !f.trunc || f.wrote) return;
    f.wrote = true;
    try {
      f.group.g.write(f.name, EMPTY);
    } catch (err) {
      this.#log(`Cannot write to "${f.group.g.path}/${f.name}": ${(err as Error).message}`);
      return;
    }
    this.#serveGroup(f.group);
  }

  #finish(f: OpenFile): void {
    for (const w of f.waiting.splice(0)) w.d.resolve(EMPTY);
    this.#wakePoll(f);
    void f.reader?.close();
    f.reader = undefined;
    this.#files.delete(f.fh);
    f.group.files.delete(f);
  }

  /** {@inheritDoc FileSystem.release} */
  release(_node: number, fh: number): void {
    const f = this.#files.get(fh);
    if (f === undefined) return;
    this.#endOfFile(f);
    this.#finish(f);
  }

  /** {@inheritDoc FileSystem.mkdir} */
  mkdir(parent: number, name: string, _mode: number): FuseEntry {
    const p = this.#get(parent);
    if (p.kind !== "dir" && p.kind !== "group") throw new FuseError(E.ENOTDIR);
    if (name.startsWith(".")) throw new FuseError(E.EINVAL);
    const rel = join(p.rel, name);
    if (this.#stat(rel) !== undefined) throw new FuseError(E.EEXIST);
    try {
      MqGroup.create(this.#path(rel)).close();
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    return this.#ref(this.#node(rel, "group"));
  }

  /** {@inheritDoc FileSystem.unlink} */
  unlink(parent: number, name: string): void {
    const p = this.#get(parent);
    const n = this.#classify(p, name);
    if (n.kind === "ctl" || n.kind === "order") throw new FuseError(E.EPERM);
    if (n.kind !== "stream") throw new FuseError(E.EISDIR);
    const gs = this.#group(p.rel);
    try {
      gs.g.remove(name);
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    this.#forgetRel(n.rel);
    this.#serveGroup(gs);
  }

  /** {@inheritDoc FileSystem.rmdir} */
  rmdir(parent: number, name: string): void {
    const p = this.#get(parent);
    const n = this.#classify(p, name);
    if (n.kind !== "dir" && n.kind !== "group") throw new FuseError(E.ENOTDIR);
    const path = this.#path(n.rel);
    let entries: string[];
    try {
      entries = [...Deno.readDirSync(path)].map((e) => e.name);
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    const own = n.kind === "group" ? ["ctl", "order", ".mq"] : [];
    if (entries.some((e) => !own.includes(e))) throw new FuseError(E.ENOTEMPTY);
    this.#dropGroup(n.rel);
    try {
      for (const e of own) Deno.removeSync(`${path}/${e}`, { recursive: e === ".mq" });
      Deno.removeSync(path);
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    this.#forgetRel(n.rel);
  }

  #forgetRel(rel: string): void {
    const n = this.#byRel.get(rel);
    if (n !== undefined) this.#byRel.delete(rel);
  }

  /** {@inheritDoc FileSystem.statfs} */
  statfs(): { namelen: number } {
    return { namelen: 255 };
  }

  /** Changes seen on the directory: index foreign appends and removals, answer readers. */
  #onEvents(): void {
    const touched = new Set<GroupState>();
    const sync = new Set<GroupState>();
    for (const e of this.#ino.read()) {
      if (e.mask & IN.Q_OVERFLOW) {
        for (const gs of this.#groups.values()) sync.add(gs);
        continue;
      }
      const gs = this.#wdGroup.get(e.wd);
      if (gs === undefined) continue;
      touched.add(gs);
      if (e.wd === gs.wds[0] && e.name !== "" && e.name !== "order" && !e.name.startsWith(".")) {
        if (e.name === "ctl") continue;
        sync.add(gs);
      }
      if (e.mask & (IN.DELETE_SELF | IN.MOVE_SELF)) {
        for (const f of gs.files) {
          for (const w of f.waiting.splice(0)) w.d.resolve(EMPTY);
          this.#wakePoll(f);
        }
      }
    }
    for (const gs of sync) {
      try {
        gs.g.sync();
      } catch (err) {
        this.#log(`Cannot sync "${gs.g.path}": ${(err as Error).message}`);
      }
    }
    for (const gs of touched) this.#serveGroup(gs);
    for (const gs of sync) this.#serveGroup(gs);
  }

  /** {@inheritDoc FileSystem.shutdown} */
  shutdown(): void {
    this.#down = true;
    for (const f of [...this.#files.values()]) this.#finish(f);
    this.#unwatch?.();
    this.#unidle?.();
    for (const rel of [...this.#groups.keys()]) this.#dropGroup(rel);
    void this.#ino.close();
  }
}

/** A running mount of an mq tree. */
export interface MqMount {
  /** The directory served. */
  dir: string;
  /** The mount point (resolved). */
  mountpoint: string;
  /** Resolves when the mount is gone. */
  done: Promise<void>;
  /** Unmounts: blocked readers get end of file. */
  stop(): Promise<void>;
  /** How many nodes the server holds (the root and those the kernel still knows). */
  nodeCount(): number;
}

/**
 * Mounts the mq groups under `dir` on `mountpoint` and serves them from this process (which
 * must not itself use the mount).
 *
 * @param dir A directory holding groups, or a group.
 * @param mountpoint An empty directory outside `dir`.
 * @param options Logging, waiting, signals.
 * @returns The running mount.
 * @throws {FsbusError} When `dir` is missing, the mount point is unsuitable, or FUSE is
 *   unavailable (one line); nothing is mounted then.
 *
 * @example
 * ```ts ignore
 * import { mountGroups } from "./mount.ts";
 * const m = await mountGroups("/dev/shm/mq", "/mnt/mq", { handleSignals: true });
 * await m.done;
 * ```
 */
export async function mountGroups(
  dir: string,
  mountpoint: string,
  options: MqMountOptions = {},
): Promise<MqMount> {
  const st = statPath(dir);
  if (st === undefined) {
    throw new FsbusError("not_found", `Cannot serve "${dir}": no such directory`);
  }
  if (st.kind !== "directory") {
    throw new FsbusError("not_a_directory", `Cannot serve "${dir}": not a directory`);
  }
  const realDir = Deno.realPathSync(dir);
  let realMp: string;
  try {
    realMp = Deno.realPathSync(mountpoint);
  } catch {
    realMp = mountpoint;
  }
  if (
    realMp === realDir || realMp.startsWith(realDir + "/") || realDir.startsWith(realMp + "/")
  ) {
    throw new FsbusError(
      "invalid",
      `Cannot mount "${dir}" on "${mountpoint}": one is inside the other`,
    );
  }
  const log = options.onLog ?? (() => {});
  const tree = new MqTree(realDir, log);
  let server: FuseServer;
  try {
    server = await mount(mountpoint, tree, {
      fsname: realDir,
      subtype: MQ_SUBTYPE,
      onNotice: log,
      onError: (err, op) => log(`${op}: ${err instanceof Error ? err.message : String(err)}`),
      ...(options.blockMs !== undefined ? { blockMs: options.blockMs } : {}),
      ...(options.handleSignals !== undefined ? { handleSignals: options.handleSignals } : {}),
    });
  } catch (err) {
    tree.shutdown();
    throw err;
  }
  tree.attach(server);
  return {
    dir: realDir,
    mountpoint: server.connection.mountpoint,
    done: server.done,
    stop: () => server.stop(),
    nodeCount: () => tree.nodeCount,
  };
}

/**
 * Where a path inside a mounted mq tree lives on disk: for `fsbus pin -m MOUNTPOINT`, which
 * works on the directory behind the mount.
 *
 * @param path Any path.
 * @returns The same place in the served directory, or undefined when `path` is not inside
 *   an mq mount.
 *
 * @example
 * ```ts ignore
 * import { backingPath } from "./mount.ts";
 * backingPath("/mnt/mq/session"); // "/dev/shm/mq/session"
 * ```
 */
export function backingPath(path: string): string | undefined {
  let abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  abs = abs.replace(/\/+$/, "") || "/";
  let best: { mountpoint: string; source: string } | undefined;
  for (const m of mountTable()) {
    if (m.fstype !== `fuse.${MQ_SUBTYPE}`) continue;
    if (abs === m.mountpoint || abs.startsWith(m.mountpoint + "/")) {
      if (!best || m.mountpoint.length >= best.mountpoint.length) best = m;
    }
  }
  if (best === undefined) return undefined;
  return best.source + abs.slice(best.mountpoint.length);
}
