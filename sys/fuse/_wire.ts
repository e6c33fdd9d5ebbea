/**
 * The FUSE kernel protocol's wire format (`include/uapi/linux/fuse.h`, protocol 7.x): opcodes,
 * flags, and encoders/decoders for the structures fsbus uses. Little-endian, as the kernel
 * writes them on every architecture Deno runs on.
 *
 * @module
 */

import type { FuseSetAttr, FuseStatfs } from "./file_system.ts";
import { getU64, setU64 } from "../le64.ts";

/** The protocol major version this implementation speaks. */
export const KERNEL_MAJOR = 7;
/** The highest protocol minor version this implementation knows. */
export const KERNEL_MINOR = 38;
/** The lowest kernel minor version accepted (Linux 4.20 and later). */
export const MIN_KERNEL_MINOR = 28;
/** The root directory's node id. */
export const ROOT_ID = 1;

/** Request opcodes. */
export const OP = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
} as const;

/** INIT flags (the first 32 bits). */
export const INIT = {
  ASYNC_READ: 1 << 0,
  ATOMIC_O_TRUNC: 1 << 3,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  AUTO_INVAL_DATA: 1 << 12,
  ASYNC_DIO: 1 << 15,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  NO_OPENDIR_SUPPORT: 1 << 24,
} as const;

/** `fuse_open_out.open_flags`. */
export const FOPEN = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  STREAM: 1 << 4,
} as const;

/** `fuse_setattr_in.valid` bits. */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
} as const;

/** Sizes of fixed structures. */
export const SIZE = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  OPEN_OUT: 16,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  INIT_OUT: 64,
  DIRENT: 24,
  READ_IN: 40,
  WRITE_IN: 40,
} as const;

