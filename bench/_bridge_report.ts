/**
 * The README's bridge block (`<!-- bench:bridge -->`), from bench/results/bridge.json: the
 * bridge through JetStream and through core NATS beside NATS core, JetStream alone and the
 * local bus, measured in the same run, and the two goals.
 *
 * @module
 */

import type { Result } from "./_lib.ts";

/** What bench/bridge.ts writes. */
interface BridgeResults {
  results: Result[];
  summary: {
    load?: string;
    when?: string;
    median_of?: number;
  };
}

function num(x: number | undefined, digits = 0): string {
  if (x === undefined || !Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** Microseconds as the README writes them: ms with two digits under 10 ms, whole ms above. */
function ms(us: number | undefined): string {
  if (us === undefined) return "–";
  const m = us / 1000;
  return `${num(m, m < 10 ? 2 : m < 100 ? 1 : 0)} ms`;
}

function cpuOf(r: Result | undefined): string {
  const m = r?.notes?.match(/up (\d+), down (\d+)/);
  if (!r?.cpu_us_per_msg) return "";
  return m ? `${r.cpu_us_per_msg} µs (${m[1]} + ${m[2]})` : `${r.cpu_us_per_msg} µs`;
}

/**
 * Renders the block, or undefined when bench/results/bridge.json is missing.
 *
 * @param url Where the results are.
 * @returns The block's Markdown.
 */
export function bridgeBlock(url: URL): string | undefined {
  let data: BridgeResults;
  try {
    data = JSON.parse(Deno.readTextFileSync(url)) as BridgeResults;
  } catch {
    return undefined;
  }
  const get = (t: string, rate: number) =>
    data.results.find((r) => r.transport === t && r.rate === rate);
  const [bj, bn, nats, js, bus] = ["bridge", "bridge-nats", "nats", "jetstream", "msgfs"];
  const p50 = (t: string) => get(t, 1000)?.p50_us;
  const p99 = (t: string) => get(t, 1000)?.p99_us;
  const goalCore = (p50(nats!) ?? NaN) + 2 * (p50(bus!) ?? NaN);
  const goalJs = (p50(js!) ?? NaN) + 2 * (p50(bus!) ?? NaN);
  const met = (x: number | undefined, goal: number) =>
    x !== undefined && x <= goal ? "met" : "not met";
  const unpaced = (t: string) => get(t, 0)?.sub_rate;
  const jsPub = get(js!, 0)?.pub_rate;
  const ratio = (unpaced(bj!) ?? NaN) / (jsPub ?? NaN);
  const rows = [
    [
      "latency at 1k msgs/s, p50",
      ms(p50(bj!)),
      ms(p50(bn!)),
      ms(p50(nats!)),
      ms(p50(js!)),
      ms(p50(bus!)),
    ],
    [
      "latency at 1k msgs/s, p99",
      ms(p99(bj!)),
      ms(p99(bn!)),
      ms(p99(nats!)),
      ms(p99(js!)),
      ms(p99(bus!)),
    ],
    [
      "unpaced, msgs/s at the subscriber",
      num(unpaced(bj!)),
      num(unpaced(bn!)),
      num(unpaced(nats!)),
      `${num(unpaced(js!))} (publish-with-ack ${num(jsPub)})`,
      num(unpaced(bus!)),
    ],
    [
      "CPU per message, both bridges (up + down), 1k/s; unpaced",
      `${cpuOf(get(bj!, 1000))}; ${cpuOf(get(bj!, 0))}`,
      `${cpuOf(get(bn!, 1000))}; ${cpuOf(get(bn!, 0))}`,
      "",
      "",
      "",
    ],
  ];
  const all = data.results;
  const exact = all.every((r) =>
    r.delivered === r.expected && r.duplicates === 0 && r.order_violations === 0
  );
  const kept = all.filter((r) => r.rate > 0).every((r) => (r.sub_rate ?? 0) >= 0.95 * r.rate);
  const when = data.summary.when?.slice(0, 16).replace("T", " ");
  return [
    `Measured ${when} UTC, 1-minute load average ${data.summary.load} on 2 cores, medians of ` +
    `${data.summary.median_of} runs per point (bench/results/bridge.json).`,
    "",
    "| what (1 KiB) | bridge (JetStream) | bridge (core NATS) | NATS core | JetStream alone | local bus |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    `Goals: p50 at 1k msgs/s through core NATS ≤ NATS core p50 + 2× the bus's = ` +
    `${ms(goalCore)}: ${ms(p50(bn!))}, ${met(p50(bn!), goalCore)} (through JetStream, the same ` +
    `rule against JetStream alone gives ${ms(goalJs)}: ${ms(p50(bj!))}, ${
      met(p50(bj!), goalJs)
    }); unpaced through JetStream ≥ 0.5× JetStream publish-with-ack alone: ${num(ratio, 2)}×, ${
      ratio >= 0.5 ? "met" : "not met"
    }.`,
    "",
    `${
      exact
        ? "Every point delivered every message once, in order"
        : "Some point lost, repeated or reordered messages (see the JSON)"
    }; ${
      kept
        ? "every paced point kept up with its rate."
        : "some paced point did not keep up with its rate (the machine was saturated)."
    }`,
  ].join("\n");
}
