/**
 * EXPERIMENT, not part of the bench: where the directory bus's latency at a low rate goes.
 * Publishers and subscribers are paired across three implementations and alternated:
 *
 * - `c`: the floor program (bench/floor/dirbus.c),
 * - `raw`: the floor's system calls made from Deno through FFI, nothing else (poll, read the
 *   inotify queue, openat, statx, read, close; openat, write, close),
 * - `ring`: as `raw`, the wait and the read of the inotify queue one `io_uring_enter` (a
 *   subscriber only),
 * - `fsbus`: `subscribe(dir, { blockMs: 250 })` and `Publisher.publish`, as the bench runs them.
 *
 * The fsbus subscriber also records when its `poll(2)` returned (the wait is wrapped), so that
 * its latency splits into "until woken" and "woken to delivered".
 *
 *   deno run -A bench/floor/experiments/dirbus_wake.ts [PAIRS] [ROUNDS] [COUNT] [RATE]
 *   PAIRS: comma-separated pub>sub, e.g. c>c,c>raw,c>fsbus,raw>c,fsbus>c (the default)
 *   STAGES=1: the fsbus subscriber's libc calls are wrapped to stamp the time after each (read
 *   of the queue, openat, statx, read, close): slower, but it says where the time goes.
 *
 * It calls libc itself (only `sys/` may, in the module): it is a measurement, kept for the
 * record.
 *
 * @module
 */

import { floorBinary } from "../../_floor.ts";
import { cpuTimeMs, paced, readStamp, roleArgs, stamp } from "../../_lib.ts";
import { monotonicNs } from "../../../sys/clock.ts";
import { Inotify } from "../../../sys/inotify.ts";
import * as msgfs from "../../../transports/msgfs/mod.ts";
import { libc } from "../../../sys/libc.ts";

const SELF = new URL(import.meta.url).pathname;
const WARMUP = 200;

const lib = Deno.dlopen("libc.so.6", {
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
}).symbols;
const enc = new TextEncoder();
const cstr = (s: string) => enc.encode(s + "\0");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function report(lat: number[], extra: Record<string, number> = {}): void {
  console.log(JSON.stringify({ p50: median(lat), n: lat.length, ...extra }));
}

/** Latencies of one subscriber: to its consumer, to its wake-up, and from one to the other. */
interface Samples {
  lat: number[];
  wokeAt: number[];
  after: number[];
}

const stx = new Uint8Array(256);
const fileBuf = new Uint8Array(1 << 20);
const dec = new TextDecoder();

/**
 * The floor's work after a wake-up, through raw FFI: for each inotify event in `events`, open
 * the file in `dirfd`, statx it, read it, close it, and record its latencies (`woke`: when
 * the wait returned). Returns how many messages it read.
 */
function takeEvents(events: Uint8Array, dirfd: number, woke: bigint, s: Samples): number {
  const evv = new DataView(events.buffer, events.byteOffset, events.length);
  let got = 0;
  for (let off = 0; off < events.length;) {
    const len = evv.getUint32(off + 12, true);
    let end = off + 16;
    while (end < off + 16 + len && events[end] !== 0) end++;
    const name = dec.decode(events.subarray(off + 16, end));
    off += 16 + len;
    const fd = lib.openat(dirfd, cstr(name), 0o400000 | 0o4000 | 0o400 | 0o2000000, 0);
    if (fd < 0) continue;
    lib.statx(fd, new Uint8Array([0]), 0x1000, 0x7ff, stx);
    const size = Number(new DataView(stx.buffer).getBigUint64(40, true));
    const r = Number(lib.read(fd, fileBuf, BigInt(size)));
    lib.close(fd);
    const now = monotonicNs();
    if (r < 16) continue;
    const { sentNs, seq } = readStamp(fileBuf.subarray(0, r));
    got++;
    if (seq >= WARMUP) {
      s.lat.push(Number(now - sentNs) / 1000);
      s.wokeAt.push(Number(woke - sentNs) / 1000);
      s.after.push(Number(now - woke) / 1000);
    }
  }
  return got;
}