/** The fixed header of every request. */
export interface InHeader {
  len: number;
  opcode: number;
  unique: number;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

/**
 * Decodes a request header.
 *
 * @param v The view of the request buffer.
 * @returns The header's fields.
 */
export function readInHeader(v: DataView): InHeader {
  return {
    len: v.getUint32(0, true),
    opcode: v.getUint32(4, true),
    unique: getU64(v, 8),
    nodeid: getU64(v, 16),
    uid: v.getUint32(24, true),
    gid: v.getUint32(28, true),
    pid: v.getUint32(32, true),
  };
}

/**
 * Writes a reply header.
 *
 * @param v The view of the reply buffer.
 * @param len The whole reply's length.
 * @param error 0, or a negative errno.
 * @param unique The request's unique id.
 */
export function writeOutHeader(v: DataView, len: number, error: number, unique: number): void {
  v.setUint32(0, len, true);
  v.setInt32(4, error, true);
  setU64(v, 8, unique);
}

/** File attributes as FUSE carries them (`struct fuse_attr`). */
export interface WireAttr {
  ino: number;
  size: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Modification time, milliseconds since the epoch (also used for atime and ctime). */
  mtimeMs: number;
  rdev: number;
}

/**
 * Encodes `struct fuse_attr` at `at`.
 *
 * @param v The view.
 * @param at Where the structure starts.
 * @param a The attributes.
 */
export function writeAttr(v: DataView, at: number, a: WireAttr): void {
  setU64(v, at, a.ino);
  setU64(v, at + 8, a.size);
  setU64(v, at + 16, Math.ceil(a.size / 512));
  const sec = Math.floor(a.mtimeMs / 1000);
  const nsec = Math.floor((a.mtimeMs - sec * 1000) * 1e6);
  for (const o of [24, 32, 40]) setU64(v, at + o, Math.max(0, sec));
  for (const o of [48, 52, 56]) v.setUint32(at + o, nsec, true);
  v.setUint32(at + 60, a.mode, true);
  v.setUint32(at + 64, a.nlink, true);
  v.setUint32(at + 68, a.uid, true);
  v.setUint32(at + 72, a.gid, true);
  v.setUint32(at + 76, a.rdev, true);
  v.setUint32(at + 80, 4096, true);
  v.setUint32(at + 84, 0, true);
}

/**
 * Encodes a cache timeout (seconds and nanoseconds) from milliseconds.
 *
 * @param ms The timeout.
 * @returns Seconds and nanoseconds.
 */
export function splitTtl(ms: number): [number, number] {
  const sec = Math.floor(ms / 1000);
  return [sec, Math.round((ms - sec * 1000) * 1e6)];
}

/**
 * Encodes `struct fuse_entry_out` at `at`.
 *
 * @param v The view.
 * @param at Where it starts.
 * @param node The node id (0: a negative entry).
 * @param generation The node's generation.
 * @param entryTtlMs How long the kernel may cache the name.
 * @param attrTtlMs How long the kernel may cache the attributes.
 * @param a The attributes.
 */
export function writeEntryOut(
  v: DataView,
  at: number,
  node: number,
  generation: number,
  entryTtlMs: number,
  attrTtlMs: number,
  a: WireAttr,
): void {
  const [es, en] = splitTtl(entryTtlMs);
  const [as, an] = splitTtl(attrTtlMs);
  setU64(v, at, node);
  setU64(v, at + 8, generation);
  setU64(v, at + 16, es);
  setU64(v, at + 24, as);
  v.setUint32(at + 32, en, true);
  v.setUint32(at + 36, an, true);
  writeAttr(v, at + 40, a);
}

/**
 * Encodes `struct fuse_attr_out` at `at`.
 *
 * @param v The view.
 * @param at Where it starts.
 * @param attrTtlMs How long the kernel may cache the attributes.
 * @param a The attributes.
 */
export function writeAttrOut(v: DataView, at: number, attrTtlMs: number, a: WireAttr): void {
  const [s, n] = splitTtl(attrTtlMs);
  setU64(v, at, s);
  v.setUint32(at + 8, n, true);
  v.setUint32(at + 12, 0, true);
  writeAttr(v, at + 16, a);
}

/**
 * Encodes `struct fuse_open_out` at `at`.
 *
 * @param v The view.
 * @param at Where it starts.
 * @param fh The file handle.
 * @param flags `FOPEN.*` bits.
 */
export function writeOpenOut(v: DataView, at: number, fh: number, flags: number): void {
  setU64(v, at, fh);
  v.setUint32(at + 8, flags, true);
  v.setUint32(at + 12, 0, true);
}

/** The directory entry type (`DT_*`) for a mode. */
export function direntType(mode: number): number {
  return (mode & 0o170000) >> 12;
}

/**
 * The size of one `fuse_dirent` with its name, aligned to 8 bytes.
 *
 * @param nameLen The name's length in bytes.
 * @returns The record size.
 */
export function direntSize(nameLen: number): number {
  return (SIZE.DIRENT + nameLen + 7) & ~7;
}

/**
 * Encodes one `fuse_dirent` at `at`.
 *
 * @param bytes The buffer.
 * @param v A view of it.
 * @param at Where it starts.
 * @param ino The entry's inode number.
 * @param nextOffset The offset of the next entry (what READDIR gives back to continue).
 * @param type The `DT_*` type.
 * @param name The name, encoded.
 * @returns The bytes written (aligned).
 */
export function writeDirent(
  bytes: Uint8Array,
  v: DataView,
  at: number,
  ino: number,
  nextOffset: number,
  type: number,
  name: Uint8Array,
): number {
  const size = direntSize(name.length);
  setU64(v, at, ino);
  setU64(v, at + 8, nextOffset);
  v.setUint32(at + 16, name.length, true);
  v.setUint32(at + 20, type, true);
  bytes.set(name, at + SIZE.DIRENT);
  bytes.fill(0, at + SIZE.DIRENT + name.length, at + size);
  return size;
}

/**
 * Decodes `struct fuse_setattr_in` at `at`: only the changes its `valid` bits name.
 *
 * @param v The view of the request buffer.
 * @param at Where it starts.
 * @returns The requested changes.
 */
export function readSetattrIn(v: DataView, at: number): FuseSetAttr {
  const valid = v.getUint32(at, true);
  const ch: FuseSetAttr = {};
  if (valid & FATTR.MODE) ch.mode = v.getUint32(at + 68, true);
  if (valid & FATTR.UID) ch.uid = v.getUint32(at + 76, true);
  if (valid & FATTR.GID) ch.gid = v.getUint32(at + 80, true);
  if (valid & FATTR.SIZE) ch.size = getU64(v, at + 16);
  if (valid & FATTR.MTIME) ch.mtimeMs = getU64(v, at + 40) * 1000;
  if (valid & FATTR.FH) ch.fh = getU64(v, at + 8);
  return ch;
}

/**
 * Encodes `struct fuse_statfs_out` at `at` (missing fields: 0, 4096-byte blocks, 255-byte
 * names).
 *
 * @param bytes The buffer.
 * @param v A view of it.
 * @param at Where it starts.
 * @param s The statistics.
 */
export function writeStatfsOut(bytes: Uint8Array, v: DataView, at: number, s: FuseStatfs): void {
  bytes.fill(0, at, at + SIZE.STATFS_OUT);
  setU64(v, at, s.blocks ?? 0);
  setU64(v, at + 8, s.bfree ?? 0);
  setU64(v, at + 16, s.bavail ?? 0);
  setU64(v, at + 24, s.files ?? 0);
  setU64(v, at + 32, s.ffree ?? 0);
  v.setUint32(at + 40, s.bsize ?? 4096, true);
  v.setUint32(at + 44, s.namelen ?? 255, true);
  v.setUint32(at + 48, s.bsize ?? 4096, true);
}

/** What `fuse_init_out` agrees to (the rest is fixed: see {@linkcode writeInitOut}). */
export interface InitOut {
  /** The protocol minor version spoken. */
  minor: number;
  /** The largest readahead, in bytes. */
  readahead: number;
  /** The `INIT.*` flags taken up. */
  flags: number;
  /** The largest write, in bytes. */
  maxWrite: number;
  /** The largest request, in pages. */
  maxPages: number;
}

/**
 * Encodes `struct fuse_init_out` at `at`: protocol {@linkcode KERNEL_MAJOR}.minor, at most 16
 * requests in the background (congestion from 12), nanosecond times. With `init` undefined
 * only the major version is set (the answer to a newer major: the kernel asks again).
 *
 * @param bytes The buffer.
 * @param v A view of it.
 * @param at Where it starts.
 * @param init What is agreed.
 */
export function writeInitOut(
  bytes: Uint8Array,
  v: DataView,
  at: number,
  init: InitOut | undefined,
): void {
  bytes.fill(0, at, at + SIZE.INIT_OUT);
  v.setUint32(at, KERNEL_MAJOR, true);
  if (init === undefined) return;
  v.setUint32(at + 4, init.minor, true);
  v.setUint32(at + 8, init.readahead, true);
  v.setUint32(at + 12, init.flags, true);
  v.setUint16(at + 16, 16, true); // max_background
  v.setUint16(at + 18, 12, true); // congestion_threshold
  v.setUint32(at + 20, init.maxWrite, true);
  v.setUint32(at + 24, 1, true); // time_gran: nanoseconds
  v.setUint16(at + 28, init.maxPages, true);
}
