/**
 * EXPERIMENT, run by hand, not part of the bench: a publish as ONE `io_uring_enter` from
 * Deno. Per message, `IORING_OP_OPENAT` (O_CREAT|O_EXCL|O_NOFOLLOW) into a registered-file
 * slot, linked to `IORING_OP_WRITE` on that slot (`IOSQE_FIXED_FILE`) and `IORING_OP_CLOSE` of
 * the slot; the enter waits for the close's completion, so the message is complete when it
 * returns, as `Publisher.publish` guarantees. Alternated round by round with fsbus's
 * `Publisher.publish` (three plain calls), it prints each round's rate and CPU time per
 * message (user + system, every thread: io-wq workers included) and the medians.
 *
 *   deno run -A bench/floor/experiments/dirbus_uring_pub.ts [COUNT] [ROUNDS]
 *
 * It calls libc itself (only `sys/` may, in the module): it is a measurement, kept for the
 * record.
 *
 * @module
 */

import { Publisher } from "../../../transports/msgfs/mod.ts";
import { newId } from "../../../transports/msgfs/names.ts";
import { cpuTimeMs, median } from "../../_lib.ts";

const COUNT = Number(Deno.args[0] ?? 30_000);
const ROUNDS = Number(Deno.args[1] ?? 5);

const lib = Deno.dlopen("libc.so.6", {
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
}).symbols;
const ptr = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));

/** One message per enter: a three-entry linked chain, and one slot. */
class PublishRing {
  readonly fd: number;
  readonly sqes: DataView;
  readonly sqTail: Uint32Array;
  readonly sqMask: number;
  readonly cqHead: Uint32Array;
  readonly cqTail: Uint32Array;
  readonly cqMask: number;
  readonly cqes: DataView;
  readonly name = new Uint8Array(64);
  tail: number;

  constructor() {
    const p = new Uint8Array(120);
    const pv = new DataView(p.buffer);
    pv.setUint32(8, (1 << 12) | (1 << 13), true); // SINGLE_ISSUER | DEFER_TASKRUN
    const fd = Number(lib.syscall(425n, 8n, ptr(p), 0n, 0n, 0n, 0n));
    if (fd < 0) throw new Error("io_uring_setup failed");
    this.fd = fd;
    const sq = (i: number) => pv.getUint32(40 + 4 * i, true);
    const cq = (i: number) => pv.getUint32(80 + 4 * i, true);
    const sqN = pv.getUint32(0, true), cqN = pv.getUint32(4, true);
    const size = Math.max(sq(6) + sqN * 4, cq(5) + cqN * 16);
    const m = lib.mmap(null, BigInt(size), 3, 0x1 | 0x8000, fd, 0n)!;
    const buf = Deno.UnsafePointerView.getArrayBuffer(m, size);
    this.sqTail = new Uint32Array(buf, sq(1), 1);
    this.sqMask = new Uint32Array(buf, sq(2), 1)[0]!;
    const array = new Uint32Array(buf, sq(6), sqN);
    for (let i = 0; i < sqN; i++) array[i] = i;
    this.cqHead = new Uint32Array(buf, cq(0), 1);
    this.cqTail = new Uint32Array(buf, cq(1), 1);
    this.cqMask = new Uint32Array(buf, cq(2), 1)[0]!;
    this.cqes = new DataView(buf, cq(5), cqN * 16);
    const s = lib.mmap(null, BigInt(sqN * 64), 3, 0x1 | 0x8000, fd, 0x10000000n)!;
    this.sqes = new DataView(Deno.UnsafePointerView.getArrayBuffer(s, sqN * 64));
    this.tail = this.sqTail[0]!;
    // IORING_REGISTER_FILES with one empty slot (-1): the direct descriptor's home.
    const slots = new Int32Array([-1]);
    const r = lib.syscall(427n, BigInt(fd), 2n, ptr(new Uint8Array(slots.buffer)), 1n, 0n, 0n);
    if (r < 0) throw new Error("IORING_REGISTER_FILES failed");
    void this.name.buffer;
  }

