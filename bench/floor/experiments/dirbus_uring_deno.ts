/**
 * EXPERIMENT, not part of the bench: the subscriber's per-file reading from Deno, through the
 * real `MessageFiles.read` (openat + statx + read, closes batched) against io_uring batches
 * driven through FFI (as ./dirbus_uring.c's ring3 and ring2 modes). It reads the same COUNT
 * files of a directory again and again, the modes alternated, and prints the median CPU time
 * (user and system, every thread: io-wq workers included) per file.
 *
 *   deno run -A bench/floor/experiments/dirbus_uring_deno.ts [COUNT] [ROUNDS]
 *
 * It calls libc itself (only `sys/` may, in the module): it is a measurement, kept for the
 * record.
 *
 * @module
 */

import process from "node:process";
import { MessageFiles, READ_BATCH, type ReadOutcome } from "../../../transports/msgfs/read.ts";
import { openDir } from "../../../sys/dirfd.ts";
import { closeFd } from "../../../sys/fs.ts";
import { lib, ptr, Ring } from "./_ring.ts";

const COUNT = Number(Deno.args[0] ?? 16000);
const ROUNDS = Number(Deno.args[1] ?? 5);
const BATCH = 1000;

const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbt-uring6-" });
const payload = new Uint8Array(1024).fill(7);
const names: string[] = [];
const hex = (v: number, w: number) => v.toString(16).padStart(w, "0");
for (let i = 0; i < COUNT; i++) {
  // ../dirbus.c's names: FRESH=c has its publisher write them
  names.push(`${hex(Math.floor(i / 65536), 8)}-${hex(i & 0xffff, 4)}-0000-0000-${hex(i, 12)}`);
}
/** Writes every file anew (FRESH=1: before each mode's run, as a publisher would). */
function writeAll(): void {
  if (Deno.env.get("FRESH") === "c") {
    for (const e of Deno.readDirSync(dir)) Deno.removeSync(`${dir}/${e.name}`);
    const args = ["--role", "pub", "--path", dir, "--count", String(COUNT), "--size", "1024"];
    if (!new Deno.Command("/tmp/dirbus_floor", { args, stdout: "null" }).outputSync().success) {
      throw new Error("the C publisher failed");
    }
    return;
  }
  for (const name of names) {
    try {
      Deno.removeSync(`${dir}/${name}`);
    } catch { /* the first time */ }
    Deno.writeFileSync(`${dir}/${name}`, payload);
  }
}
writeAll();
// WATCH=1: an inotify watch on the directory meanwhile (another process's), as a subscription has.
const watcher = Deno.env.get("WATCH") === "1"
  ? new Deno.Command("inotifywait", {
    args: ["-q", "-m", "-e", "close_write,moved_to", dir],
    stdout: "null",
    stderr: "null",
  }).spawn()
  : undefined;
const FRESH = Deno.env.get("FRESH") !== undefined;
const bus = openDir(dir);

// C strings of every name, in one buffer.
const enc = new TextEncoder();
const cnames = new Uint8Array(COUNT * 40);
for (let i = 0; i < COUNT; i++) enc.encodeInto(names[i]!, cnames.subarray(i * 40));
const cnamesAt = ptr(cnames);
// Off the V8 heap (typed arrays of 64 bytes or less live on it, and move): its address is kept.
const empty = new Uint8Array(4096);
const emptyAt = ptr(empty);
const statBuf = new Uint8Array(BATCH * 256);
const statAt = ptr(statBuf);
const statView = new DataView(statBuf.buffer);

function plain(): number {
  const files = new MessageFiles(true);
  let got = 0;
  for (let i = 0; i < COUNT; i++) {
    const r = files.read(bus, names[i]!, "", 1 << 20);
    if (r?.ok && r.data.length === 1024) got++;
  }
  files.flush();
  return got;
}

let pool = new Uint8Array(0);
let poolAt = 0;
function space(size: number): Uint8Array {
  if (poolAt + size + 1 > pool.length) {
    pool = new Uint8Array(64 * 1024);
    poolAt = 0;
  }
  const at = poolAt;
  poolAt = (at + size + 8) & ~7;
  return pool.subarray(at, at + size + 1);
}

const ring = new Ring(4096);
const fds = new Int32Array(BATCH);
const sizes = new Int32Array(BATCH);
const OFLAGS = 0o0 | 0o400000 | 0o4000 | 0o400 | 0o2000000; // RDONLY|NOFOLLOW|NONBLOCK|NOCTTY|CLOEXEC

