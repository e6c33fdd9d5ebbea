/**
 * SVG plots of the bench results, drawn with Vega-Lite (compiled to Vega, rendered headless:
 * no browser, no canvas):
 *
 * - per protocol, the latency distribution (p50, p90, p99, p99.9) of fsbus, its peers and its
 *   C floor at one offered rate (1k msgs/s; the fanout ring's latency points are at 10k);
 * - throughput as a ratio to the floor: fsbus's unpaced rate ÷ the C floor's, same run.
 *
 * @module
 */

import type { Result } from "./_lib.ts";

/** The results of each bench, by name ("msgfs", "filebus", "mq", "fanout"). */
export type AllResults = Record<string, Result[]>;

const PCTS = [
  ["p50", "p50_us"],
  ["p90", "p90_us"],
  ["p99", "p99_us"],
  ["p99.9", "p999_us"],
] as const;

/** What each bench's fsbus transport is called in its results, and its latency point. */
export const PROTOCOLS: Record<
  string,
  { fsbus: string; title: string; scenario: string; rate: number; size: number }
> = {
  msgfs: {
    fsbus: "msgfs",
    title: "directory bus",
    scenario: "latency",
    rate: 1000,
    size: 1024,
  },
  filebus: {
    fsbus: "filebus",
    title: "filebus (lossy)",
    scenario: "lossy",
    rate: 1000,
    size: 1024,
  },
  mq: { fsbus: "mq", title: "mq group", scenario: "latency", rate: 1000, size: 1024 },
  fanout: { fsbus: "fanout", title: "fanout ring", scenario: "latency", rate: 10_000, size: 1024 },
};

/** A display name: fsbus's transports say so, the floors say C. */
export function label(bench: string, transport: string): string {
  if (transport === PROTOCOLS[bench]?.fsbus) return `fsbus ${transport}`;
  if (transport === "floor") return "C floor";
  if (transport === `${PROTOCOLS[bench]?.fsbus}-async`) {
    return `fsbus ${transport.replace("-", " (")})`;
  }
  if (transport === "floor-fifo") return "C FIFO hop";
  if (transport === "fifo") return "FIFO hop (Deno)";
  if (transport === "nats") return "NATS core";
  if (transport === "zeromq") return "ZeroMQ ipc";
  return transport;
}

/** A Vega-Lite specification (checked by Vega-Lite itself, in bench/_render.ts). */
type Spec = Record<string, unknown>;

const RENDER = new URL("./_render.ts", import.meta.url).pathname;
const LOCK = new URL("./plots.lock", import.meta.url).pathname;

/** Renders a spec to SVG in a separate Deno process (see bench/_render.ts for why). */
async function render(spec: Spec): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", `--lock=${LOCK}`, "--allow-read", "--allow-env", RENDER],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(spec)));
  await writer.close();
  const { success, stdout } = await child.output();
  if (!success) throw new Error("bench/_render.ts could not draw a plot");
  return new TextDecoder().decode(stdout);
}

/** The latency points of one bench plotted: one subscriber, tmpfs (or no file system). */
function latencyRows(bench: string, results: Result[]) {
  const p = PROTOCOLS[bench]!;
  const pts = results.filter((r) =>
    r.scenario === p.scenario && r.rate === p.rate && r.size === p.size &&
    r.subscribers === 1 && (r.fs === "tmpfs" || r.fs === "") && r.p50_us !== undefined
  );
  const seen = new Set<string>();
  const points: { who: string; pct: string; us: number; order: number }[] = [];
  const spans: { who: string; lo: number; hi: number; p50: number; text: string }[] = [];
  for (const r of pts) {
    if (seen.has(r.transport)) continue;
    seen.add(r.transport);
    const who = label(bench, r.transport);
    PCTS.forEach(([name, key], i) => {
      const us = r[key];
      if (typeof us === "number" && us > 0) points.push({ who, pct: name, us, order: i });
    });
    spans.push({
      who,
      lo: r.p50_us!,
      hi: r.p999_us ?? r.p99_us ?? r.p50_us!,
      p50: r.p50_us!,
      text: `p50 ${fmtUs(r.p50_us!)}`,
    });
  }
  return { points, spans };
}

function fmtUs(us: number): string {
  if (us >= 10_000) return `${(us / 1000).toFixed(0)} ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(1)} ms`;
  return `${us >= 100 ? us.toFixed(0) : us.toFixed(1)} µs`;
}

/**
 * The latency plot of one bench: p50 to p99.9 per transport, log scale.
 *
 * @param bench The bench's name.
 * @param results Its results.
 * @param date When they were measured (for the subtitle).
 * @returns The SVG, or undefined when there is nothing to plot.
 */