  #sqe(op: number, fd: number, flags: number): number {
    const at = (this.tail & this.sqMask) * 64;
    for (let i = 0; i < 64; i += 8) this.sqes.setBigUint64(at + i, 0n);
    this.sqes.setUint8(at, op);
    this.sqes.setUint8(at + 1, flags);
    this.sqes.setInt32(at + 4, fd, true);
    this.tail = (this.tail + 1) >>> 0;
    return at;
  }

  /** Creates `name` in `dirfd` holding `data`; returns 0 or a negated errno. */
  publish(dirfd: number, name: string, data: Uint8Array): number {
    for (let i = 0; i < name.length; i++) this.name[i] = name.charCodeAt(i);
    this.name[name.length] = 0;
    const LINK = 1 << 2, FIXED = 1 << 0, SKIP = 1 << 6; // IOSQE_IO_LINK, FIXED_FILE, CQE_SKIP
    let at = this.#sqe(18, dirfd, LINK | SKIP); // OPENAT
    this.sqes.setBigUint64(at + 16, ptr(this.name), true);
    this.sqes.setUint32(at + 24, 0o600, true); // mode
    this.sqes.setUint32(at + 28, 0o1 | 0o100 | 0o200 | 0o400000, true); // WRONLY|CREAT|EXCL|NOFOLLOW
    this.sqes.setUint32(at + 44, 1, true); // file_index: slot 0 + 1
    at = this.#sqe(23, 0, FIXED | LINK | SKIP); // WRITE on slot 0
    this.sqes.setBigUint64(at + 16, ptr(data), true);
    this.sqes.setUint32(at + 24, data.length, true);
    at = this.#sqe(19, 0, 0); // CLOSE of slot 0
    this.sqes.setUint32(at + 44, 1, true);
    this.sqTail[0] = this.tail;
    for (;;) {
      const n = Number(lib.syscall(426n, BigInt(this.fd), 3n, 1n, 1n, 0n, 0n));
      if (n >= 0) break;
    }
    // One completion: the close's, or the first failure's (the rest of the chain cancelled).
    let h = this.cqHead[0]!;
    let res = 0;
    for (const t = this.cqTail[0]!; h !== t; h = (h + 1) >>> 0) {
      const r = this.cqes.getInt32((h & this.cqMask) * 16 + 8, true);
      if (r < 0 && res === 0) res = r;
    }
    this.cqHead[0] = h;
    return res;
  }
}

function round(mode: "fsbus" | "ring", ring: PublishRing): { rate: number; cpuUs: number } {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbt-dirbus9-" });
  const payload = new Uint8Array(1024).fill(7);
  try {
    const pub = new Publisher(dir, { sweep: false });
    const dirfd = lib.open(new TextEncoder().encode(dir + "\0"), 0o200000); // O_DIRECTORY
    const cpu0 = cpuTimeMs();
    const t0 = performance.now();
    if (mode === "fsbus") {
      for (let i = 0; i < COUNT; i++) pub.publish(payload);
    } else {
      for (let i = 0; i < COUNT; i++) {
        const r = ring.publish(dirfd, newId(), payload);
        if (r < 0) throw new Error(`ring publish failed: ${-r}`);
      }
    }
    const rate = COUNT / ((performance.now() - t0) / 1000);
    const cpuUs = (cpuTimeMs() - cpu0) * 1000 / COUNT;
    void pub.close();
    let n = 0;
    for (const _ of Deno.readDirSync(dir)) n++;
    if (n !== COUNT) throw new Error(`${n} files, not ${COUNT}`);
    return { rate, cpuUs };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const ring = new PublishRing();
const got: Record<string, { rate: number; cpuUs: number }[]> = { fsbus: [], ring: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of r % 2 ? ["ring", "fsbus"] as const : ["fsbus", "ring"] as const) {
    const x = round(mode, ring);
    got[mode]!.push(x);
    console.log(`${mode}: ${(x.rate / 1000).toFixed(1)}k msgs/s, ${x.cpuUs.toFixed(1)} µs CPU/msg`);
  }
}
for (const [mode, xs] of Object.entries(got)) {
  console.log(
    `${mode} median: ${(median(xs.map((x) => x.rate)) / 1000).toFixed(1)}k msgs/s, ` +
      `${median(xs.map((x) => x.cpuUs)).toFixed(1)} µs CPU/msg`,
  );
}
