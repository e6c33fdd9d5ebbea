/**
 * EXPERIMENTS' helper: a bare io_uring through FFI for the hand-run experiments of this folder
 * (dirbus_uring_deno.ts, dirbus_uring_pub.ts): set up, zeroed submission entries, one enter,
 * completions reaped. Not the library's (sys/uring.ts): these experiments try operations the
 * library does not make.
 *
 * @module
 */

/** The libc calls the experiments make. */
export const lib = Deno.dlopen("libc.so.6", {
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
}).symbols;
const SYS_SETUP = 425n, SYS_ENTER = 426n;

/** A buffer's address, for the kernel. */
export const ptr = (b: Uint8Array): bigint =>
  BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>)));

/** An io_uring of `entries` submission entries (twice as many completions). */
export class Ring {
  fd: number;
  sqes: DataView;
  sqTail: Uint32Array;
  sqMask: number;
  cqHead: Uint32Array;
  cqTail: Uint32Array;
  cqMask: number;
  cqes: DataView;
  tail = 0;
  pending = 0;
  constructor(entries: number) {
    const p = new Uint8Array(120);
    const pv = new DataView(p.buffer);
    pv.setUint32(8, (1 << 12) | (1 << 13) | (1 << 3), true); // SINGLE_ISSUER|DEFER_TASKRUN|CQSIZE
    pv.setUint32(4, entries * 2, true);
    const fd = Number(lib.syscall(SYS_SETUP, BigInt(entries), ptr(p), 0n, 0n, 0n, 0n));
    if (fd < 0) throw new Error("io_uring_setup failed");
    this.fd = fd;
    const sqOff = (i: number) => pv.getUint32(40 + 4 * i, true);
    const cqOff = (i: number) => pv.getUint32(80 + 4 * i, true);
    const sqEntries = pv.getUint32(0, true), cqEntries = pv.getUint32(4, true);
    const size = Math.max(sqOff(6) + sqEntries * 4, cqOff(5) + cqEntries * 16);
    const m = lib.mmap(null, BigInt(size), 3, 0x1 | 0x8000, fd, 0n)!; // MAP_SHARED|MAP_POPULATE
    const buf = Deno.UnsafePointerView.getArrayBuffer(m, size);
    this.sqTail = new Uint32Array(buf, sqOff(1), 1);
    this.sqMask = new Uint32Array(buf, sqOff(2), 1)[0]!;
    const array = new Uint32Array(buf, sqOff(6), sqEntries);
    for (let i = 0; i < sqEntries; i++) array[i] = i;
    this.cqHead = new Uint32Array(buf, cqOff(0), 1);
    this.cqTail = new Uint32Array(buf, cqOff(1), 1);
    this.cqMask = new Uint32Array(buf, cqOff(2), 1)[0]!;
    this.cqes = new DataView(buf, cqOff(5), cqEntries * 16);
    const s = lib.mmap(null, BigInt(sqEntries * 64), 3, 0x1 | 0x8000, fd, 0x10000000n)!;
    this.sqes = new DataView(Deno.UnsafePointerView.getArrayBuffer(s, sqEntries * 64));
    this.tail = this.sqTail[0]!;
  }
  /** A zeroed SQE's offset. */
  sqe(): number {
    const at = (this.tail & this.sqMask) * 64;
    for (let i = 0; i < 64; i += 8) this.sqes.setBigUint64(at + i, 0n);
    this.tail++;
    this.pending++;
    return at;
  }
  enter(wait: number): void {
    this.sqTail[0] = this.tail;
    while (this.pending > 0 || wait > 0) {
      const n = Number(
        lib.syscall(SYS_ENTER, BigInt(this.fd), BigInt(this.pending), BigInt(wait), 1n, 0n, 0n),
      );
      if (n < 0) throw new Error("io_uring_enter failed");
      this.pending -= n;
      wait = 0;
    }
  }
  /** Calls f(user_data, res) for each completion. */
  reap(f: (ud: number, res: number) => void): void {
    let h = this.cqHead[0]!;
    const t = this.cqTail[0]!;
    for (; h !== t; h = (h + 1) >>> 0) {
      const at = (h & this.cqMask) * 16;
      f(Number(this.cqes.getBigUint64(at, true)), this.cqes.getInt32(at + 8, true));
    }
    this.cqHead[0] = h;
  }
}