export async function latencyPlot(
  bench: string,
  results: Result[],
  date = "",
): Promise<string | undefined> {
  const p = PROTOCOLS[bench];
  if (!p) return undefined;
  const { points, spans } = latencyRows(bench, results);
  if (spans.length === 0) return undefined;
  const order = spans.map((s) => s.who);
  const y = {
    field: "who",
    type: "nominal",
    sort: order,
    title: null,
    axis: { labelFontSize: 12, labelLimit: 200 },
  } as const;
  const spec = {
    title: {
      text: `${p.title}: latency at ${p.rate / 1000}k msgs/s, ${p.size} B, one subscriber`,
      subtitle: `p50 · p90 · p99 · p99.9, one-way, separate processes, tmpfs${
        date ? `; ${date}` : ""
      }`,
      anchor: "start",
    },
    width: 560,
    height: { step: 34 },
    background: "white",
    padding: 12,
    layer: [
      {
        data: { values: spans },
        mark: { type: "rule", strokeWidth: 2, color: "#bbb" },
        encoding: {
          y,
          x: {
            field: "lo",
            type: "quantitative",
            scale: { type: "log" },
            title: "latency (µs, log scale)",
          },
          x2: { field: "hi" },
        },
      },
      {
        data: { values: points },
        mark: { type: "point", filled: true, size: 90, opacity: 1 },
        encoding: {
          y,
          x: { field: "us", type: "quantitative", scale: { type: "log" } },
          color: {
            field: "pct",
            type: "nominal",
            sort: PCTS.map(([n]) => n),
            scale: { range: ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"] },
            title: "percentile",
          },
          shape: {
            field: "pct",
            type: "nominal",
            sort: PCTS.map(([n]) => n),
            scale: { range: ["circle", "square", "triangle-up", "diamond"] },
            legend: null,
          },
        },
      },
      {
        data: { values: spans },
        mark: { type: "text", dy: -12, fontSize: 11, color: "#1f77b4", align: "center" },
        encoding: {
          y,
          x: { field: "p50", type: "quantitative", scale: { type: "log" } },
          text: { field: "text" },
        },
      },
    ],
  };
  return await render(spec as Spec);
}

/** One bar of the throughput plot: fsbus's rate ÷ the floor's at one unpaced point. */
export interface FloorBar {
  bench: string;
  what: string;
  ratio: number;
  mine: number;
  floor: number;
}

/**
 * The unpaced points of every bench with a floor beside them.
 *
 * @param all Every bench's results.
 * @returns The bars, in bench order.
 */
export function floorBars(all: AllResults): FloorBar[] {
  const bars: FloorBar[] = [];
  for (const [bench, results] of Object.entries(all)) {
    for (const r of results) {
      if (r.rate !== 0 || r.transport !== PROTOCOLS[bench]?.fsbus) continue;
      if (r.vs_floor?.rate === undefined) continue;
      const batch = r.notes?.match(/batch (\d+)/)?.[1];
      const floor = results.find((f) =>
        f.transport === "floor" && f.scenario === r.scenario && f.size === r.size &&
        f.rate === 0 && f.subscribers === r.subscribers &&
        (f.notes?.match(/batch (\d+)/)?.[1] ?? "1") === (batch ?? "1")
      );
      const rateOf = (x: Result | undefined) =>
        x ? (r.sub_rate !== undefined && x.sub_rate !== undefined ? x.sub_rate : x.pub_rate) : 0;
      const what = `${label(bench, r.transport)} ${r.scenario}, ${
        r.size >= 1024 ? `${r.size / 1024} KiB` : `${r.size} B`
      }${r.subscribers > 1 ? `, ${r.subscribers} readers` : ""}${batch ? `, batch ${batch}` : ""}`;
      bars.push({
        bench,
        what,
        ratio: r.vs_floor.rate,
        mine: rateOf(r) ?? 0,
        floor: rateOf(floor) ?? 0,
      });
    }
  }
  return bars;
}

function fmtRate(x: number): string {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(0)}k`;
  return String(Math.round(x));
}

/**
 * Throughput as a ratio to the C floor: one bar per unpaced point, 1.0 = the floor.
 *
 * @param all Every bench's results.
 * @param date When they were measured (for the subtitle).
 * @returns The SVG, or undefined when no point has a floor.
 */
export async function floorPlot(all: AllResults, date = ""): Promise<string | undefined> {
  const bars = floorBars(all).map((b) => ({
    ...b,
    text: `${b.ratio.toFixed(3)}×  (${fmtRate(b.mine)} vs ${fmtRate(b.floor)} msgs/s)`,
  }));
  if (bars.length === 0) return undefined;
  const max = Math.max(1.1, ...bars.map((b) => b.ratio)) * 1.05;
  const y = {
    field: "what",
    type: "nominal",
    sort: bars.map((b) => b.what),
    title: null,
    axis: { labelFontSize: 12, labelLimit: 320 },
  } as const;
  const spec = {
    title: {
      text: "Throughput as a ratio to the C floor (1.0 = the kernel's floor, same syscalls)",
      subtitle: `unpaced, tmpfs, same run; the dashed line is the directory bus goal (0.85×)${
        date ? `; ${date}` : ""
      }`,
      anchor: "start",
    },
    width: 420,
    height: { step: 30 },
    background: "white",
    padding: 12,
    layer: [
      {
        data: { values: bars },
        mark: { type: "bar", height: 18 },
        encoding: {
          y,
          x: {
            field: "ratio",
            type: "quantitative",
            scale: { domain: [0, max] },
            title: "fsbus ÷ floor (messages per second)",
          },
          color: { field: "bench", type: "nominal", legend: null },
        },
      },
      {
        data: { values: [{ x: 1 }] },
        mark: { type: "rule", color: "black", strokeWidth: 1.5 },
        encoding: { x: { field: "x", type: "quantitative" } },
      },
      {
        data: { values: [{ x: 0.85 }] },
        mark: { type: "rule", color: "#d62728", strokeDash: [4, 3] },
        encoding: { x: { field: "x", type: "quantitative" } },
      },
      {
        // The figures, right of the plot, clear of the bars and lines.
        data: { values: bars.map((b) => ({ ...b, at: max })) },
        mark: { type: "text", align: "left", dx: 8, fontSize: 11 },
        encoding: { y, x: { field: "at", type: "quantitative" }, text: { field: "text" } },
      },
    ],
  };
  return await render(spec as Spec);
}