function viaRing(statxInRing: boolean): number {
  // The kernel reads the names through cnamesAt: cnames must stay alive (a collected buffer
  // made openat fail with EFAULT).
  if (cnames.length !== COUNT * 40) throw new Error("unreachable");
  let got = 0;
  const bufs: Uint8Array[] = new Array(BATCH);
  for (let base = 0; base < COUNT; base += BATCH) {
    const n = Math.min(BATCH, COUNT - base);
    for (let i = 0; i < n; i++) {
      const s = ring.sqe();
      ring.sqes.setUint8(s, 18); // OPENAT
      ring.sqes.setInt32(s + 4, bus, true);
      ring.sqes.setBigUint64(s + 16, cnamesAt + BigInt((base + i) * 40), true);
      ring.sqes.setUint32(s + 28, OFLAGS, true);
      ring.sqes.setBigUint64(s + 32, BigInt(i), true);
    }
    ring.enter(n);
    ring.reap((ud, res) => (fds[ud] = res));
    if (statxInRing) {
      let want = 0;
      for (let i = 0; i < n; i++) {
        if (fds[i]! < 0) continue;
        const s = ring.sqe();
        ring.sqes.setUint8(s, 21); // STATX
        ring.sqes.setInt32(s + 4, fds[i]!, true);
        ring.sqes.setBigUint64(s + 8, statAt + BigInt(i * 256), true);
        ring.sqes.setBigUint64(s + 16, emptyAt, true);
        ring.sqes.setUint32(s + 24, 0x7ff, true);
        ring.sqes.setUint32(s + 28, 0x1000, true); // AT_EMPTY_PATH
        ring.sqes.setBigUint64(s + 32, BigInt(i), true);
        want++;
      }
      ring.enter(want);
      ring.reap((ud, res) => {
        if (res < 0) statView.setUint16(ud * 256 + 28, 0, true);
      });
    } else {
      for (let i = 0; i < n; i++) {
        if (fds[i]! < 0) continue;
        if (lib.statx(fds[i]!, empty, 0x1000, 0x7ff, statBuf.subarray(i * 256)) < 0) {
          statView.setUint16(i * 256 + 28, 0, true);
        }
      }
    }
    let want = 0;
    for (let i = 0; i < n; i++) {
      sizes[i] = -1;
      if (fds[i]! < 0) continue;
      const mode = statView.getUint16(i * 256 + 28, true);
      const nlink = statView.getUint32(i * 256 + 16, true);
      const size = statView.getUint32(i * 256 + 40, true);
      if ((mode & 0o170000) === 0o100000 && nlink > 0 && size <= 4096) {
        const b = space(size);
        bufs[i] = b;
        const s = ring.sqe();
        ring.sqes.setUint8(s, 22); // READ
        ring.sqes.setInt32(s + 4, fds[i]!, true);
        ring.sqes.setBigUint64(s + 16, ptr(b), true);
        ring.sqes.setUint32(s + 24, size + 1, true);
        ring.sqes.setBigUint64(s + 32, BigInt(i), true);
        want++;
      }
      const s = ring.sqe();
      ring.sqes.setUint8(s, 19); // CLOSE
      ring.sqes.setUint8(s + 1, 1 << 6); // CQE_SKIP_SUCCESS
      ring.sqes.setInt32(s + 4, fds[i]!, true);
      ring.sqes.setBigUint64(s + 32, 0xffffn, true);
    }
    ring.enter(want);
    ring.reap((ud, res) => {
      if (ud < BATCH) sizes[ud] = res;
    });
    for (let i = 0; i < n; i++) if (sizes[i] === 1024 && bufs[i]!.length === 1025) got++;
  }
  return got;
}

const many = new MessageFiles(true);
function readMany(): number {
  let got = 0;
  const out: (ReadOutcome | undefined)[] = [];
  const fds = new Array(READ_BATCH).fill(bus);
  for (let base = 0; base < COUNT; base += READ_BATCH) {
    const n = Math.min(READ_BATCH, COUNT - base);
    many.readMany(fds, names.slice(base, base + n), n, 1 << 20, out);
    for (let i = 0; i < n; i++) {
      const r = out[i];
      if (r?.ok && r.data.length === 1024) got++;
    }
  }
  return got;
}

const modes: Record<string, () => number> = {
  plain,
  readMany,
  ring3: () => viaRing(true),
  ring2: () => viaRing(false),
};
const cpu: Record<string, { user: number[]; sys: number[] }> = {};
for (let r = 0; r < ROUNDS + 1; r++) {
  for (const [name, f] of Object.entries(modes)) {
    if (FRESH) writeAll();
    const c0 = process.cpuUsage();
    const got = f();
    const c = process.cpuUsage(c0);
    if (got !== COUNT) {
      throw new Error(`${name}: ${got} of ${COUNT}`);
    }
    if (r === 0) continue; // warm-up round
    (cpu[name] ??= { user: [], sys: [] }).user.push(c.user / COUNT);
    cpu[name]!.sys.push(c.system / COUNT);
  }
}
const med = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
console.log(`load ${Deno.loadavg().join(" ")}; ${COUNT} files x ${ROUNDS} rounds, µs per file:`);
for (const [name, c] of Object.entries(cpu)) {
  const tot = c.user.map((u, i) => u + c.sys[i]!);
  console.log(
    `${name.padEnd(6)} user ${med(c.user).toFixed(2)} sys ${med(c.sys).toFixed(2)} ` +
      `total ${med(tot).toFixed(2)}`,
  );
}
if (watcher) {
  watcher.kill();
  await watcher.status;
}
closeFd(bus);
Deno.removeSync(dir, { recursive: true });
