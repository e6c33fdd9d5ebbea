/**
 * The fuzz driver of fanout_fuzz_test.ts, run in its own process so that a crash (SIGBUS) or
 * a hang shows as such: `deno run -A _fanout_fuzz_peer.ts ROOT SEED CASES`.
 *
 * Each case makes a small ring, opens a reader and a writer, damages the file the way
 * another user with write access could (random bytes over the header, the commit counter,
 * the head/tail slots, the lock word, the client table, record lengths; truncation,
 * extension), then runs every reader and writer operation on the rings opened before and
 * after the damage. Each must work or throw an FsbusError. One line per case goes to
 * stdout; any other exception is printed as "BAD ..." and ends the run with exit code 1.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { createTopic, describeTopic, openReader, openWriter } from "../../transports/fanout/mod.ts";
import type { TopicReader, TopicWriter } from "../../transports/fanout/endpoint.ts";

const root = Deno.args[0]!;
const [, seedArg, casesArg] = Deno.args;
let seed = Number(seedArg) >>> 0;
const cases = Number(casesArg);

/** mulberry32: small, seeded, good enough to pick damage. */
function rand(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

const HEADER = 4096;
const SIZE = 4096;
const FULL = HEADER + SIZE + SIZE / 4;
const NASTY_F64 = [NaN, Infinity, -Infinity, -1, 0.5, 2 ** 53, 2 ** 60, 1e300, -0, 4097, 123456];
const NASTY_I32 = [0, 1, -1, 0x7fffffff, -0x80000000, 2, 3];

function pwrite(path: string, at: number, bytes: Uint8Array): void {
  using f = Deno.openSync(path, { write: true });
  f.seekSync(at, Deno.SeekMode.Start);
  f.writeSync(bytes);
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}

function le(kind: "i32" | "f64" | "u64", v: number | bigint): Uint8Array {
  const b = new Uint8Array(kind === "i32" ? 4 : 8);
  const dv = new DataView(b.buffer);
  if (kind === "i32") dv.setInt32(0, Number(v), true);
  else if (kind === "f64") dv.setFloat64(0, Number(v), true);
  else dv.setBigUint64(0, BigInt(v), true);
  return b;
}

function pid1Start(): bigint {
  const stat = Deno.readTextFileSync("/proc/1/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return BigInt(Number(fields[19]) & 0x7fffffff);
}

/** One kind of damage, applied to the ring file; returns its name. */
function damage(path: string): string {
  const kind = int(11);
  switch (kind) {
    case 0: {
      const at = int(HEADER);
      pwrite(path, at, randomBytes(1 + int(16)));
      return `bytes@${at}`;
    }
    case 1:
      pwrite(path, 64, le("i32", rand() < 0.5 ? pick(NASTY_I32) : int(2 ** 32) | 0));
      return "seq";
    case 2: {
      const slot = int(16);
      pwrite(path, 192 + slot * 16 + (rand() < 0.5 ? 0 : 8), le("f64", pick(NASTY_F64)));
      return `slot${slot}`;
    }
    case 3:
      // pid 1 with its real start time: a live owner that will never unlock.
      pwrite(path, 128, le("u64", 1n | (pid1Start() << 32n)));
      return "lock=init";
    case 4:
      pwrite(path, 128, randomBytes(12));
      return "lock=random";
    case 5: {
      const len = int(FULL);
      Deno.truncateSync(path, len);
      return `truncate=${len}`;
    }
    case 6: {
      const len = int(FULL);
      Deno.truncateSync(path, len);
      Deno.truncateSync(path, FULL);
      return `shrink+grow=${len}`;
    }
    case 7:
      Deno.truncateSync(path, FULL + 1 + int(8192));
      return "grow";
    case 8: {
      const at = 16 + 4 * int(4);
      pwrite(path, at, le("i32", pick(NASTY_I32)));
      return `geometry@${at}`;
    }
    case 9:
      pwrite(path, 512 + 8 * int(128), randomBytes(8 * (1 + int(128))).subarray(0, 1024));
      return "clients";
    default: {
      // Record lengths and data.
      const at = HEADER + int(SIZE + SIZE / 4 - 8);
      pwrite(path, at, rand() < 0.5 ? le("i32", pick(NASTY_I32)) : randomBytes(1 + int(64)));
      return `data@${at}`;
    }
  }
}

const outcomes: Record<string, number> = {};
function attempt(what: string, f: () => unknown): void {
  try {
    f();
    outcomes[`${what}:ok`] = (outcomes[`${what}:ok`] ?? 0) + 1;
  } catch (err) {
    if (!(err instanceof FsbusError)) {
      console.log(`BAD ${what}: ${err instanceof Error ? err.stack : String(err)}`);
      Deno.exit(1);
    }
    const key = `${what}:${/truncated while in use/.test(err.message) ? "truncated" : err.code}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }
}

function exercise(r: TopicReader | undefined, w: TopicWriter | undefined): void {
  const payload = randomBytes(1 + int(300));
  if (w) {
    attempt("write", () => w.write(payload));
    attempt("writeBatch", () => w.writeBatch([payload, payload.subarray(0, 5)]));
  }
  if (r) {
    attempt("take", () => r.take());
    attempt("take", () => r.take());
    attempt("waitSync", () => r.waitSync(int(3)));
    attempt("resync", () => r.resync());
    attempt("take", () => r.take());
  }
}

for (let c = 0; c < cases; c++) {
  const name = `f${c}`;
  const messages = rand() < 0.5;
  const path = createTopic(name, { root, size: SIZE, messages });
  const options = { root, lockTimeoutMs: 20 };
  const r = openReader(name, { root, fromOldest: rand() < 0.5 });
  const w = openWriter(name, options);
  for (let i = int(40); i > 0; i--) w.write(randomBytes(1 + int(200)));
  const done: string[] = [];
  for (let round = 1 + int(3); round > 0; round--) {
    done.push(damage(path));
    exercise(r, w);
    let r2: TopicReader | undefined;
    let w2: TopicWriter | undefined;
    attempt("openReader", () => (r2 = openReader(name, { root, fromOldest: rand() < 0.5 })));
    attempt("openWriter", () => (w2 = openWriter(name, options)));
    exercise(r2, w2);
    attempt("describe", () => describeTopic(name, { root }));
    r2?.close();
    w2?.close();
  }
  r.close();
  w.close();
  Deno.removeSync(path);
  console.log(`case ${c} ${messages ? "messages" : "bytes"} ${done.join(",")}`);
}
console.log(`OUTCOMES ${JSON.stringify(outcomes)}`);
