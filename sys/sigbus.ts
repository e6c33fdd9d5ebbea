/**
 * A guard that keeps SIGBUS from killing the process when a shared file mapping loses pages
 * (another process truncated the file).
 *
 * Touching a page of a `MAP_SHARED` file mapping that lies past the file's end raises SIGBUS,
 * and JavaScript cannot catch signals: without help, any user allowed to truncate a shared
 * ring kills every process that maps it. So this module installs a tiny SIGBUS handler,
 * written in machine code (172 bytes, x86_64 only), into an executable page of its own:
 *
 * - When the faulting address lies in a range registered with {@linkcode guardRange}, it
 *   maps a private zero page over the lost page (`mmap(MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS)`),
 *   records the page and counts the fault, and returns: the access is retried and now reads
 *   zeros (or writes into the private page), and the process lives on. The caller then sees
 *   the fault in {@linkcode faultCount} / {@linkcode faultedIn} and must stop trusting the
 *   mapping (the page is no longer shared with anyone).
 * - Any other SIGBUS goes to the handler that was installed before (Deno's own), or, when
 *   there was none, restores the default action so that the fault kills the process as it
 *   would have.
 *
 * The handler only makes system calls (async-signal-safe), keeps no state but the counters
 * in its data page, and is installed once per process, on first use. Where it cannot be
 * installed (another architecture, FFI denied), {@linkcode installGuard} says so and callers
 * fall back to checking the file's size (which leaves a race open; see ring.ts).
 *
 * The assembly source (GNU as), for review; the bytes below are its assembled form:
 *
 * ```text
 * h:  mov 16(%rsi),%r8 ; lea data(%rip),%r9 ; mov (%r9),%rcx ; xor %r11,%r11
 * 1:  cmp %rcx,%r11 ; jae 3f                      # for each range slot
 *     mov %r11,%rax ; shl $4,%rax
 *     cmp 192(%r9,%rax),%r8 ; jb 2f ; cmp 200(%r9,%rax),%r8 ; jae 2f
 *     and $-4096,%r8 ; push rdi,rsi,rdx,r9,r8
 *     mmap(%r8, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)
 *     pop r8,r9,rdx,rsi,rdi ; cmp %r8,%rax ; jne 3f
 *     mov 8(%r9),%rax ; and $15,%rax ; mov %r8,64(%r9,%rax,8) ; lock incq 8(%r9) ; ret
 * 2:  inc %r11 ; jmp 1b
 * 3:  mov 16(%r9),%rax ; cmp $1,%rax ; jbe 4f ; jmp *%rax     # the previous handler
 * 4:  rt_sigaction(SIGBUS, data+32 (SIG_DFL), NULL, 8) ; ret
 * data (the next page): +0 slots, +8 faults, +16 previous handler, +32 SIG_DFL action,
 *                       +64 the last 16 faulting pages, +192 {lo, hi} per slot
 * ```
 *
 * @module
 */

import { libc } from "./libc.ts";

const CODE_X64 =
  "4c8b46104c8d0df50f0000498b094d31db4939cb73714c89d848c1e0044d3b8401c0000000725b4d3b8401c8" +
  "00000073514981e000f0ffff575652415141504c89c7be00100000ba0300000041ba3200000049c7c0ffffff" +
  "ff4531c9b8090000000f05415841595a5e5f4c39c07518498b41084883e00f4d8944c140f049ff4108c349ff" +
  "c3eb8a498b41104883f8017602ffe0bf07000000498d712031d241ba08000000b80d0000000f05c3";

const PAGE = 4096;
const SIGBUS = 7;
const SA_SIGINFO = 4;
const SA_ONSTACK = 0x08000000;
const SA_RESTART = 0x10000000;
const OFF_SLOTS = 0;
const OFF_FAULTS = 8;
const OFF_PREVIOUS = 16;
const OFF_PAGES = 64;
const PAGES = 16;
const OFF_RANGES = 192;
const MAX_RANGES = (PAGE - OFF_RANGES) / 16;

interface Guard {
  data: BigUint64Array;
  faults: Int32Array;
  used: boolean[];
}

let guard: Guard | null | undefined;

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function install(): Guard | null {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return null;
  let c;
  try {
    c = libc();
  } catch {
    return null;
  }
  // Two anonymous pages: the code (made read+exec), then its data (read+write).
  const base = c.mmap(null, BigInt(2 * PAGE), 0x3, 0x22, -1, 0n);
  if (base === null || Deno.UnsafePointer.value(base) === 0xffffffffffffffffn) return null;
  const pages = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(base, 2 * PAGE));
  pages.set(hexBytes(CODE_X64), 0);
  if (c.mprotect(base, BigInt(PAGE), 0x5) !== 0) {
    c.munmap(base, BigInt(2 * PAGE));
    return null;
  }
  const dataPtr = Deno.UnsafePointer.offset(base, PAGE) as Deno.PointerObject;
  const raw = Deno.UnsafePointerView.getArrayBuffer(dataPtr, PAGE);
  const data = new BigUint64Array(raw);
  // struct sigaction (glibc, x86_64): handler @0, mask @8 (128 bytes), flags @136.
  const old = new Uint8Array(152);
  if (c.sigaction(SIGBUS, null, old) !== 0) return null;
  data[OFF_PREVIOUS / 8] = new DataView(old.buffer).getBigUint64(0, true);
  const act = new Uint8Array(152);
  const dv = new DataView(act.buffer);
  dv.setBigUint64(0, Deno.UnsafePointer.value(base), true);
  dv.setInt32(136, SA_SIGINFO | SA_ONSTACK | SA_RESTART, true);
  if (c.sigaction(SIGBUS, act, null) !== 0) return null;
  return { data, faults: new Int32Array(raw, OFF_FAULTS, 1), used: [] };
}

