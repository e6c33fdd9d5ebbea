/**
 * Regenerates the README's benchmark figures from bench/results/*.json, so that no figure in
 * the README is typed by hand:
 *
 *   deno task bench --report      # or: deno run -A bench/report.ts
 *
 * - the SVG plots in docs/ (latency per protocol against its peers and C floor; throughput
 *   as a ratio to the floor), drawn by bench/_plots.ts;
 * - the README's blocks between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`: NAME is a
 *   bench (msgfs, filebus, mq, fanout: its table of fsbus beside its floor and peer, and its
 *   latency plot), "bridge" (its table against NATS core, JetStream alone and the local bus,
 *   see _bridge_report.ts) or "floor" (the throughput-ratio plot and the goals that depend on
 *   the floor) or "goals" (every protocol's goals beside the figures of its last saved run,
 *   see _goals.ts; regenerated on every report, a subset's included). Everything outside the
 *   markers is left as it is.
 *
 * @module
 */

import { addRatios } from "./_floor.ts";
import { bridgeBlock } from "./_bridge_report.ts";
import { goalsBlock } from "./_goals.ts";
import type { Result } from "./_lib.ts";
import { type AllResults, floorPlot, label, latencyPlot, PROTOCOLS } from "./_plots.ts";

const ROOT = new URL("../", import.meta.url);
const RESULTS = new URL("./results/", import.meta.url);
const DOCS = new URL("docs/", ROOT);
const BENCHES = ["msgfs", "filebus", "mq", "fanout"] as const;
const PEERS: Record<string, string | undefined> = {
  msgfs: "nats",
  filebus: undefined,
  mq: "nats",
  fanout: "zeromq",
};

/** Reads one bench's saved results (either `{ date, results }` or a bare array). */
export function loadResults(
  name: string,
): { date: string; load: string; results: Result[] } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(new URL(`${name}.json`, RESULTS));
  } catch {
    return undefined;
  }
  const json = JSON.parse(text);
  if (Array.isArray(json)) return { date: "", load: "", results: json as Result[] };
  return {
    date: String(json.date ?? ""),
    load: String(json.load ?? ""),
    results: json.results as Result[],
  };
}

function batchOf(r: Result): string {
  return r.notes?.match(/batch (\d+)/)?.[1] ?? "1";
}

