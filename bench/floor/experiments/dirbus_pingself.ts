/**
 * EXPERIMENT, not part of the bench: the directory bus's wake path without the sleep, two
 * versions of the code alternated in one process. Each message is published, then taken
 * through a blocking subscription (`blockMs`), whose `poll(2)` finds the event at once; the
 * wall-clock and CPU time per message of each version, and their paired difference.
 *
 *   git archive OLD_COMMIT | tar xf - -C /tmp/old
 *   deno run -A bench/floor/experiments/dirbus_pingself.ts /tmp/old . [N] [ROUNDS]
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any
const here = new URL("../../..", import.meta.url).pathname;
const abs = (p: string) => (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`);
const roots = { A: abs(Deno.args[0] ?? here), B: abs(Deno.args[1] ?? here) };
const mods: Record<string, any> = {};
for (const [k, r] of Object.entries(roots)) mods[k] = await import(`${r}/transports/msgfs/mod.ts`);
const { cpuTimeMs } = await import(`${here}/bench/_lib.ts`);
const N = Number(Deno.args[2] ?? 5000), ROUNDS = Number(Deno.args[3] ?? 8);
const res: Record<string, { us: number[]; cpu: number[] }> = {
  A: { us: [], cpu: [] },
  B: { us: [], cpu: [] },
};
const payload = new Uint8Array(1024);
for (let r = 0; r < ROUNDS; r++) {
  for (const v of r % 2 ? ["B", "A"] : ["A", "B"]) {
    const m = mods[v];
    const dir = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "fsbus-d8-ps-" });
    const pub = new m.Publisher(dir, { sweep: false });
    const sub = m.subscribe(dir, { blockMs: 50 });
    const it = sub[Symbol.asyncIterator]();
    const next = it.next();
    pub.publish(payload);
    await next;
    for (let i = 0; i < 500; i++) {
      pub.publish(payload);
      await it.next();
    } // warm-up
    const c0 = cpuTimeMs(), t0 = performance.now();
    for (let i = 0; i < N; i++) {
      pub.publish(payload);
      await it.next();
    }
    const dt = performance.now() - t0, cpu = cpuTimeMs() - c0;
    await sub.close();
    await pub.close();
    Deno.removeSync(dir, { recursive: true });
    res[v]!.us.push(dt * 1000 / N);
    res[v]!.cpu.push(cpu * 1000 / N);
  }
}
const med = (x: number[]) => [...x].sort((a, b) => a - b)[Math.floor(x.length / 2)]!;
for (const v of ["A", "B"]) {
  console.log(
    v,
    "wall us/msg",
    res[v]!.us.map((x) => x.toFixed(1)).join(" "),
    "median",
    med(res[v]!.us).toFixed(2),
    "| cpu median",
    med(res[v]!.cpu).toFixed(2),
  );
}
const d = res.A!.us.map((a, i) => res.B!.us[i]! - a);
console.log(
  "paired B-A wall:",
  d.map((x) => x.toFixed(1)).join(" "),
  "median",
  med(d).toFixed(2),
  "; load",
  Deno.readTextFileSync("/proc/loadavg").split(" ")[0],
);