/**
 * Installs the SIGBUS guard once per process.
 *
 * @returns Whether the guard is active (false on architectures it does not support, or
 *   without FFI).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { installGuard } from "./sigbus.ts";
 * // false off x86_64 or without FFI: a truncated mapping would then kill this process
 * assert.equal(typeof installGuard(), "boolean");
 * ```
 */
export function installGuard(): boolean {
  if (guard === undefined) guard = install();
  return guard !== null;
}

/**
 * Protects a mapping: a SIGBUS inside it no longer kills the process (see the module doc).
 *
 * @param pointer The first byte of the mapping.
 * @param length Its length in bytes.
 * @returns A slot to pass to {@linkcode unguardRange}, or -1 when the guard is not active
 *   or every slot is taken.
 *
 * @example A guarded mapping outlives the truncation of its file
 * ```ts
 * import assert from "node:assert/strict";
 * import { faultedIn, faultCount, guardRange, installGuard, unguardRange } from "./sigbus.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * if (installGuard()) {
 *   const slot = guardRange(mapping.pointer, mapping.length);
 *   const seen = faultCount();
 *   truncateFd(fd, 0); // another process may do this at any time
 *   assert.equal(new Uint8Array(mapping.buffer)[0], 0); // no SIGBUS death: reads zeros
 *   assert.ok(faultedIn(mapping.pointer, mapping.length, seen));
 *   unguardRange(slot);
 * }
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function guardRange(pointer: Deno.PointerObject, length: number): number {
  if (!installGuard()) return -1;
  const g = guard!;
  let slot = g.used.indexOf(false);
  if (slot < 0) slot = g.used.length;
  if (slot >= MAX_RANGES) return -1;
  g.used[slot] = true;
  const lo = Deno.UnsafePointer.value(pointer);
  const at = OFF_RANGES / 8 + slot * 2;
  g.data[at] = lo;
  g.data[at + 1] = lo + BigInt(length);
  if (BigInt(slot) >= g.data[OFF_SLOTS / 8]!) g.data[OFF_SLOTS / 8] = BigInt(slot + 1);
  return slot;
}

/**
 * Removes a range added by {@linkcode guardRange} (before the mapping is unmapped).
 *
 * @param slot The slot; -1 is ignored.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { guardRange, unguardRange } from "./sigbus.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * const slot = guardRange(mapping.pointer, mapping.length);
 * unguardRange(slot); // before unmapping; -1 (no guard) is ignored
 * unguardRange(-1);
 * assert.ok(slot >= -1);
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function unguardRange(slot: number): void {
  if (slot < 0 || !guard) return;
  const at = OFF_RANGES / 8 + slot * 2;
  guard.data[at] = 0n;
  guard.data[at + 1] = 0n;
  guard.used[slot] = false;
}

/**
 * How many SIGBUS faults the guard has absorbed so far (low 32 bits): a cheap check for hot
 * paths, to compare with a value seen before.
 *
 * @returns The count; always 0 when the guard is not active.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { faultCount } from "./sigbus.ts";
 * const before = faultCount();
 * assert.equal(faultCount(), before); // nothing truncated meanwhile
 * ```
 */
export function faultCount(): number {
  return guard ? Atomics.load(guard.faults, 0) : 0;
}

/**
 * The live fault counter itself, for hot paths that compare it with a value seen before
 * without a function call: element 0 is {@linkcode faultCount}. Faults are only ever
 * absorbed on the thread that touches the mapping, so plain reads see them.
 *
 * @returns A one-element view (a constant zero when the guard is not active).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { faultCount, faultCounter } from "./sigbus.ts";
 * const faults = faultCounter();
 * const seen = faults[0];
 * assert.equal(seen, faultCount());
 * ```
 */
export function faultCounter(): Int32Array {
  installGuard();
  return guard ? guard.faults : new Int32Array(1);
}

/**
 * Whether a fault absorbed since `since` (a {@linkcode faultCount} value) hit the given
 * range. When more faults happened than the guard remembers, the answer is true.
 *
 * @param pointer The first byte of the range.
 * @param length Its length.
 * @param since The fault count seen before.
 * @returns True when the range lost a page since then.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { faultCount, faultedIn, guardRange, unguardRange } from "./sigbus.ts";
 * import { closeFd, O, openFd } from "./fs.ts";
 * import { mapShared, truncateFd } from "./mman.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const fd = openFd(`${dir}/words`, O.RDWR | O.CREAT);
 * truncateFd(fd, 4096);
 * const mapping = mapShared(fd, 4096);
 * const slot = guardRange(mapping.pointer, mapping.length);
 * const seen = faultCount();
 * new Uint8Array(mapping.buffer)[0] = 1; // the file is intact: no fault
 * assert.equal(faultedIn(mapping.pointer, mapping.length, seen), false);
 * unguardRange(slot);
 * mapping.unmap();
 * closeFd(fd);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function faultedIn(pointer: Deno.PointerObject, length: number, since: number): boolean {
  if (!guard) return false;
  const now = faultCount();
  const n = (now - since) | 0;
  if (n <= 0) return false;
  if (n > PAGES) return true;
  const lo = Deno.UnsafePointer.value(pointer);
  const hi = lo + BigInt(length);
  for (let k = since; k !== now; k = (k + 1) | 0) {
    const page = guard.data[OFF_PAGES / 8 + (k & (PAGES - 1))]!;
    if (page >= lo && page < hi) return true;
  }
  return false;
}