function subRaw(dir: string, count: number): void {
  const ino = lib.inotify_init1(0o4000 | 0o2000000);
  const dirfd = lib.open(cstr(dir), 0o200000, 0);
  lib.inotify_add_watch(ino, cstr(dir), 0x8 | 0x80);
  console.log("ready");
  const pfd = new Uint8Array(8);
  const pv = new DataView(pfd.buffer);
  pv.setInt32(0, ino, true);
  pv.setInt16(4, 1, true);
  const ev = new Uint8Array(65536);
  const samples: Samples = { lat: [], wokeAt: [], after: [] };
  let got = 0;
  while (got < count) {
    if (lib.poll(pfd, 1n, 10_000) <= 0) break;
    const woke = monotonicNs();
    const n = Number(lib.read(ino, ev, 65536n));
    got += takeEvents(ev.subarray(0, n), dirfd, woke, samples);
  }
  report(samples.lat, { woken: median(samples.wokeAt), after: median(samples.after) });
}

/**
 * `ring`: as `raw`, but the wait and the read of the inotify queue are one `io_uring_enter`
 * (a read queued on the inotify descriptor, completed in this thread when an event comes):
 * one system call fewer per wake-up than poll + read.
 */
function subRing(dir: string, count: number): void {
  const ino = lib.inotify_init1(0o4000 | 0o2000000);
  const dirfd = lib.open(cstr(dir), 0o200000, 0);
  lib.inotify_add_watch(ino, cstr(dir), 0x8 | 0x80);
  const p = new Uint8Array(120);
  const pv = new DataView(p.buffer);
  pv.setUint32(8, (1 << 12) | (1 << 13), true); // SINGLE_ISSUER | DEFER_TASKRUN
  const ptr = (b: Uint8Array) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  const fd = Number(lib.syscall(425n, 4n, ptr(p), 0n, 0n, 0n, 0n));
  if (fd < 0) throw new Error("io_uring_setup failed");
  const sqOff = (i: number) => pv.getUint32(40 + 4 * i, true);
  const cqOff = (i: number) => pv.getUint32(80 + 4 * i, true);
  const sqEntries = pv.getUint32(0, true), cqEntries = pv.getUint32(4, true);
  const size = Math.max(sqOff(6) + sqEntries * 4, cqOff(5) + cqEntries * 16);
  const m = lib.mmap(null, BigInt(size), 3, 0x1 | 0x8000, fd, 0n)!;
  const rings = Deno.UnsafePointerView.getArrayBuffer(m, size);
  const sqTail = new Uint32Array(rings, sqOff(1), 1);
  const sqMask = new Uint32Array(rings, sqOff(2), 1)[0]!;
  const array = new Uint32Array(rings, sqOff(6), sqEntries);
  for (let i = 0; i < sqEntries; i++) array[i] = i;
  const cqHead = new Uint32Array(rings, cqOff(0), 1);
  const cqTail = new Uint32Array(rings, cqOff(1), 1);
  const cqMask = new Uint32Array(rings, cqOff(2), 1)[0]!;
  const cqes = new DataView(rings, cqOff(5), cqEntries * 16);
  const sm = lib.mmap(null, BigInt(sqEntries * 64), 3, 0x1 | 0x8000, fd, 0x10000000n)!;
  const sqes = new DataView(Deno.UnsafePointerView.getArrayBuffer(sm, sqEntries * 64));
  let tail = sqTail[0]!;
  const ev = new Uint8Array(65536);
  const evAddr = ptr(ev);
  const queueRead = () => {
    const at = (tail & sqMask) * 64;
    for (let i = 0; i < 64; i += 8) sqes.setBigUint64(at + i, 0n);
    sqes.setUint8(at, 22); // IORING_OP_READ
    sqes.setInt32(at + 4, ino, true);
    sqes.setBigInt64(at + 8, -1n, true);
    sqes.setBigUint64(at + 16, evAddr, true);
    sqes.setUint32(at + 24, ev.length, true);
    tail = (tail + 1) >>> 0;
    sqTail[0] = tail;
  };
  console.log("ready");
  const samples: Samples = { lat: [], wokeAt: [], after: [] };
  let got = 0;
  queueRead();
  let toSubmit = 1n;
  while (got < count) {
    // Submit the read (when new) and wait for a completion: one system call.
    if (Number(lib.syscall(426n, BigInt(fd), toSubmit, 1n, 1n, 0n, 0n)) < 0) break;
    toSubmit = 0n;
    const woke = monotonicNs();
    let n = 0;
    let h = cqHead[0]!;
    for (; h !== cqTail[0]!; h = (h + 1) >>> 0) n = cqes.getInt32((h & cqMask) * 16 + 8, true);
    cqHead[0] = h;
    if (n <= 0) break;
    got += takeEvents(ev.subarray(0, n), dirfd, woke, samples);
    queueRead();
    toSubmit = 1n;
  }
  report(samples.lat, { woken: median(samples.wokeAt), after: median(samples.after) });
}

