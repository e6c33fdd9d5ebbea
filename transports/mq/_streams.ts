/**
 * The table of stream incarnations: `.mq/streams` holds one line "INODE\tNAME\tCRC\n" per
 * incarnation (a name bound to one file; format 1 groups have no CRC), and a line's number is
 * the incarnation's id, which index records name. A stream removed and made again (or
 * truncated or rewritten in place) is a new incarnation: its readers get EOF on the old one.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { closeFd, fstat, O, statPath } from "../../sys/fs.ts";
import { fdMtimeUs, fdSize, preadFull, pwriteAll, truncateTo } from "../../sys/fd_io.ts";
import { isStreamName } from "./_names.ts";
import { crc32 } from "./_crc32.ts";
import { damaged } from "./_index.ts";
import type { GroupDir } from "./_files.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const RECENT_US = 50_000;
const MAX_NAMES_BYTES = 64 * 1024 * 1024;

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? s.slice(0, 60) + "..." : s);
}

/** One line of `.mq/streams`. */
export interface StreamLine {
  /** The inode the incarnation is bound to. */
  ino: bigint;
  /** The stream's name. */
  name: string;
}

function lineCrc(id: number, ino: bigint, name: string): string {
  return crc32(0, encoder.encode(`${id}\t${ino}\t${name}`)).toString(16).padStart(8, "0");
}

/**
 * The text of a `.mq/streams` line: "INODE\tNAME\tCRC\n" (format 2: the CRC-32 of the id,
 * inode and name, so a damaged or misplaced line is recognised), "INODE\tNAME\n" (format 1).
 *
 * @param id The incarnation's id (its line number from 0).
 * @param ino Its inode.
 * @param name Its name.
 * @param version The index format.
 * @returns The line.
 */
export function renderStreamLine(id: number, ino: bigint, name: string, version: number): string {
  return version === 1 ? `${ino}\t${name}\n` : `${ino}\t${name}\t${lineCrc(id, ino, name)}\n`;
}

/**
 * Parses a `.mq/streams` line (without its newline).
 *
 * @param line The line.
 * @param id Its id (its line number from 0).
 * @param version The index format.
 * @returns The incarnation, or what is wrong with the line.
 */
export function parseStreamLine(line: string, id: number, version: number): StreamLine | string {
  const m = line.match(/^(\d{1,20})\t([^\t]*)(?:\t([0-9a-f]{8}))?$/);
  if (m === null) return `expected "INODE<tab>NAME<tab>CRC", found ${quote(line)}`;
  const ino = BigInt(m[1]!);
  const name = m[2]!;
  if (ino > 0xffffffffffffffffn) return `inode out of range in ${quote(line)}`;
  if (!isStreamName(name)) return `bad stream name ${quote(name)}`;
  if (m[3] === undefined) {
    if (version !== 1) return `no checksum in ${quote(line)}`;
  } else if (m[3] !== lineCrc(id, ino, name)) {
    return `checksum mismatch in ${quote(line)}`;
  }
  return { ino, name };
}

/**
 * What a group knows about one of its streams.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MqGroup, type StreamInfo } from "@x/fsbus/mq";
 * const show = (s: StreamInfo) => `${s.name}: ${s.count} messages, ${s.end} bytes`;
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = MqGroup.create(`${dir}/g`);
 * g.write("0", "hi");
 * assert.equal(show(g.stream("0")!), "0: 1 messages, 2 bytes");
 * g.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export interface StreamInfo {
  /** The file name. */
  readonly name: string;
  /** The end of the last indexed message in the file. */
  readonly end: number;
  /** How many messages have been indexed. */
  readonly count: number;
  /** The global sequence number of the last indexed message, or -1. */
  readonly lastSeq: number;
  /** Whether the file was removed (or replaced): readers get EOF once caught up. */
  readonly removed: boolean;
}

/** What the engine knows about one stream incarnation (a name bound to one inode). */
export interface StreamState extends StreamInfo {
  /** The id: its line number in `.mq/streams`. */
  readonly id: number;
  /** The name plus NUL, as `order` records it. */
  readonly orderEntry: Uint8Array;
  /** The inode this incarnation is bound to. */
  ino: bigint;
  /** An open descriptor (read/write, append), or -1. */
  fd: number;
  end: number;
  count: number;
  lastSeq: number;
  removed: boolean;
  /** The end of the last message below the cutoff (the writer punches up to it). */
  cutEnd: number;
  /** The messages below the cutoff. */
  cutCount: number;
  /** The sequence number of the last message below the cutoff, or -1. */
  cutLast: number;
  /** How far this process has punched holes. */
  punched: number;
  /** The last message this process wrote to it, while readers here want it, or undefined. */
  written: Uint8Array | undefined;
  /** Where {@linkcode StreamState.written} starts in the file. */
  writtenAt: number;
}

