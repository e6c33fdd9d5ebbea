/**
 * Shared pieces of the benchmark harness (see ../shared/BENCHMARKS.md): one clock across
 * processes, stamped payloads, open-loop pacing, CPU time from /proc, percentiles, and the
 * result record every scenario produces.
 *
 * @module
 */

import { monotonicNs } from "../sys/clock.ts";
import { yieldTurn } from "../sys/poll.ts";

export { monotonicNs };

/** One measured point: a scenario, its parameters, and what was observed. */
export interface Result {
  /** The transport or peer measured, such as "msgfs", "nats", "fifo". */
  transport: string;
  /** What was measured, such as "latency", "throughput", "replay". */
  scenario: string;
  /** Payload size in bytes. */
  size: number;
  /** Offered rate in messages per second, or 0 for unpaced. */
  rate: number;
  /** Number of subscriber processes. */
  subscribers: number;
  /** The file system, such as "tmpfs" or "ext4" ("" when none is involved). */
  fs: string;
  /** Latency percentiles in microseconds (absent for throughput-only points). */
  p50_us?: number;
  p90_us?: number;
  p99_us?: number;
  p999_us?: number;
  max_us?: number;
  /** Messages delivered (summed over subscribers) and expected. */
  delivered: number;
  expected: number;
  /** Duplicates and per-publisher order violations seen by subscribers. */
  duplicates: number;
  order_violations: number;
  /** Publisher and subscriber rates, messages per second. */
  pub_rate?: number;
  sub_rate?: number;
  /** CPU time (user + system) per message, microseconds, summed over the processes. */
  cpu_us_per_msg?: number;
  /** fsbus ÷ the C floor of the same point, in the same run (see _floor.ts). */
  vs_floor?: Ratios;
  /** fsbus ÷ the peer (NATS, ZeroMQ, ...) of the same point, in the same run. */
  vs_peer?: Ratios;
  /** Anything else worth keeping. */
  notes?: string;
}

/** fsbus ÷ another result of the same point: above 1 is slower (latency) or costlier (CPU);
 * for rates, below 1 is slower. */
export interface Ratios {
  /** The other result's transport. */
  of: string;
  /** p50 latency ratio. */
  p50?: number;
  /** p99 latency ratio. */
  p99?: number;
  /** Rate ratio (subscribers' rate when both have one, else publishers'). */
  rate?: number;
  /** CPU time per message ratio. */
  cpu?: number;
}

/**
 * Writes the send time (CLOCK_MONOTONIC ns) and a sequence number into the first 16 bytes.
 *
 * @param payload The payload, at least 16 bytes.
 * @param seq The per-publisher sequence number.
 * @param sentNs The time to record (the scheduled send time for paced runs).
 */
export function stamp(payload: Uint8Array, seq: number, sentNs: bigint): void {
  const view = new DataView(payload.buffer, payload.byteOffset, 16);
  view.setBigUint64(0, sentNs, true);
  view.setBigUint64(8, BigInt(seq), true);
}

/**
 * Reads what {@linkcode stamp} wrote.
 *
 * @param payload The received payload.
 * @returns The send time and sequence number.
 */
