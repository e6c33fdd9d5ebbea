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

import { FsbusError } from "../../types.ts";
import { IN, Inotify } from "../../sys/inotify.ts";
import { statPath } from "../../sys/fs.ts";
import { monotonicMs } from "../../sys/clock.ts";
import {
  type FileSystem,
  type FuseAttr,
  type FuseContext,
  type FuseDirEntry,
  type FuseEntry,
  FuseError,
  type FuseOpened,
  type FuseServer,
  MAX_WRITE,
  type Maybe,
  mount,
  mountTable,
} from "../../sys/fuse/mod.ts";
import { loadNativeCrc32 } from "./_crc32.ts";
import { renderCtl } from "./_ctl.ts";
import {
  EMPTY,
  type GroupState,
  type OpenFile,
  readable,
  take,
  type Waiting,
} from "./_mount_files.ts";
import { baseOf, E, errnoOf, join, MqNodes, type Node, parentOf } from "./_mount_tree.ts";
import { checkStreamName, MqGroup } from "./group.ts";
import { MqReader } from "./reader.ts";

/** How long the server spins for the next request by default (µs; see MountOptions.spinUs). */
const SPIN_US = 50;

/** The mount type's suffix: mounts show as `fuse.fsbus-mq`, their source the directory. */
export const MQ_SUBTYPE = "fsbus-mq";

const POLLIN = 0x1;
const POLLOUT = 0x4;
const POLLHUP = 0x10;
const POLLRDNORM = 0x40;
const POLLWRNORM = 0x100;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_TRUNC = 0o1000;
const DIR_MASK = IN.CLOSE_WRITE | IN.CREATE | IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO |
  IN.DELETE_SELF | IN.MOVE_SELF | IN.ONLYDIR;
const encoder = new TextEncoder();
/** The most writes, and milliseconds, one burst keeps a group's lock (see MqGroup.holdLock). */
const HOLD_WRITES = 256;
const HOLD_MS = 1;

/** Options for {@linkcode mountGroups}. */
export interface MqMountOptions {
  /** Lines for the server's log: rejected ctl commands, unexpected errors. */
  onLog?: (line: string) => void;
  /** Block the serving thread in poll(2) up to this many ms between event-loop turns
   * (fastest; default 0: wait on a worker thread). */
  blockMs?: number;
  /**
   * Spin-then-block: while writes come fast, the server keeps polling without blocking for
   * up to this many microseconds after a request before it blocks, so it is awake when the
   * next one comes (see the FUSE server's `spinUs`). Costs CPU only while requests come
   * back to back; an idle mount sleeps. On a quiet 2-core machine 50 µs took one writer from
   * about 17k to 30k msgs/s, at less CPU per message (the writer's next request is caught
   * without a wake-up); 0 blocks at once.
   *
   * @default {50}
   */
  spinUs?: number;
  /** Unmount on SIGINT and SIGTERM. */
  handleSignals?: boolean;
  /**
   * Write-behind: answer a write(2) to a stream as soon as it is checked, and commit it right
   * after the reply, before the next request is read (same order, and readers still see a
   * message only once it is committed). Faster for a writer that writes one message after
   * another; a commit that fails is logged and returned by that open file's next write(2),
   * close(2) or fsync(2). Writes to `ctl`, and end of file, stay synchronous, and so does a
   * write while a reader through the mount waits for the group (it is answered first).
   *
   * @default {false}
   */
  writeBehind?: boolean;
}

/**
 * The file system of an mq tree (see the module doc); {@linkcode mountGroups} mounts it.
 *
 * @example Serve a tree with the FUSE server directly, and list it from another process
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup } from "./mod.ts";
 * import { MQ_SUBTYPE, MqTree } from "./mount.ts";
 * import { mount } from "../../sys/fuse/mod.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const mp = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * try {
 *   const g = mkgroup(`${dir}/chat`);
 *   g.createStream("0");
 *   g.close();
 *   const tree = new MqTree(dir);
 *   const server = await mount(mp, tree, { fsname: dir, subtype: MQ_SUBTYPE });
 *   tree.attach(server);
 *   try {
 *     // Only another process uses the mount (this one serves it).
 *     const ls = await new Deno.Command("ls", { args: [`${mp}/chat`] }).output();
 *     assert.equal(new TextDecoder().decode(ls.stdout), "0\nctl\norder\n");
 *   } finally {
 *     await server.stop(); // unmounts; the tree shuts down with it
 *   }
 * } finally {
 *   Deno.removeSync(dir, { recursive: true });
 *   Deno.removeSync(mp);
 * }
 * ```
 */
