/**
 * A guard that keeps SIGBUS from killing the process when a shared file mapping loses pages
 * (another process truncated the file).
 *
 * Touching a page of a `MAP_SHARED` file mapping that lies past the file's end raises SIGBUS,
 * and JavaScript cannot catch signals: without help, any user allowed to truncate a shared
 * ring kills every process that maps it. So this module installs a tiny SIGBUS handler,
 * written in machine code (172 bytes for x86_64, 224 for aarch64), into an executable page
 * of its own:
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
 * in its data page, and is installed once per process, on first use. It reads only the
 * faulting address from the `siginfo_t` (at offset 16 on both architectures), never the
 * machine context, so nothing depends on the `ucontext_t` layout. Where it cannot be
 * installed (another architecture or OS, FFI denied), {@linkcode installGuard} says so and
 * callers fall back to checking the file's size (which leaves a race open; see ring.ts).
 *
 * ## x86_64
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
 * ## aarch64
 *
 * The same handler, with three differences: the data lies 64 KiB after the code (so it
 * has a page of its own whatever the kernel's page size: 4, 16 or 64 KiB), the page size
 * is read from the data (+24, from `/proc/self/auxv`) for the page to map, and the previous
 * handler is entered with `br x16` (a branch that BTI landing pads accept). The kernel's
 * `rt_sigaction` struct differs from x86_64's, but an all-zero one is SIG_DFL on both. The
 * code page is written, then made executable with `mprotect`; Linux on arm64 makes the
 * instruction cache coherent for a page when it first becomes executable for user space
 * (`__sync_icache_dcache`), as for any page a program loader maps.
 *
 * These bytes were assembled with GNU as 2.40 and run under `qemu-aarch64` 7.2 (user mode),
 * from a C program (a guarded fault reads zeros and is counted; an unguarded one goes to the
 * previous handler, or kills with SIGBUS) and with Deno 2.9.6 for aarch64 (this module's
 * examples, and the scenario of `tests/sys/sigbus_test.ts`: a guarded truncated mapping
 * reads zeros and counts two faults, an unguarded one dies of SIGBUS). They have not run on
 * arm64 hardware, nor under a kernel with 16 or 64 KiB pages.
 *
 * ```text
 * h:  ldr x9,[x1,#16] ; adr x10,h+65536 ; ldr x11,[x10] ; mov x12,#0
 * 1:  cmp x12,x11 ; b.hs 3f                       // for each range slot
 *     add x13,x10,x12,lsl #4 ; ldr x14,[x13,#192] ; cmp x9,x14 ; b.lo 2f
 *     ldr x14,[x13,#200] ; cmp x9,x14 ; b.hs 2f
 *     ldr x14,[x10,#24] ; sub x13,x14,#1 ; bic x9,x9,x13     // the page
 *     mov x6,x0 ; mov x7,x1 ; mov x15,x2
 *     mmap(x9, x14, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0)  // x8=222
 *     mov x11,x0 ; mov x0,x6 ; mov x1,x7 ; mov x2,x15 ; cmp x11,x9 ; b.ne 3f
 *     ldr x12,[x10,#8] ; and x12,x12,#15 ; add x13,x10,x12,lsl #3 ; str x9,[x13,#64]
 *     add x13,x10,#8
 * 4:  ldxr x12,[x13] ; add x12,x12,#1 ; stxr w14,x12,[x13] ; cbnz w14,4b ; ret
 * 2:  add x12,x12,#1 ; b 1b
 * 3:  ldr x16,[x10,#16] ; cmp x16,#1 ; b.ls 5f ; br x16          // the previous handler
 * 5:  rt_sigaction(SIGBUS, x10+32 (SIG_DFL), NULL, 8) ; ret      // x8=134
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

const CODE_A64 =
  "290840f9eaff07104b0140f90c0080d29f010beb020500544d110c8bae6140f93f010eeb43040054ae6540f9" +
  "3f010eebe20300544e0d40f9cd0500d129012d8ae60300aae70301aaef0302aae00309aae1030eaa620080d2" +
  "430680d204008092050080d2c81b80d2010000d4eb0300aae00306aae10307aae2030faa7f0109eba1010054" +
  "4c0540f98c0d40924d0d0c8ba92100f94d210091ac7d5fc88c050091ac7d0ec8aeffff35c0035fd68c050091" +
  "d8ffff17500940f91f0600f14900005400021fd6e00080d241810091020080d2030180d2c81080d2010000d4" +
  "c0035fd6";

/** Per architecture: the handler, and how far its data lies after it. */
const HANDLERS: Partial<Record<typeof Deno.build.arch, { code: string; span: number }>> = {
  x86_64: { code: CODE_X64, span: 4096 },
  aarch64: { code: CODE_A64, span: 65536 },
};

/** The data's size (what this module uses of the data page). */
const PAGE = 4096;
const SIGBUS = 7;
const SA_SIGINFO = 4;
const SA_ONSTACK = 0x08000000;
const SA_RESTART = 0x10000000;
const OFF_SLOTS = 0;
const OFF_FAULTS = 8;
const OFF_PREVIOUS = 16;
const OFF_PAGE_SIZE = 24;
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

/** The kernel's page size (AT_PAGESZ in /proc/self/auxv), or undefined when unknown. */
function pageSize(): number | undefined {
  try {
    const auxv = Deno.readFileSync("/proc/self/auxv");
    const v = new DataView(auxv.buffer);
    for (let at = 0; at + 16 <= auxv.length; at += 16) {
      if (v.getBigUint64(at, true) === 6n) return Number(v.getBigUint64(at + 8, true));
    }
  } catch {
    // not readable: unknown
  }
  return undefined;
}

function install(): Guard | null {
  const handler = HANDLERS[Deno.build.arch];
  if (Deno.build.os !== "linux" || handler === undefined) return null;
  const span = handler.span;
  const page = pageSize() ?? 4096;
  if (page > span || span % page !== 0) return null;
  let c;
  try {
    c = libc();
  } catch {
    return null;
  }
  // The code (made read+exec), then its data (read+write), each on pages of their own.
  const base = c.mmap(null, BigInt(2 * span), 0x3, 0x22, -1, 0n);
  if (base === null || Deno.UnsafePointer.value(base) === 0xffffffffffffffffn) return null;
  const pages = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(base, span));
  pages.set(hexBytes(handler.code), 0);
  if (c.mprotect(base, BigInt(span), 0x5) !== 0) {
    c.munmap(base, BigInt(2 * span));
    return null;
  }
  const dataPtr = Deno.UnsafePointer.offset(base, span) as Deno.PointerObject;
  const raw = Deno.UnsafePointerView.getArrayBuffer(dataPtr, PAGE);
  const data = new BigUint64Array(raw);
  data[OFF_PAGE_SIZE / 8] = BigInt(page);
  // struct sigaction (glibc, the same on x86_64 and aarch64): handler @0, mask @8 (128
  // bytes), flags @136, restorer @144.
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
 * @returns Whether the guard is active (false on architectures other than x86_64 and
 *   aarch64, off Linux, or without FFI).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { installGuard } from "./sigbus.ts";
 * // false off x86_64 and aarch64, or without FFI: a truncated mapping would then kill
 * // this process
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