export function readStamp(payload: Uint8Array): { sentNs: bigint; seq: number } {
  const view = new DataView(payload.buffer, payload.byteOffset, 16);
  return { sentNs: view.getBigUint64(0, true), seq: Number(view.getBigUint64(8, true)) };
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Waits until the monotonic clock reaches `due`: a timer for the long part, a blocking wait
 * (Atomics.wait) to within `spinMs` (the kernel's timer slack is 50 µs), then a short spin,
 * so that sends leave on time and the stamp is the real send time. */
async function until(due: bigint, spinMs: number): Promise<void> {
  let left = Number(due - monotonicNs()) / 1e6;
  if (left > 2) await new Promise((r) => setTimeout(r, Math.floor(left - 1.5)));
  left = Number(due - monotonicNs()) / 1e6;
  if (left > spinMs) Atomics.wait(sleeper, 0, 0, left - spinMs);
  while (monotonicNs() < due) {
    // spin for the last stretch
  }
}

/**
 * Sends `count` messages at `rate` per second, open loop: each message is stamped with its
 * scheduled time, so a late send (a stall, a GC pause) shows up as latency. The wait before
 * each send is precise (a timer, then a short blocking wait), and after each send the event
 * loop gets a turn so socket-based peers can flush. With `rate` 0, sends as fast as possible,
 * yielding every 1,000 messages.
 *
 * @param rate Messages per second, or 0 for unpaced.
 * @param count How many to send.
 * @param send Called with the sequence number and the scheduled send time.
 * @param options `yieldEvery`: give the event loop a turn after this many sends (default 1
 *   when paced, 1,000 when unpaced).
 */
export async function paced(
  rate: number,
  count: number,
  send: (seq: number, scheduledNs: bigint) => void,
  options: { yieldEvery?: number } = {},
): Promise<void> {
  if (rate <= 0) {
    const every = options.yieldEvery ?? 1000;
    for (let i = 0; i < count; i++) {
      send(i, monotonicNs());
      if (i % every === every - 1) await yieldTurn();
    }
    return;
  }
  const every = options.yieldEvery ?? 1;
  const intervalNs = BigInt(Math.round(1e9 / rate));
  // Spin at most a quarter of the interval (150 µs at most), so that a fast paced sender does
  // not take a whole core from the receivers on a small machine.
  const spinMs = Math.min(0.15, 250 / rate);
  const start = monotonicNs() + 1_000_000n;
  for (let i = 0; i < count; i++) {
    const due = start + BigInt(i) * intervalNs;
    await until(due, spinMs);
    send(i, due);
    if (i % every === every - 1) await yieldTurn();
  }
}

/**
 * CPU time (user + system) of a process so far, in milliseconds, from /proc/PID/stat.
 *
 * @param pid The process id (default: this process).
 * @returns Milliseconds of CPU time, or NaN when the process is gone.
 */
export function cpuTimeMs(pid: number = Deno.pid): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks * 10; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * The machine's 1-minute load average, from /proc/loadavg (for the record beside results).
 *
 * @returns The load average, or NaN where /proc is not readable.
 */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/**
 * Latency percentiles of a set of samples.
 *
 * @param samplesUs The samples in microseconds (sorted in place).
 * @returns p50, p90, p99, p99.9 and max, rounded to 0.1 µs.
 */
export function percentiles(
  samplesUs: number[] | Float64Array,
): Pick<Result, "p50_us" | "p90_us" | "p99_us" | "p999_us" | "max_us"> {
  const s = Float64Array.from(samplesUs).sort();
  const at = (q: number) => round1(s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN);
  return {
    p50_us: at(0.5),
    p90_us: at(0.9),
    p99_us: at(0.99),
    p999_us: at(0.999),
    max_us: round1(s[s.length - 1] ?? NaN),
  };
}

/**
 * The median of some numbers.
 *
 * @param xs The numbers.
 * @returns The median (NaN for none).
 */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/**
 * Counts what a subscriber saw against what one publisher sent: per-publisher order
 * violations and duplicates, from the sequence numbers in arrival order.
 *
 * @param seqs Sequence numbers in arrival order.
 * @returns Duplicates, order violations and distinct messages.
 */
export function checkSequence(
  seqs: number[],
): { duplicates: number; order: number; distinct: number } {
  const seen = new Set<number>();
  let duplicates = 0;
  let order = 0;
  let last = -1;
  for (const s of seqs) {
    if (seen.has(s)) duplicates++;
    else seen.add(s);
    if (s < last) order++;
    last = s;
  }
  return { duplicates, order, distinct: seen.size };
}

/**
 * Waits until `cond()` is true, polling every few milliseconds, or throws after `timeoutMs`.
 *
 * @param cond The condition.
 * @param timeoutMs The deadline.
 * @param what What is awaited, for the error message.
 */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Formats one result as a table row.
 *
 * @param r The result.
 * @returns The row.
 */
export function row(r: Result): string {
  const f = (x: number | undefined) => (x === undefined ? "-" : String(x));
  return [
    r.transport.padEnd(11),
    r.scenario.padEnd(12),
    `${r.size}B`.padStart(6),
    (r.rate ? `${r.rate}/s` : "unpaced").padStart(8),
    `N=${r.subscribers}`.padStart(4),
    (r.fs || "-").padStart(5),
    `p50 ${f(r.p50_us)}`.padStart(10),
    `p99 ${f(r.p99_us)}`.padStart(11),
    `max ${f(r.max_us)}`.padStart(12),
    `${r.delivered}/${r.expected}`.padStart(14),
    `dup ${r.duplicates} ord ${r.order_violations}`,
    `pub ${f(r.pub_rate)}/s sub ${f(r.sub_rate)}/s`,
    `cpu ${f(r.cpu_us_per_msg)} µs/msg`,
    r.vs_floor ? `÷floor ${fmtRatios(r.vs_floor)}` : "",
    r.vs_peer ? `÷${r.vs_peer.of} ${fmtRatios(r.vs_peer)}` : "",
    r.notes ?? "",
  ].join("  ");
}

function fmtRatios(x: Ratios): string {
  return (["p50", "p99", "rate", "cpu"] as const)
    .filter((k) => x[k] !== undefined)
    .map((k) => `${k} ${x[k]}×`)
    .join(" ");
}

/**
 * Starts one role of a benchmark script in its own process: `deno run -A SCRIPT --role ROLE
 * --KEY VALUE ...`, with stdout piped (roles report there) and stderr inherited.
 *
 * @param script The benchmark script's path.
 * @param role The role's name.
 * @param args The role's parameters.
 * @param stdin "piped" when the orchestrator talks to the role through stdin.
 * @returns The child process.
 */
export function spawnRole(
  script: string,
  role: string,
  args: Record<string, string | number>,
  stdin: "piped" | "null" = "null",
): Deno.ChildProcess {
  const flat = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", script, "--role", role, ...flat],
    stdin,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

/**
 * Checks a bench script's own flags before a run starts: `--help` (or `-h`) prints the
 * script's module documentation (its usage) and exits 0; a flag not in `known` prints an
 * error and exits 2, so that a mistyped flag never starts a long run that overwrites a
 * committed result. Values of flags (`--only msgfs`) are not flags and pass.
 *
 * @param script The script's `import.meta.url`, whose leading doc comment is the help.
 * @param known The flags the script takes, such as `["--quick", "--only"]`.
 * @param argv The arguments (default: this process's).
 *
 * @example
 * ```ts ignore
 * checkBenchFlags(import.meta.url, ["--quick", "--only"]);
 * ```
 */
export function checkBenchFlags(
  script: string,
  known: readonly string[],
  argv: readonly string[] = Deno.args,
): void {
  if (argv.includes("--help") || argv.includes("-h")) {
    const source = Deno.readTextFileSync(new URL(script));
    const doc = source.match(/\/\*\*([\s\S]*?)\*\//)?.[1] ?? "";
    const text = doc.split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n")
      .replace(/@module\s*$/, "").trim();
    console.log(text);
    Deno.exit(0);
  }
  const unknown = argv.filter((a) => a.startsWith("-") && !known.includes(a));
  if (unknown.length > 0) {
    const name = new URL(script).pathname.split("/").pop();
    console.error(
      `bench: ${name} does not take ${unknown.join(", ")} (it takes ${
        known.join(", ")
      }; --help shows its usage)`,
    );
    Deno.exit(2);
  }
}

/**
 * The `--KEY VALUE` parameters a role was started with (a flag with no value reads "true").
 *
 * @param argv The arguments (default: this process's).
 * @returns The parameters by key.
 */
export function roleArgs(argv: string[] = Deno.args): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out[a.slice(2)] = next;
      i++;
    } else {
      out[a.slice(2)] = "true";
    }
  }
  return out;
}

/**
 * One required `--KEY VALUE` parameter of a role.
 *
 * @param name The key.
 * @returns The value.
 * @throws {Error} When it was not given.
 */
export function roleArg(name: string): string {
  const v = roleArgs()[name];
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/**
 * Reads one line (without its newline) from a role's stdout.
 *
 * @param reader The stdout reader.
 * @param state What was read past the last line (kept between calls).
 * @returns The line; the last unterminated bytes at end of output.
 * @throws {Error} When the role ended with nothing more to read.
 */
export async function readLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  state: { buf: string },
): Promise<string> {
  const dec = new TextDecoder();
  for (;;) {
    const nl = state.buf.indexOf("\n");
    if (nl >= 0) {
      const line = state.buf.slice(0, nl);
      state.buf = state.buf.slice(nl + 1);
      return line;
    }
    const { value, done } = await reader.read();
    if (done) {
      if (state.buf === "") throw new Error("a role ended early");
      const rest = state.buf;
      state.buf = "";
      return rest;
    }
    state.buf += dec.decode(value);
  }
}
