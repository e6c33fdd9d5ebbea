/**
 * Runs every benchmark (or those named) and prints one table:
 *
 *   deno task bench                 # the full matrix
 *   deno task bench --quick         # a smoke run of each
 *   deno task bench msgfs fanout    # only these
 *   deno task bench --report        # no run: regenerate the README's tables and plots from
 *                                   # bench/results/*.json (bench/report.ts)
 *   deno task bench --report filebus mq   # only these benches' blocks (and the floor plot)
 *
 * Each benchmark module exports `run({ quick })`; results are written to
 * bench/results/NAME.json for each bench run (NAME-quick.json with --quick) and
 * bench/results/all.json (or all-quick.json).
 *
 * @module
 */

import { checkBenchFlags, loadAverage, type Result, row } from "./_lib.ts";

const BENCHES: Record<string, () => Promise<{ run(opts: { quick: boolean }): Promise<Result[]> }>> =
  {
    msgfs: () => import("./msgfs.ts"),
    filebus: () => import("./filebus.ts"),
    fanout: () => import("./fanout.ts"),
    mq: () => import("./mq.ts"),
    messagefs: () => import("./messagefs.ts"),
    bridge: () => import("./bridge.ts"),
  };

if (import.meta.main) checkBenchFlags(import.meta.url, ["--quick", "--report"]);

if (import.meta.main && Deno.args.includes("--report")) {
  const { report } = await import("./report.ts");
  const names = Deno.args.filter((a) => !a.startsWith("-"));
  for (const f of await report(undefined, names)) console.log(f);
} else if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const names = Deno.args.filter((a) => !a.startsWith("-"));
  for (const n of names) {
    if (!(n in BENCHES)) {
      console.error(`bench: unknown benchmark "${n}" (known: ${Object.keys(BENCHES).join(", ")})`);
      Deno.exit(2);
    }
  }
  const results: Record<string, Result[]> = {};
  const loads: Record<string, string> = {};
  Deno.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  for (const [name, load] of Object.entries(BENCHES)) {
    if (names.length > 0 && !names.includes(name)) continue;
    console.error(`== ${name}${quick ? " (quick)" : ""}`);
    const before = loadAverage();
    results[name] = await (await load()).run({ quick });
    loads[name] = `${before}–${loadAverage()}`;
    // Saved as each bench ends, so that a later bench's failure loses nothing before it.
    Deno.writeTextFileSync(
      new URL(`./results/${name}${quick ? "-quick" : ""}.json`, import.meta.url),
      JSON.stringify(
        { date: new Date().toISOString(), load: loads[name], results: results[name] },
        null,
        2,
      ) + "\n",
    );
  }
  console.log("");
  for (const [name, rs] of Object.entries(results)) {
    console.log(`== ${name}`);
    for (const r of rs) console.log(row(r));
  }
  const date = new Date().toISOString();
  Deno.writeTextFileSync(
    new URL(`./results/all${quick ? "-quick" : ""}.json`, import.meta.url),
    JSON.stringify({ date, results }, null, 2) + "\n",
  );
}