async function subFsbus(dir: string, count: number): Promise<void> {
  let wokeNs = 0n;
  const proto = Inotify.prototype as unknown as { waitSync(ms: number): string };
  const orig = proto.waitSync;
  proto.waitSync = function (this: unknown, ms: number) {
    const r = orig.call(this, ms);
    wokeNs = monotonicNs();
    return r;
  };
  // Stamps after each system call of the wake path (the symbols are wrapped).
  const L = libc() as unknown as Record<string, (...a: unknown[]) => unknown>;
  const marks: Record<string, bigint> = {};
  const sums: Record<string, number[]> = {};
  for (
    const [sym, tag] of [["read", "read"], ["openat", "openat"], ["statx", "statx"], [
      "close",
      "close",
    ], ["close_range", "close"]] as const
  ) {
    const f = L[sym];
    if (typeof f !== "function" || Deno.env.get("STAGES") !== "1") continue;
    L[sym] = (...a: unknown[]) => {
      const r = f(...a);
      const k = tag === "read" && marks.openat !== undefined && marks.read0 !== undefined
        ? "readf"
        : tag === "read"
        ? "read0"
        : tag;
      marks[k] = monotonicNs();
      return r;
    };
  }
  const cpu0 = cpuTimeMs();
  const sub = msgfs.subscribe(dir, { blockMs: 250 });
  const it = sub[Symbol.asyncIterator]();
  let next = it.next();
  console.log("ready");
  const lat: number[] = [], untilWoken: number[] = [], after: number[] = [];
  let got = 0;
  const timer = setTimeout(() => void sub.close(), 30_000);
  for (;;) {
    const r = await next;
    if (r.done) break;
    const now = monotonicNs();
    const { sentNs, seq } = readStamp(r.value.data);
    got++;
    if (seq >= WARMUP) {
      lat.push(Number(now - sentNs) / 1000);
      untilWoken.push(Number(wokeNs - sentNs) / 1000);
      after.push(Number(now - wokeNs) / 1000);
      let prev = wokeNs;
      for (const k of ["read0", "openat", "statx", "readf", "close"]) {
        const t = marks[k];
        if (t === undefined || t < wokeNs) continue;
        (sums[k] ??= []).push(Number(t - prev) / 1000);
        prev = t;
      }
      (sums.js ??= []).push(Number(now - prev) / 1000);
    }
    for (const k in marks) delete marks[k];
    if (got >= count) break;
    next = it.next();
  }
  clearTimeout(timer);
  await sub.close();
  const stages: Record<string, number> = {};
  for (const k in sums) stages[k] = median(sums[k]!);
  const cpuUs = (cpuTimeMs() - cpu0) * 1000 / got;
  report(lat, { woken: median(untilWoken), after: median(after), cpuUs, ...stages });
}

async function pubRaw(dir: string, count: number, rate: number): Promise<void> {
  const dirfd = lib.open(cstr(dir), 0o200000, 0);
  const payload = new Uint8Array(1024);
  await paced(rate, count, (seq, at) => {
    stamp(payload, seq, at);
    const s = seq.toString(16).padStart(12, "0");
    const name = cstr(`00000000-0000-0000-0000-${s}`);
    const fd = lib.openat(dirfd, name, 1 | 0o100 | 0o200 | 0o400000 | 0o2000000, 0o600);
    lib.write(fd, payload, 1024n);
    lib.close(fd);
  }, { yieldEvery: 1000 });
  console.log("{}");
}

