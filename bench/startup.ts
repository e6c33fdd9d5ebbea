/**
 * Start-up time of the command: `--version`, `--help`, a one-shot `pub`, and `sub` printing
 * the first message (one already in the bus, `--since all -n 1`), each through
 * `deno run -A cli.ts` and `deno run -A mod.ts` (the `jsr:@x/fsbus` form). The runs of the
 * two entry points are interleaved so that a change in the machine's load hits both alike.
 *
 * Usage: deno run -A bench/startup.ts [--runs N] [--out FILE]
 *
 * @module
 */

import { parseArgs } from "node:util";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "15" }, out: { type: "string" } },
});
const runs = Number(values.runs);
const bus = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-startup-" });

function load(): number {
  return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
}

/** CPU time (user + system) of this process's waited-for children so far, in ms. */
function childrenCpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // cutime and cstime: fields 16 and 17 of proc(5), in clock ticks (100 per second here).
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

const cpu: Record<string, number[]> = {};

async function time(entry: string, args: string[]): Promise<number> {
  const cpuBefore = childrenCpuMs();
  const start = performance.now();
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/${entry}`, ...args],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const ms = performance.now() - start;
  (cpu[`${entry} ${args[0]}`] ??= []).push(childrenCpuMs() - cpuBefore);
  if (!r.success) {
    throw new Error(`${entry} ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
  }
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const cases: [string, string[]][] = [
  ["--version", ["--version"]],
  ["--help", ["--help"]],
  ["pub (one-shot)", ["pub", bus, "hello"]],
  ["sub, first message", ["sub", bus, "--since", "all", "-n", "1"]],
];
const entries = ["cli.ts", "mod.ts"];
const loadBefore = load();
// One warm-up of each, so the module cache is filled.
for (const e of entries) await time(e, ["--version"]);
const results: Record<string, Record<string, number>> = {};
const cpuResults: Record<string, Record<string, number>> = {};
for (const [name, args] of cases) {
  const samples: Record<string, number[]> = { "cli.ts": [], "mod.ts": [] };
  for (let i = 0; i < runs; i++) {
    for (const e of entries) samples[e]!.push(await time(e, args));
  }
  results[name] = Object.fromEntries(entries.map((e) => [e, median(samples[e]!)]));
  cpuResults[name] = Object.fromEntries(
    entries.map((e) => [e, median(cpu[`${e} ${args[0]}`]!.slice(-runs))]),
  );
}
const loadAfter = load();
Deno.removeSync(bus, { recursive: true });

console.log(
  `median of ${runs} runs: wall ms / CPU ms (load ${loadBefore} before, ${loadAfter} after)`,
);
console.log(`${"".padEnd(22)}${entries.map((e) => `deno run -A ${e}`.padStart(22)).join("")}`);
for (const [name, r] of Object.entries(results)) {
  const cells = entries.map((e) =>
    `${r[e]!.toFixed(0)} / ${cpuResults[name]![e]!.toFixed(0)}`.padStart(22)
  );
  console.log(`${name.padEnd(22)}${cells.join("")}`);
}
if (values.out) {
  Deno.writeTextFileSync(
    values.out,
    JSON.stringify(
      {
        runs,
        load_before: loadBefore,
        load_after: loadAfter,
        median_wall_ms: results,
        median_cpu_ms: cpuResults,
      },
      null,
      2,
    ) +
      "\n",
  );
}
