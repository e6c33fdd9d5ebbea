/**
 * EXPERIMENT, run by hand: why the bench's in-process publish-only point (bench/msgfs.ts)
 * differs from the same publishes in a fresh process.
 *
 *   deno run -A bench/floor/experiments/dirbus_pubonly.ts [ROUNDS] [COUNT]
 *
 * Each round measures, alternated: the publishes in a fresh child process; the same in this
 * process; and the same in this process after it has handled what the bench's orchestrator
 * handles before its publish-only point (subscriber reports of 100,000 latencies and
 * sequence numbers, parsed from JSON). Prints rate, CPU per message and this process's heap.
 *
 * @module
 */

import { median } from "../../_lib.ts";
import { publishRate as benchPublishRate } from "../../msgfs.ts";

const SELF = new URL(import.meta.url).pathname;

/** The bench's own publish-only point (bench/msgfs.ts), 1 KiB. */
function publishRate(count: number): { rate: number; cpuUs: number } {
  const r = benchPublishRate(count, 1024);
  return { rate: r.pub_rate!, cpuUs: r.cpu_us_per_msg! };
}

/** What the orchestrator does between points: parse big reports, keep a summary. */
const kept: unknown[] = [];
function orchestratorHistory(): void {
  for (let p = 0; p < 30; p++) {
    const n = p % 3 === 0 ? 100_000 : 21_000;
    const rep = JSON.stringify({
      latencies: Array.from({ length: n }, (_, i) => 50 + (i % 97) * 1.37),
      seqs: Array.from({ length: n }, (_, i) => i),
    });
    const parsed = JSON.parse(rep) as { latencies: number[]; seqs: number[] };
    const all = [...parsed.latencies].sort((a, b) => a - b);
    kept.push({ p50: all[all.length >> 1] });
  }
}

function child(count: number): { rate: number; cpuUs: number } {
  const c = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, "child", String(count)],
    stdout: "piped",
  }).outputSync();
  return JSON.parse(new TextDecoder().decode(c.stdout));
}

const show = (what: string, x: { rate: number; cpuUs: number }) =>
  console.error(`${what}: ${(x.rate / 1000).toFixed(1)}k msgs/s, ${x.cpuUs.toFixed(1)} µs`);

if (Deno.args[0] === "quickbench") {
  // The quick bench (msgfs only) again and again: its publish-only point comes right after
  // its burst point; then the same publishes in a fresh process and in this one.
  const { run } = await import("../../msgfs.ts");
  for (let i = 0; i < Number(Deno.args[1] ?? 3); i++) {
    await run({ quick: true, only: ["msgfs"] });
    show("after the quick bench, child", child(20_000));
    show("after the quick bench, in process", publishRate(20_000));
  }
} else if (Deno.args[0] === "bench") {
  // The bench's own msgfs points first (bench/msgfs.ts run(), msgfs only), then alternated.
  const count = 100_000;
  for (let i = 0; i < 2; i++) {
    show("before, child", child(count));
    show("before, in process", publishRate(count));
  }
  const { run } = await import("../../msgfs.ts");
  await run({ quick: Deno.args[1] === "quick", only: ["msgfs"] });
  for (let i = 0; i < 3; i++) {
    show("after, child", child(count));
    show("after, in process", publishRate(count));
  }
} else if (Deno.args[0] === "child") {
  console.log(JSON.stringify(publishRate(Number(Deno.args[1]))));
} else {
  const rounds = Number(Deno.args[0] ?? 4);
  const count = Number(Deno.args[1] ?? 100_000);
  const out: Record<string, { rate: number; cpuUs: number }[]> = {
    child: [],
    inproc: [],
    after: [],
  };
  const heapMb = () => (Deno.memoryUsage().heapTotal / 2 ** 20).toFixed(0);
  for (let r = 0; r < rounds; r++) {
    out.child!.push(child(count));
    out.inproc!.push(publishRate(count));
    if (r === 0) orchestratorHistory();
    out.after!.push(publishRate(count));
    console.error(
      `round ${r}: heap ${heapMb()} MB`,
      Object.entries(out).map(([k, v]) =>
        `${k} ${(v.at(-1)!.rate / 1000).toFixed(1)}k ${v.at(-1)!.cpuUs.toFixed(1)} µs`
      ).join(", "),
    );
  }
  for (const [k, v] of Object.entries(out)) {
    console.log(
      `${k}: median ${(median(v.map((x) => x.rate)) / 1000).toFixed(1)}k msgs/s, ` +
        `${median(v.map((x) => x.cpuUs)).toFixed(1)} µs CPU/msg`,
    );
  }
}