/** A group's stream incarnations, by id and by live name. */
export class StreamTable {
  /** Every incarnation known, by id. */
  readonly all: StreamState[] = [];
  /** The live incarnation of each name. */
  readonly live: Map<string, StreamState> = new Map();
  /** The index format (set when the index header is read): 2 adds a CRC to each line. */
  version = 2;
  /**
   * How many readers in this process share the group: while there are any, each stream
   * keeps the last message written here, so they need not read it back from the file.
   */
  localReaders = 0;
  readonly #path: string;
  readonly #dir: GroupDir;
  readonly #namesFd: number;
  readonly #writable: boolean;
  #namesRead = 0;
  #dirMtime = -1;

  /**
   * @param dir The group's directory.
   * @param namesFd `.mq/streams`, open (for reading and writing when `writable`).
   * @param writable Whether streams are opened for writing.
   */
  constructor(dir: GroupDir, namesFd: number, writable: boolean) {
    this.#path = dir.path;
    this.#dir = dir;
    this.#namesFd = namesFd;
    this.#writable = writable;
  }

  /**
   * Reads incarnations added to `.mq/streams` since the last look.
   *
   * @param locked Whether the caller holds the lock (then a torn line is removed).
   */
  readNames(locked = false): void {
    const size = fdSize(this.#namesFd);
    if (size < this.#namesRead) {
      throw damaged(
        this.#path,
        '".mq/streams"',
        `it shrank from ${this.#namesRead} to ${size} bytes, so its ids no longer hold`,
      );
    }
    if (size === this.#namesRead) return;
    if (size > MAX_NAMES_BYTES) throw damaged(this.#path, '".mq/streams"', "it is too large");
    const buf = new Uint8Array(size - this.#namesRead);
    const n = preadFull(this.#namesFd, buf, this.#namesRead);
    const lastNl = buf.subarray(0, n).lastIndexOf(10);
    if (lastNl < 0) {
      if (locked) truncateTo(this.#namesFd, this.#namesRead);
      return;
    }
    const lines = decoder.decode(buf.subarray(0, lastNl)).split("\n");
    const parsed: StreamLine[] = [];
    for (const line of lines) {
      const id = this.all.length + parsed.length;
      const p = parseStreamLine(line, id, this.version);
      if (typeof p === "string") throw damaged(this.#path, `".mq/streams" line ${id + 1}`, p);
      parsed.push(p);
    }
    for (const { ino, name } of parsed) this.#add(name, ino, -1);
    this.#namesRead += lastNl + 1;
    if (locked && this.#namesRead < size) truncateTo(this.#namesFd, this.#namesRead);
  }

  #add(name: string, ino: bigint, fd: number): StreamState {
    const old = this.live.get(name);
    if (old) old.removed = true;
    const s: StreamState = {
      id: this.all.length,
      name,
      orderEntry: encoder.encode(name + "\0"),
      ino,
      fd,
      end: 0,
      count: 0,
      lastSeq: -1,
      removed: false,
      cutEnd: 0,
      cutCount: 0,
      cutLast: -1,
      punched: 0,
      written: undefined,
      writtenAt: 0,
    };
    this.all.push(s);
    this.live.set(name, s);
    return s;
  }

  /** Appends an incarnation to `.mq/streams` (under the lock). */
  #register(name: string, fd: number, ino: bigint): StreamState {
    this.readNames(true);
    const known = this.live.get(name);
    if (known && known.ino === ino && !known.removed) {
      if (known.fd < 0) known.fd = fd;
      else if (known.fd !== fd) closeFd(fd);
      return known;
    }
    const line = encoder.encode(renderStreamLine(this.all.length, ino, name, this.version));
    pwriteAll(this.#namesFd, line, this.#namesRead);
    this.#namesRead += line.length;
    return this.#add(name, ino, fd);
  }

  /**
   * Under the lock: starts a new incarnation of a live stream whose file was truncated or
   * rewritten in place (the same inode): the old one is removed for its readers.
   *
   * @param s The old incarnation.
   * @returns The new one, open.
   */
  renew(s: StreamState): StreamState {
    this.readNames(true);
    const line = encoder.encode(renderStreamLine(this.all.length, s.ino, s.name, this.version));
    pwriteAll(this.#namesFd, line, this.#namesRead);
    this.#namesRead += line.length;
    const fresh = this.#add(s.name, s.ino, s.fd);
    s.fd = -1;
    return fresh;
  }

  /**
   * Opens a stream's file if needed; marks it removed when its inode is gone.
   *
   * @param s The incarnation.
   * @returns Whether it is live and open.
   */
  ensureFd(s: StreamState): boolean {
    if (s.fd >= 0) return !s.removed;
    if (s.removed) return false;
    return this.#bind(s);
  }

  /**
   * Opens the file of a stream's name for the incarnation: its inode, or another file that
   * holds its last message (copied or restored); else the incarnation is gone.
   */
  #bind(s: StreamState): boolean {
    const fd = this.#openStream(s.name, false);
    if (fd < 0) {
      this.#gone(s);
      return false;
    }
    const ino = fstat(fd).ino;
    if (ino !== s.ino && !this.holdsLastMessage(s, fd)) {
      closeFd(fd);
      this.#gone(s);
      return false;
    }
    if (s.fd >= 0) closeFd(s.fd);
    s.fd = fd;
    s.ino = ino;
    return true;
  }

  /** Whether a file holds a stream's last message (set by the group, from its index). */
  holdsLastMessage: (s: StreamState, fd: number) => boolean = () => false;

  /** Opens a stream file (read/write and append, or read only), or -1 when it cannot. */
  #openStream(name: string, create: boolean): number {
    const flags = this.#writable ? O.RDWR | O.APPEND : O.RDONLY;
    try {
      return this.#dir.openFile("group", name, create ? flags | O.CREAT : flags, "Cannot open");
    } catch (err) {
      if (create) throw err;
      return -1; // gone again, not a regular file, or not ours to open
    }
  }

  #gone(s: StreamState): void {
    s.removed = true;
    if (this.live.get(s.name) === s) this.live.delete(s.name);
  }

  /** Whether the group's directory is still at its path (not removed or replaced). */
  #dirThere(): boolean {
    const st = statPath(this.#dir.path);
    return st !== undefined && st.ino === fstat(this.#dir.fd).ino;
  }

  /**
   * Whether the group itself was removed or replaced (its directory moved away, or its
   * `ctl` gone).
   *
   * @returns True when it is no longer a group at its path.
   */
  groupGone(): boolean {
    return !this.#dirThere() || this.#dir.stat("group", "ctl") === undefined;
  }

  /** For a group opened read only: marks removed the streams whose files are gone. */
  dropRemoved(): void {
    const there = this.#dirThere();
    for (const s of [...this.live.values()]) {
      if (!there) this.#gone(s);
      else if (this.#dir.stat("group", s.name)?.ino !== s.ino) this.#bind(s);
    }
  }

  /**
   * Under the lock: notices streams created, removed or replaced by anyone.
   *
   * @param force Scan even when the directory's time says nothing changed.
   */
  scanDir(force: boolean): void {
    // The cheap check first: has the directory changed (or changed so recently that the
    // kernel's coarse timestamps could hide a second change)?
    const mtime = fdMtimeUs(this.#dir.fd);
    if (!force && mtime === this.#dirMtime && Date.now() * 1000 - mtime > RECENT_US) return;
    if (!this.#dirThere()) {
      for (const s of this.live.values()) s.removed = true;
      this.live.clear();
      return;
    }
    this.readNames(true);
    const seen = new Set<string>();
    for (const e of this.#dir.list()) {
      if (!e.isFile || !isStreamName(e.name)) continue;
      seen.add(e.name);
      const s = this.live.get(e.name);
      if (s && !s.removed) {
        if (this.#dir.stat("group", e.name)?.ino === s.ino) {
          this.ensureFd(s);
          continue;
        }
        if (this.#bind(s)) continue;
        s.removed = true;
      }
      const fd = this.#openStream(e.name, false);
      if (fd >= 0) this.#register(e.name, fd, fstat(fd).ino);
    }
    for (const [name, s] of this.live) {
      if (!seen.has(name)) {
        s.removed = true;
        this.live.delete(name);
      }
    }
    this.#dirMtime = mtime;
  }

  /**
   * Under the lock: the live incarnation of a stream to write, made when missing.
   *
   * @param name The stream's name (checked by the caller).
   * @returns The incarnation, open.
   * @throws {FsbusError} When the file cannot be opened or is not a regular file.
   */
  forWrite(name: string): StreamState {
    const s = this.live.get(name);
    if (s && this.ensureFd(s)) return s;
    let fd: number;
    try {
      fd = this.#openStream(name, true);
    } catch (err) {
      const why = err instanceof FsbusError ? err.message.replace(/^.*?": /, "") : String(err);
      throw new FsbusError(
        err instanceof FsbusError ? err.code : "io",
        `Cannot write to stream "${this.#dir.pathOf("group", name)}": ${why}`,
        { cause: err },
      );
    }
    return this.#register(name, fd, fstat(fd).ino);
  }

  /** Closes every stream's descriptor. */
  close(): void {
    for (const s of this.all) {
      if (s.fd >= 0) closeFd(s.fd);
      s.fd = -1;
    }
  }
}
