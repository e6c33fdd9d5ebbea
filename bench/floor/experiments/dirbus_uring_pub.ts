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
import { lib, ptr, Ring } from "./_ring.ts";

const COUNT = Number(Deno.args[0] ?? 30_000);
const ROUNDS = Number(Deno.args[1] ?? 5);

/** One message per enter: a three-entry linked chain, and one registered slot. */
class PublishRing extends Ring {
  readonly name = new Uint8Array(64);

  constructor() {
    super(8);
    // IORING_REGISTER_FILES with one empty slot (-1): the direct descriptor's home.
    const slots = new Int32Array([-1]);
    const r = lib.syscall(427n, BigInt(this.fd), 2n, ptr(new Uint8Array(slots.buffer)), 1n, 0n, 0n);
    if (r < 0) throw new Error("IORING_REGISTER_FILES failed");
    void this.name.buffer;
  }

  #sqe(op: number, fd: number, flags: number): number {
    const at = this.sqe();
    this.sqes.setUint8(at, op);
    this.sqes.setUint8(at + 1, flags);
    this.sqes.setInt32(at + 4, fd, true);
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
    this.enter(1);
    // One completion: the close's, or the first failure's (the rest of the chain cancelled).
    let res = 0;
    this.reap((_, r) => {
      if (r < 0 && res === 0) res = r;
    });
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