export class MqTree implements FileSystem {
  /** The directory served. */
  readonly dir: string;
  readonly #log: (line: string) => void;
  readonly #nodes: MqNodes;
  readonly #groups = new Map<string, GroupState>();
  readonly #files = new Map<number, OpenFile>();
  readonly #ino = new Inotify();
  readonly #wdGroup = new Map<number, GroupState>();
  #nextFh = 1;
  #unwatch: (() => void) | undefined;
  #unidle: (() => void) | undefined;
  /** Writes through the mount queued index events not yet taken. */
  #eventsDue = false;
  /** Groups whose lock this burst of requests holds, with the writes made and since when. */
  readonly #holding = new Map<GroupState, { writes: number; since: number; served: boolean }>();
  #down = false;
  /** Write-behind: the copy of the write acknowledged and not yet committed (see write). */
  readonly #behind: Uint8Array | undefined;
  /** The open file of that write, and its length. */
  #pending: OpenFile | undefined;
  #pendingLength = 0;

  /**
   * Makes the tree of a directory.
   *
   * @param dir The directory holding groups (or a group itself).
   * @param onLog Where log lines go.
   * @param writeBehind Answer writes to streams before committing them (see
   *   {@linkcode MqMountOptions.writeBehind}).
   */
  constructor(dir: string, onLog: (line: string) => void = () => {}, writeBehind = false) {
    this.dir = dir;
    this.#log = onLog;
    this.#nodes = new MqNodes(dir);
    this.#behind = writeBehind ? new Uint8Array(MAX_WRITE) : undefined;
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
      this.#takeOwnEvents();
      return this.#releaseLocks();
    });
  }

  #get(id: number): Node {
    return this.#nodes.get(id);
  }

  #group(rel: string): GroupState {
    let gs = this.#groups.get(rel);
    if (gs !== undefined) return gs;
    const g = MqGroup.open(this.#nodes.path(rel));
    const wds: number[] = [];
    gs = { rel, g, wds, dirty: true, lastWrite: -Infinity, writeGap: Infinity, files: new Set() };
    try {
      wds.push(this.#ino.add(g.path, DIR_MASK));
      wds.push(this.#ino.add(`${g.path}/.mq/index`, IN.MODIFY));
      // Only to know whether anything changed while the lock was not held (#holdLock).
      wds.push(this.#ino.add(`${g.path}/.mq/intent`, IN.MODIFY));
      wds.push(this.#ino.add(`${g.path}/ctl`, IN.MODIFY));
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
    this.#holding.delete(gs);
    gs.g.close();
    this.#groups.delete(rel);
  }

  /** What a group's directory (or a stream's group) is, for a node inside it. */
  #groupOf(n: Node): GroupState {
    const rel = n.kind === "group" ? n.rel : parentOf(n.rel);
    return this.#group(rel);
  }

  #attr(n: Node): FuseAttr {
    return this.#nodes.attr(
      n,
      () => encoder.encode(renderCtl(this.#groupOf(n).g.settings)).length,
    );
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
    this.#nodes.forget(node, nlookup);
  }

  /** {@inheritDoc FileSystem.lookup} */
  lookup(parent: number, name: string): FuseEntry {
    const p = this.#get(parent);
    if (p.kind !== "dir" && p.kind !== "group") throw new FuseError(E.ENOTDIR);
    return this.#ref(this.#nodes.classify(p, name));
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
    return this.#nodes.list(this.#get(node));
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
      lost: 0,
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
    if (n.kind === "stream" && this.#nodes.stat(n.rel)?.kind !== "file") {
      throw new FuseError(E.ENOENT);
    }
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
    const n = this.#nodes.node(join(p.rel, name), "stream");
    const f = this.#openFile(n, flags);
    return { ...this.#ref(n), fh: f.fh, directIo: true };
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
    const got = take(f, size, this.#log);
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
        got = take(f, w.size, this.#log);
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
      if (f.pollWake !== undefined && readable(f, this.#log)) this.#wakePoll(f);
    }
  }

  /** Whether a read(2) or poll(2) through the mount waits for a message of group `gs`. */
  #readersWait(gs: GroupState): boolean {
    for (const f of gs.files) if (f.waiting.length > 0 || f.pollWake !== undefined) return true;
    return false;
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
    if (readable(f, this.#log)) revents |= POLLIN | POLLRDNORM;
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
    this.#reportLost(f);
    const behind = this.#behind;
    if (behind !== undefined && !this.#readersWait(f.group)) {
      // Write-behind: acknowledged now, committed by afterReply once the reply is written
      // (the buffer holds the largest write the kernel passes on). Not while a reader of the
      // group waits: its answer would come after the writer's.
      behind.set(data);
      this.#pending = f;
      this.#pendingLength = data.length;
      return data.length;
    }
    this.#commit(f, data);
    return data.length;
  }

  /**
   * Commits a write acknowledged early (write-behind), right after its reply: by the same
   * engine calls as a synchronous write, before the server reads its next request. A
   * failure is logged and kept on the open file for its writer's next write, flush or fsync.
   */
  afterReply(): void {
    const f = this.#pending;
    if (f === undefined) return;
    this.#pending = undefined;
    try {
      this.#commit(f, this.#behind!.subarray(0, this.#pendingLength), true);
    } catch (err) {
      f.lost = err instanceof FuseError ? err.errno : E.EIO;
    }
  }

  /** Throws (once) the error of a write of `f` acknowledged early whose commit failed. */
  #reportLost(f: OpenFile): void {
    const e = f.lost;
    if (e === 0) return;
    f.lost = 0;
    throw new FuseError(e, `a write acknowledged early to "${f.group.g.path}/${f.name}" failed`);
  }

  /** {@inheritDoc FileSystem.flush} */
  flush(_node: number, fh: number): void {
    const f = this.#files.get(fh);
    if (f !== undefined) this.#reportLost(f);
  }

  /** {@inheritDoc FileSystem.fsync} */
  fsync(_node: number, fh: number): void {
    // Commits are written before the next request is read: only a failed one is left to say.
    const f = this.#files.get(fh);
    if (f !== undefined) this.#reportLost(f);
  }

  /** Writes a message through the engine and answers the stream's readers. */
  #commit(f: OpenFile, data: Uint8Array, acknowledged = false): void {
    const g = f.group.g;
    // Written to, even if the write fails: closing it is then no end of file (`: > stream`).
    f.wrote = true;
    try {
      this.#holdLock(f.group);
      g.write(f.name, data);
    } catch (err) {
      this.#boundLock(f.group);
      this.#log(
        `Cannot write to "${g.path}/${f.name}": ${(err as Error).message}` +
          (acknowledged ? " (acknowledged already: its writer's next write or close fails)" : ""),
      );
      throw new FuseError(errnoOf(err));
    }
    this.#serveGroup(f.group); // answer readers now
    const h = this.#holding.get(f.group);
    if (h !== undefined) h.served = true;
    this.#boundLock(f.group);
    this.#eventsDue = true;
  }

  /**
   * Keeps a group's lock for the rest of this burst of requests: writes after the first
   * skip the lock and the sync (MqGroup.holdLock). Released HOLD_MS after it was taken
   * (when the server is idle then, or at the next write), or after HOLD_WRITES writes, so
   * other writers of the group never wait long. Taken again with nothing changed since, no
   * full sync is needed either.
   */
  #holdLock(gs: GroupState): void {
    const now = monotonicMs();
    gs.writeGap = now - gs.lastWrite;
    gs.lastWrite = now;
    if (this.#holding.has(gs)) return;
    // Nothing seen since the lock was last released, and no event queued now that the lock
    // is held (a writer's changes are queued before it lets the lock go): no full sync.
    const dirty = gs.dirty;
    gs.dirty = false;
    gs.g.holdLock(() => !dirty && this.#ino.queued() === 0);
    this.#holding.set(gs, { writes: 0, since: now, served: false });
  }

  #boundLock(gs: GroupState): void {
    const h = this.#holding.get(gs);
    if (h === undefined) return;
    // The time this write began (#holdLock took it): one clock read per write.
    if (++h.writes >= HOLD_WRITES || gs.lastWrite - h.since >= HOLD_MS) {
      this.#takeOwnEvents(); // before the lock goes: they are known to be this burst's
      this.#holding.delete(gs);
      gs.g.releaseLock();
    }
  }

  /** Takes the index events of this burst's own writes (see attach). */
  #takeOwnEvents(): void {
    if (!this.#eventsDue) return;
    this.#eventsDue = false;
    // Still holding the locks: every index change queued for a held group is one of
    // this burst's own commits (or came before its sync), and its readers were served.
    this.#onEvents(this.#servedHold);
  }

  readonly #servedHold = (gs: GroupState): boolean => this.#holding.get(gs)?.served === true;

  /**
   * Releases the locks held for HOLD_MS or more, and those of
   * groups written to less often than every HOLD_MS / 2; says in how many milliseconds the
   * others are due. A writer whose next write(2) comes within the hold (one writing as fast
   * as it can) finds the lock still held, and another process still waits at most about
   * HOLD_MS for it; a slower writer costs no wake-up to release it.
   */
  #releaseLocks(): number | undefined {
    const now = monotonicMs();
    let due: number | undefined;
    for (const [gs, h] of this.#holding) {
      const left = h.since + HOLD_MS - now;
      if (left <= 0 || !(gs.writeGap < HOLD_MS / 2)) {
        this.#holding.delete(gs);
        gs.g.releaseLock();
      } else if (due === undefined || left < due) due = left;
    }
    return due;
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
    if (this.#nodes.stat(rel) !== undefined) throw new FuseError(E.EEXIST);
    try {
      MqGroup.create(this.#nodes.path(rel)).close();
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    return this.#ref(this.#nodes.node(rel, "group"));
  }

  /** {@inheritDoc FileSystem.unlink} */
  unlink(parent: number, name: string): void {
    const p = this.#get(parent);
    const n = this.#nodes.classify(p, name);
    if (n.kind === "ctl" || n.kind === "order") throw new FuseError(E.EPERM);
    if (n.kind !== "stream") throw new FuseError(E.EISDIR);
    const gs = this.#group(p.rel);
    try {
      gs.g.remove(name);
    } catch (err) {
      throw new FuseError(errnoOf(err));
    }
    this.#nodes.forgetRel(n.rel);
    this.#serveGroup(gs);
  }

  /** {@inheritDoc FileSystem.rmdir} */
  rmdir(parent: number, name: string): void {
    const p = this.#get(parent);
    const n = this.#nodes.classify(p, name);
    if (n.kind !== "dir" && n.kind !== "group") throw new FuseError(E.ENOTDIR);
    const path = this.#nodes.path(n.rel);
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
    this.#nodes.forgetRel(n.rel);
  }

  /** {@inheritDoc FileSystem.statfs} */
  statfs(): { namelen: number } {
    return { namelen: 255 };
  }

  /** Changes seen on the directory: index foreign appends and removals, answer readers. */
  #onEvents(held?: (gs: GroupState) => boolean): void {
    const touched = new Set<GroupState>();
    const sync = new Set<GroupState>();
    for (const e of this.#ino.read()) {
      if (e.mask & IN.Q_OVERFLOW) {
        for (const gs of this.#groups.values()) {
          sync.add(gs);
          gs.dirty = true;
        }
        continue;
      }
      const gs = this.#wdGroup.get(e.wd);
      if (gs === undefined) continue;
      if (e.wd === gs.wds[1] && e.mask === IN.MODIFY && held?.(gs)) continue;
      if (e.wd === gs.wds[2] || e.wd === gs.wds[3]) {
        // `.mq/intent` (each write's first step) and `ctl`: the lock holder's own, or not.
        if (e.wd !== gs.wds[2] || !this.#holding.has(gs)) gs.dirty = true;
        continue;
      }
      gs.dirty = true;
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
    this.afterReply();
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
 * @example Mount a group and `cat` a stream through the mount
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup } from "./mod.ts";
 * import { mountGroups } from "./mount.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const mp = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * try {
 *   const g = mkgroup(`${dir}/chat`, { replay: "all" });
 *   g.write("0", "hi\n");
 *   g.write("0", new Uint8Array()); // end of file for the stream's readers
 *   g.close();
 *   const m = await mountGroups(dir, mp);
 *   try {
 *     // A reader in another process (a read of this process's own mount would wait on itself).
 *     const cat = await new Deno.Command("cat", {
 *       args: [`${mp}/chat/0`],
 *       signal: AbortSignal.timeout(10_000), // it would block if no end of file came
 *     }).output();
 *     assert.equal(new TextDecoder().decode(cat.stdout), "hi\n");
 *     const sh = await new Deno.Command("sh", {
 *       args: ["-c", `echo replay off > ${mp}/chat/ctl && cat ${mp}/chat/ctl`],
 *     }).output();
 *     assert.match(new TextDecoder().decode(sh.stdout), /replay off/);
 *   } finally {
 *     await m.stop();
 *     await m.done;
 *   }
 * } finally {
 *   Deno.removeSync(dir, { recursive: true });
 *   Deno.removeSync(mp);
 * }
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
  // A long-lived server checksums every message written through it: zlib's CRC-32 is
  // worth its load time here (about 0.6 µs less per KiB).
  await loadNativeCrc32();
  const tree = new MqTree(realDir, log, options.writeBehind === true);
  let server: FuseServer;
  try {
    server = await mount(mountpoint, tree, {
      fsname: realDir,
      subtype: MQ_SUBTYPE,
      onNotice: log,
      onError: (err, op) => log(`${op}: ${err instanceof Error ? err.message : String(err)}`),
      ...(options.blockMs !== undefined ? { blockMs: options.blockMs } : {}),
      spinUs: options.spinUs ?? SPIN_US,
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
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup } from "./mod.ts";
 * import { backingPath, mountGroups } from "./mount.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const mp = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * try {
 *   mkgroup(`${dir}/session`).close();
 *   const m = await mountGroups(dir, mp);
 *   try {
 *     // Only the mount table is read: nothing touches the mount itself.
 *     assert.equal(backingPath(`${m.mountpoint}/session`), `${m.dir}/session`);
 *     assert.equal(backingPath(`${dir}/session`), undefined); // not inside an mq mount
 *   } finally {
 *     await m.stop();
 *   }
 * } finally {
 *   Deno.removeSync(dir, { recursive: true });
 *   Deno.removeSync(mp);
 * }
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