async function pubFsbus(dir: string, count: number, rate: number): Promise<void> {
  const pub = new msgfs.Publisher(dir, { sweep: false });
  const payload = new Uint8Array(1024);
  await paced(rate, count, (seq, at) => {
    stamp(payload, seq, at);
    pub.publish(payload);
  }, { yieldEvery: 1000 });
  await pub.close();
  console.log("{}");
}

async function lines(stream: ReadableStream<Uint8Array>, out: string[]): Promise<void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      out.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
}

function spawn(
  kind: string,
  role: "pub" | "sub",
  dir: string,
  count: number,
  rate: number,
  c: string,
) {
  const args = kind === "c"
    ? [
      "--role",
      role,
      "--path",
      dir,
      "--count",
      `${count}`,
      "--size",
      "1024",
      "--rate",
      `${rate}`,
      "--warmup",
      `${WARMUP}`,
    ]
    : [
      "run",
      "-A",
      SELF,
      "--role",
      role,
      "--kind",
      kind,
      "--dir",
      dir,
      "--count",
      `${count}`,
      "--rate",
      `${rate}`,
    ];
  const child = new Deno.Command(kind === "c" ? c : Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const out: string[] = [];
  const done = lines(child.stdout, out);
  return { child, out, done };
}

async function pair(pk: string, sk: string, count: number, rate: number, c: string) {
  const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-wake-" });
  try {
    const sub = spawn(sk, "sub", dir, count, rate, c);
    while (sub.out.length === 0) await new Promise((r) => setTimeout(r, 20));
    const pub = spawn(pk, "pub", dir, count, rate, c);
    await pub.child.status;
    await pub.done;
    await sub.child.status;
    await sub.done;
    const j = JSON.parse(sub.out[sub.out.length - 1]!);
    if (sk === "c") {
      // lat_hist: [[us, n], ...] sorted.
      const hist: [number, number][] = j.lat_hist;
      const total = hist.reduce((a, [, n]) => a + n, 0);
      let acc = 0;
      for (const [us, n] of hist) {
        acc += n;
        if (acc * 2 >= total) return { p50: us };
      }
    }
    return j;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const a = roleArgs();
if (a.role === "sub") {
  if (a.kind === "raw") subRaw(a.dir!, Number(a.count));
  else if (a.kind === "ring") subRing(a.dir!, Number(a.count));
  else await subFsbus(a.dir!, Number(a.count));
} else if (a.role === "pub") {
  if (a.kind === "raw") await pubRaw(a.dir!, Number(a.count), Number(a.rate));
  else await pubFsbus(a.dir!, Number(a.count), Number(a.rate));
} else {
  const pairs = (Deno.args[0] ?? "c>c,c>raw,c>fsbus,raw>c,fsbus>c").split(",");
  const rounds = Number(Deno.args[1] ?? 3);
  const count = Number(Deno.args[2] ?? 3000);
  const rate = Number(Deno.args[3] ?? 1000);
  const c = (await floorBinary("dirbus"))!;
  const got: Record<string, Record<string, number>[]> = {};
  for (let r = 0; r < rounds; r++) {
    for (const p of pairs) {
      const [pk, sk] = p.split(">");
      const res = await pair(pk!, sk!, count, rate, c);
      (got[p] ??= []).push(res);
      console.log(`round ${r} ${p}: ${JSON.stringify(res)}`);
    }
  }
  const load = Deno.readTextFileSync("/proc/loadavg").split(" ")[0];
  console.log(`medians over ${rounds} rounds, ${count} msgs at ${rate}/s, load ${load}:`);
  for (const p of pairs) {
    const rs = got[p]!;
    const keys = Object.keys(rs[0]!).filter((k) => k !== "n");
    console.log(
      `  ${p.padEnd(12)} ` +
        keys.map((k) => `${k} ${median(rs.map((x) => x[k]!)).toFixed(1)}`).join("  "),
    );
  }
}
