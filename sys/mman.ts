/**
 * Shared memory mappings through FFI: `mmap(2)` a file descriptor `MAP_SHARED` and get an
 * `ArrayBuffer` over the mapping, so that several processes see the same bytes and can use
 * `Atomics` on them.
 *
 * @module
 */

import { check, errno, libc } from "./libc.ts";
import { SysError } from "./errno.ts";

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MAP_POPULATE = 0x8000;
const MAP_FAILED = 0xffffffffffffffffn;

/**
 * A live shared mapping: its address, its length and an `ArrayBuffer` over it.
 *
 * Touching `buffer` (or any view of it) after {@linkcode Mapping.unmap} crashes the
 * process: drop every view before unmapping.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapShared, truncateFd } from "./mman.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/ring`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const m = mapShared(fd, 4096);
 * new Uint8Array(m.buffer)[0] = 1;
 * m.unmap();
 * assert.ok(m.unmapped);
 * assert.equal(Deno.readFileSync(`${dir}/ring`)[0], 1); // the file holds what was stored
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Mapping {
  /** The address of the first byte. */
  readonly pointer: Deno.PointerObject;
  /** The length in bytes. */
  readonly length: number;
  #buffer: ArrayBuffer | undefined;

  /**
   * Wraps an existing mapping (use {@linkcode mapShared} to make one).
   *
   * @param pointer The address.
   * @param length The length in bytes.
   */
  constructor(pointer: Deno.PointerObject, length: number) {
    this.pointer = pointer;
    this.length = length;
    this.#buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, length);
  }

  /** The bytes of the mapping; throws once unmapped. */
  get buffer(): ArrayBuffer {
    if (this.#buffer === undefined) throw new Error("Mapping used after unmap");
    return this.#buffer;
  }

  /** Whether {@linkcode Mapping.unmap} has been called. */
  get unmapped(): boolean {
    return this.#buffer === undefined;
  }

  /**
   * The address `offset` bytes into the mapping (for futex calls).
   *
   * @param offset The byte offset.
   * @returns The pointer.
   */
  at(offset: number): Deno.PointerObject {
    return Deno.UnsafePointer.offset(this.pointer, offset) as Deno.PointerObject;
  }

  /** Unmaps the memory; safe to call more than once. */
  unmap(): void {
    if (this.#buffer === undefined) return;
    this.#buffer = undefined;
    libc().munmap(this.pointer, BigInt(this.length));
  }
}

/**
 * Maps `length` bytes of an open file, shared and readable/writable.
 *
 * @param fd The descriptor, opened read-write.
 * @param length The number of bytes to map, from offset 0.
 * @param options `populate` (default false): fault every page in now (MAP_POPULATE), so that first touches
 *   do not cost page faults later; `offset` (default 0): where in the file the mapping starts
 *   (an io_uring's rings and entries are mapped from its descriptor at set offsets).
 * @returns The mapping.
 * @throws {SysError} When mmap fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapShared, truncateFd } from "./mman.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/ring`, O.RDWR | O.CREAT);
 * truncateFd(fd, 65536);
 * const a = mapShared(fd, 65536);
 * const b = mapShared(fd, 65536, { populate: true });
 * new Int32Array(a.buffer)[16] = 42;
 * assert.equal(new Int32Array(b.buffer)[16], 42); // two mappings, the same bytes
 * a.unmap();
 * b.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function mapShared(
  fd: number,
  length: number,
  options: { populate?: boolean; offset?: number } = {},
): Mapping {
  const { populate = false, offset = 0 } = options;
  const flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
  const p = libc().mmap(null, BigInt(length), PROT_READ | PROT_WRITE, flags, fd, BigInt(offset));
  if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) {
    throw new SysError("mmap", errno());
  }
  return new Mapping(p, length);
}

/**
 * Sets the length of an open file (`ftruncate(2)`).
 *
 * @param fd The descriptor.
 * @param length The new length in bytes.
 * @throws {SysError} When ftruncate fails.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { truncateFd } from "./mman.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/ring`, O.RDWR | O.CREAT);
 * truncateFd(fd, 65536);
 * assert.equal(Deno.statSync(`${dir}/ring`).size, 65536);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function truncateFd(fd: number, length: number): void {
  check(libc().ftruncate(fd, BigInt(length)), "ftruncate");
}

/**
 * Gives an open file `length` bytes of real storage now (`fallocate(2)`), so that first
 * writes do not allocate pages; falls back to `ftruncate(2)` where fallocate is not
 * supported.
 *
 * @param fd The descriptor, opened for writing.
 * @param length The length in bytes.
 * @throws {SysError} When neither call succeeds.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { allocateFd } from "./mman.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/ring`, O.RDWR | O.CREAT);
 * allocateFd(fd, 1 << 20);
 * assert.equal(Deno.statSync(`${dir}/ring`).size, 1 << 20);
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function allocateFd(fd: number, length: number): void {
  if (libc().fallocate(fd, 0, 0n, BigInt(length)) === 0) return;
  truncateFd(fd, length);
}