function num(x: number | undefined, digits = 0): string {
  if (x === undefined || !Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function us(x: number | undefined): string {
  if (x === undefined) return "–";
  if (x >= 10_000) return `${num(x / 1000, 0)} ms`;
  return `${num(x, x < 100 ? 1 : 0)}`;
}

/** A latency cell from {@linkcode us} with its unit: "µs" unless it already says "ms". */
function withUnit(cell: string): string {
  return cell.endsWith(" ms") || cell === "–" ? cell : `${cell} µs`;
}

function rate(x: number | undefined): string {
  if (x === undefined) return "–";
  if (x >= 1e6) return `${num(x / 1e6, 2)} M/s`;
  return `${num(x / 1000, x < 10_000 ? 1 : 0)}k/s`;
}

function pointName(r: Result): string {
  const size = r.size >= 1024 ? `${r.size / 1024} KiB` : `${r.size} B`;
  const load = r.rate >= 1000
    ? `${num(r.rate / 1000)}k msgs/s`
    : r.rate
    ? `${num(r.rate)} msgs/s`
    : "unpaced";
  const n = r.subscribers === 0 ? "no reader" : `N=${r.subscribers}`;
  const b = batchOf(r) !== "1" && r.rate === 0 ? `, batch ${batchOf(r)}` : "";
  const fs = r.fs && r.fs !== "tmpfs" ? `, ${r.fs}` : "";
  return `${r.scenario}, ${size}, ${load}, ${n}${b}${fs}`;
}

/** The figure shown for one result: p50 / p99 in µs for latency, else the rate. */
function figure(r: Result | undefined): string {
  if (!r) return "–";
  if (r.rate > 0 && r.p50_us !== undefined) return `${us(r.p50_us)} / ${us(r.p99_us)}`;
  const sub = r.sub_rate;
  return sub !== undefined && r.subscribers > 0 ? rate(sub) : rate(r.pub_rate);
}

function ratioCell(r: Result, which: "vs_floor" | "vs_peer"): string {
  const x = r[which];
  if (!x) return "–";
  if (r.rate > 0 && x.p50 !== undefined) return `${x.p50.toFixed(2)}×`;
  if (x.rate !== undefined) return `${x.rate.toFixed(2)}×`;
  return "–";
}

/** The markdown table of one bench: each fsbus point beside its C floor and its peer. */
export function benchTable(name: string, results: Result[]): string {
  const p = PROTOCOLS[name]!;
  const peer = PEERS[name];
  const same = (a: Result, b: Result) =>
    a.scenario === b.scenario && a.size === b.size && a.rate === b.rate &&
    a.subscribers === b.subscribers && batchOf(a) === batchOf(b);
  const head = [
    "point",
    `fsbus ${p.fsbus}`,
    "C floor",
    ...(peer ? [label(name, peer)] : []),
    "fsbus ÷ floor",
    ...(peer ? [`fsbus ÷ ${label(name, peer)}`] : []),
    "CPU µs/msg fsbus / floor",
    "delivered / expected",
  ];
  const rows: string[][] = [];
  for (const r of results) {
    if (r.transport !== p.fsbus) continue;
    const floor = results.find((f) => f.transport === "floor" && same(f, r) && f.fs === r.fs);
    const other = peer
      ? results.find((f) =>
        f.transport === peer && same(f, r) && (f.fs === r.fs || (f.fs === "" && r.fs === "tmpfs"))
      )
      : undefined;
    const check = `${num(r.delivered)} / ${num(r.expected)}` +
      (r.duplicates || r.order_violations
        ? ` (dup ${r.duplicates}, order ${r.order_violations})`
        : "");
    rows.push([
      pointName(r),
      r.scenario === "idle-cpu" || r.scenario === "order-cost" || r.scenario === "stalled-readers"
        ? (r.notes ?? "")
        : figure(r),
      figure(floor),
      ...(peer ? [figure(other)] : []),
      ratioCell(r, "vs_floor"),
      ...(peer ? [ratioCell(r, "vs_peer")] : []),
      `${num(r.cpu_us_per_msg, 1)} / ${num(floor?.cpu_us_per_msg, 1)}`,
      check,
    ]);
  }
  const others = [...new Set(results.map((r) => r.transport))].filter((t) =>
    t !== p.fsbus && t !== "floor" && t !== peer
  );
  const lines = [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ];
  const also = others.map((t) => {
    const pts = results.filter((r) => r.transport === t).map((r) =>
      `${pointName(r)}: ${figure(r)}`
    );
    return `${label(name, t)}: ${pts.join("; ")}`;
  });
  const bad = results.filter((r) =>
    r.duplicates > 0 || r.order_violations > 0 ||
    (r.delivered < r.expected && r.scenario !== "lossy")
  );
  const text = [
    lines.join("\n"),
    "",
    "Latency cells are p50 / p99 in µs (one-way, from the scheduled send time); rate cells are " +
    "the subscribers' rate (the publisher's when there is none). Ratios are fsbus ÷ the other, " +
    "from the same run: p50 for latency (lower is better), rate for unpaced points (higher is " +
    "better).",
  ];
  if (also.length) text.push("", `Also in this run: ${also.join(". ")}.`);
  const lossy = results.filter((r) =>
    r.transport === p.fsbus && r.scenario === "lossy" && r.notes?.includes("last chunk")
  );
  if (lossy.length) {
    // Lossy filebus: what fraction each consumer saw, and when the latest chunk reached them.
    text.push(
      "",
      `Lossy points, as the consumers saw them: ${
        lossy.map((r) => `${pointName(r)}: ${r.notes!.split(";")[0]}`).join("; ")
      }.`,
    );
  }
  text.push(
    "",
    bad.length === 0
      ? "Every point, floors and peers included, delivered every message " +
        "(lossy points: what was seen) with no duplicate and no order violation."
      : `Points with a loss, duplicate or order violation: ${
        bad.map((r) => `${r.transport} ${pointName(r)}`).join("; ")
      }.`,
  );
  return text.join("\n");
}

/**
 * The table of the mq mount (`bench/mq.ts --fuse-only`): write(2) through the mount beside
 * the C FUSE floor and a FIFO hop of the same run, with the issue's goals. The throughput
 * goal ("one writer") is judged on the writer alone; the writer with a reader blocked in
 * read(2) is shown beside it.
 *
 * @param results The run's results (mq-fuse, floor and fifo points).
 * @returns The markdown.
 */
export function fuseTable(results: Result[]): string {
  const get = (t: string, scenario: string) =>
    results.find((r) => r.transport === t && r.scenario === scenario);
  const rates = (r: Result | undefined) =>
    r ? `${rate(r.pub_rate)} written, ${rate(r.sub_rate)} read` : "–";
  const unit = (x: number | undefined) => x !== undefined && x >= 10_000 ? us(x) : `${us(x)} µs`;
  const lat = (r: Result | undefined) => r ? `${unit(r.p50_us)} / ${unit(r.p99_us)}` : "–";
  const get1 = (t: string, scenario: string, n: number) =>
    results.find((r) => r.transport === t && r.scenario === scenario && r.subscribers === n);
  const a = ["mq-fuse", "floor"].map((x) => get1(x, "throughput", 0));
  const t = ["mq-fuse", "floor", "fifo"].map((x) => get1(x, "throughput", 1));
  const l = ["mq-fuse", "floor", "fifo"].map((x) => get(x, "latency"));
  // The opt-in write-behind mount (`--write-behind`), shown beside the default one.
  const [wa, wt, wl] = [
    get1("mq-fuse-wb", "throughput", 0),
    get1("mq-fuse-wb", "throughput", 1),
    get("mq-fuse-wb", "latency"),
  ];
  const ratio = (x: number | undefined) => x === undefined ? "–" : `${x.toFixed(2)}×`;
  const div = (x: number | undefined, y: number | undefined) =>
    x === undefined || y === undefined ? undefined : x / y;
  const withWb = (x: number | undefined, wb: number | undefined) =>
    `${ratio(x)}${wb === undefined ? "" : ` (write-behind ${ratio(wb)})`}`;
  const cpu = (m: Result | undefined, w: Result | undefined, f: Result | undefined) =>
    `${num(m?.cpu_us_per_msg, 1)} / ${num(w?.cpu_us_per_msg, 1)} / ${num(f?.cpu_us_per_msg, 1)}`;
  const pubRatio = t[0] && t[1] ? t[0].pub_rate! / t[1].pub_rate! : undefined;
  const verdict = (ok: boolean | undefined) => ok === undefined ? "–" : ok ? "met" : "not met";
  const written = (r: Result | undefined) => r ? `${rate(r.pub_rate)} written` : "–";
  const rows = [
    [
      "one writer alone, one write(2) per message, unpaced (the goal's figure)",
      written(a[0]),
      written(wa),
      written(a[1]),
      "– (a FIFO needs a reader)",
      `${withWb(div(a[0]?.pub_rate, a[1]?.pub_rate), div(wa?.pub_rate, a[1]?.pub_rate))} written`,
      cpu(a[0], wa, a[1]),
      `≥ 25k msgs/s written: ${verdict(a[0] && a[0].pub_rate! >= 25_000)}`,
    ],
    [
      "the same writer with a reader blocked in read(2), unpaced",
      rates(t[0]),
      rates(wt),
      rates(t[1]),
      rates(t[2]),
      `${withWb(pubRatio, div(wt?.pub_rate, t[1]?.pub_rate))} written, ${
        withWb(t[0]?.vs_floor?.rate, wt?.vs_floor?.rate)
      } read`,
      cpu(t[0], wt, t[1]),
      "shown, not judged (two processes beside the server)",
    ],
    [
      "p50 / p99 from write(2) to the blocked read(2), 1k msgs/s",
      lat(l[0]),
      lat(wl),
      lat(l[1]),
      lat(l[2]),
      withWb(l[0]?.vs_floor?.p50, wl?.vs_floor?.p50),
      cpu(l[0], wl, l[1]),
      `p50 ≤ 150 µs: ${verdict(l[0]?.p50_us === undefined ? undefined : l[0].p50_us <= 150)}`,
    ],
  ];
  const head = [
    "1 KiB messages",
    "through the mount",
    "with `--write-behind` (opt-in)",
    "C FUSE floor",
    "FIFO hop",
    "mount ÷ floor",
    "CPU µs/msg mount / write-behind / floor",
    "goal (the default mount)",
  ];
  const bad = results.filter((r) =>
    r.duplicates > 0 || r.order_violations > 0 || r.delivered < r.expected
  );
  const st = get("floor-spin", "throughput");
  const sl = get("floor-spin", "latency");
  const spinUs = (st ?? sl)?.notes?.match(/spinning up to (\d+) µs/)?.[1];
  const spin = st || sl
    ? [
      "",
      `Spin-then-block, measured on the C floor in the same run (\`floor-spin\`, an extra point, ` +
      `not the floor: its server keeps reading the empty device for up to ${spinUs ?? "?"} µs ` +
      "after a request while requests come fast, before it sleeps, as the mount's server does " +
      "by default, `--spin-us`): " +
      (st && t[1]
        ? `unpaced ${rate(st.pub_rate)} written, ${
          ratio(st.pub_rate! / t[1].pub_rate!)
        } the plain floor, CPU ${num(st.cpu_us_per_msg, 1)} µs/msg (plain ${
          num(t[1].cpu_us_per_msg, 1)
        })`
        : "unpaced –") +
      (sl && l[1]
        ? `; p50 at 1k msgs/s ${unit(sl.p50_us)} (plain ${unit(l[1].p50_us)}), CPU ${
          num(sl.cpu_us_per_msg, 1)
        } µs/msg (plain ${num(l[1].cpu_us_per_msg, 1)}).`
        : "."),
    ]
    : [];
  return [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    ...spin,
    "",
    (wa || wt || wl
      ? "The write-behind column is the same mount with `--write-behind` (opt-in): each " +
        "write(2) is answered once checked and committed right after its reply, before the " +
        "server reads its next request; the goals judge the default mount. "
      : "") +
    "CPU includes the writer, the reader (when there is one) and the server. " +
    (bad.length === 0
      ? "Every point delivered every message, in order, without duplicates."
      : `Points with a loss, duplicate or order violation: ${
        bad.map((r) => `${r.transport} ${pointName(r)}`).join("; ")
      }.`),
  ].join("\n");
}

/** The directory bus's goals that depend on the floor, as a table. */
function floorGoals(msgfs: Result[]): string {
  const get = (t: string, scenario: string, rate: number, n = 1) =>
    msgfs.find((r) =>
      r.transport === t && r.scenario === scenario && r.rate === rate && r.subscribers === n &&
      r.fs === "tmpfs"
    );
  const rows: string[][] = [];
  const pub = get("msgfs", "publish-only", 0, 0);
  const e2e = get("msgfs", "throughput", 0);
  const verdict = (ok: boolean | undefined) => ok === undefined ? "–" : ok ? "met" : "not met";
  for (const [what, r] of [["publish only", pub], ["end to end, lossless", e2e]] as const) {
    const x = r?.vs_floor?.rate;
    rows.push([
      `${what} ≥ 0.85× floor`,
      x === undefined ? "–" : `${x.toFixed(3)}× (${rate(figureRate(r))})`,
      verdict(x === undefined ? undefined : x >= 0.85),
    ]);
  }
  for (const [what, r] of [["publish only", pub], ["end to end", e2e]] as const) {
    const x = r?.vs_floor?.cpu;
    rows.push([
      `CPU per message, ${what}, ≤ 1.3× floor`,
      x === undefined ? "–" : `${x.toFixed(3)}× (${num(r?.cpu_us_per_msg, 1)} µs)`,
      verdict(x === undefined ? undefined : x <= 1.3),
    ]);
  }
  for (const rt of [1000, 10_000]) {
    const r = get("msgfs", "latency", rt);
    const x = r?.vs_floor?.p50;
    rows.push([
      `p50 at ${rt / 1000}k msgs/s ≤ 2× floor`,
      x === undefined ? "–" : `${x.toFixed(3)}× (${withUnit(us(r?.p50_us))})`,
      verdict(x === undefined ? undefined : x <= 2),
    ]);
  }
  return [
    "| directory bus goal | measured | |",
    "| --- | --- | --- |",
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

function figureRate(r: Result | undefined): number | undefined {
  if (!r) return undefined;
  return r.subscribers > 0 && r.sub_rate !== undefined ? r.sub_rate : r.pub_rate;
}

/**
 * Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
 *
 * @param doc The document.
 * @param name The block's name.
 * @param body The new content.
 * @returns The document, changed where the markers are (unchanged when they are absent).
 */
export function replaceBlock(doc: string, name: string, body: string): string {
  const open = `<!-- bench:${name} -->`;
  const close = `<!-- /bench:${name} -->`;
  const a = doc.indexOf(open);
  const b = doc.indexOf(close);
  if (a < 0 || b < a) return doc;
  return doc.slice(0, a + open.length) + "\n\n" + body.trim() + "\n\n" + doc.slice(b);
}

/**
 * Writes the plots and the README's generated blocks.
 *
 * @param readmePath The README to update (default: the repository's).
 * @param only The benches whose blocks and latency plots to regenerate (default: all); the
 *   floor plot, which shows every bench, is always redrawn.
 * @returns The files written.
 */
export async function report(
  readmePath: URL | string = new URL("README.md", ROOT),
  only: readonly string[] = [],
): Promise<string[]> {
  const all: AllResults = {};
  const dates: Record<string, string> = {};
  const loads: Record<string, string> = {};
  for (const name of BENCHES) {
    const loaded = loadResults(name);
    if (!loaded) continue;
    // Older result files have no ratios: compute them from the same run's points.
    addRatios(loaded.results, PROTOCOLS[name]!.fsbus, PEERS[name], batchOf);
    all[name] = loaded.results;
    dates[name] = loaded.date.slice(0, 16).replace("T", " ");
    loads[name] = loaded.load;
  }
  Deno.mkdirSync(DOCS, { recursive: true });
  const written: string[] = [];
  let doc = Deno.readTextFileSync(readmePath);
  for (const [name, results] of Object.entries(all)) {
    if (only.length > 0 && !only.includes(name)) continue;
    const svg = await latencyPlot(name, results, dates[name] ? `${dates[name]} UTC` : "");
    let body = benchTable(name, results);
    if (svg) {
      const file = `bench-${name}-latency.svg`;
      Deno.writeTextFileSync(new URL(file, DOCS), svg);
      written.push(`docs/${file}`);
      body =
        `![${PROTOCOLS[name]!.title} latency against its peers and its C floor](docs/${file})` +
        "\n\n" + body;
    }
    const dated = dates[name]
      ? `Measured ${dates[name]} UTC${
        loads[name] ? `, 1-minute load average ${loads[name]} on 2 cores` : ""
      } (bench/results/${name}.json).`
      : "";
    doc = replaceBlock(doc, name, `${dated}\n\n${body}`.trim());
  }
  // The mount's figures come from their own run (bench/mq.ts --fuse-only): mq-fuse.json.
  const fuse = only.length === 0 || only.includes("mq") || only.includes("mq-fuse")
    ? loadResults("mq-fuse")
    : undefined;
  if (fuse) {
    addRatios(fuse.results, "mq-fuse");
    addRatios(fuse.results, "mq-fuse-wb");
    const date = fuse.date.slice(0, 16).replace("T", " ");
    const dated = date
      ? `Measured ${date} UTC${
        fuse.load ? `, 1-minute load average ${fuse.load} on 2 cores` : ""
      } (bench/results/mq-fuse.json, median of 3 runs).`
      : "";
    doc = replaceBlock(doc, "mq-fuse", `${dated}\n\n${fuseTable(fuse.results)}`.trim());
  }
  const bridge = only.length === 0 || only.includes("bridge")
    ? bridgeBlock(new URL("bridge.json", RESULTS))
    : undefined;
  if (bridge) doc = replaceBlock(doc, "bridge", bridge);
  // The floor plot shows every bench but the bridge: not redrawn for the bridge's block alone.
  const onlyBridge = only.length > 0 && only.every((n) => n === "bridge");
  const floorSvg = onlyBridge ? undefined : await floorPlot(all);
  if (floorSvg) {
    Deno.writeTextFileSync(new URL("bench-floor-throughput.svg", DOCS), floorSvg);
    written.push("docs/bench-floor-throughput.svg");
    doc = replaceBlock(
      doc,
      "floor",
      "![Throughput of each protocol as a ratio to its C floor](docs/bench-floor-throughput.svg)" +
        (all.msgfs ? "\n\n" + floorGoals(all.msgfs) : ""),
    );
  }
  // The goals table reads every bench's JSON and draws nothing: always regenerated.
  doc = replaceBlock(doc, "goals", goalsBlock(RESULTS));
  Deno.writeTextFileSync(readmePath, doc);
  // The house formatter lays out the tables and the SVGs, so `deno fmt --check` stays clean.
  const readme = readmePath instanceof URL ? readmePath.pathname : readmePath;
  const svgs = written.map((f) => new URL(f, ROOT).pathname);
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", readme, ...svgs],
    stdout: "null",
    stderr: "inherit",
  }).output();
  written.push("README.md");
  return written;
}

if (import.meta.main) {
  for (const f of await report()) console.log(f);
}
