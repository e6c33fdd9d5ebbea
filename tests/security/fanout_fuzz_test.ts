/**
 * Fuzzing the ring files: random damage to headers, counters, lock words, client tables and
 * record lengths, truncation and extension, with every reader and writer operation run on
 * rings opened before and after. The driver runs in its own process (_fanout_fuzz_peer.ts)
 * so that a crash or a hang is seen as one: it must finish every case, in bounded time, with
 * nothing but FsbusErrors. Seeded: set FSBUS_FUZZ_SEED to replay or vary a run.
 *
 * @module
 */

import assert from "node:assert/strict";
import { stop, tempDir } from "../_helpers.ts";

const PEER = new URL("./_fanout_fuzz_peer.ts", import.meta.url).pathname;
const CASES = 300;

Deno.test("fanout fuzz: damaged ring files never crash, hang or confuse readers and writers", async () => {
  using dir = tempDir();
  const seed = Number(Deno.env.get("FSBUS_FUZZ_SEED") ?? 20261201);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", PEER, dir.path, String(seed), String(CASES)],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  // A hang detector, not a speed check: the run takes seconds; a hung case never ends.
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    void stop(child);
  }, 240_000);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const last = stdout.trim().split("\n").filter((l) => l.startsWith("case ")).at(-1) ?? "none";
  const context = `seed ${seed}, last case: ${last}\n${stderr.slice(-2000)}`;
  assert.equal(hung, false, `the fuzz run hung (${context})`);
  assert.equal(out.signal, null, `the fuzz run was killed by ${out.signal} (${context})`);
  assert.doesNotMatch(stdout, /^BAD /m, `not an FsbusError (${context})\n${stdout.slice(-3000)}`);
  assert.equal(out.code, 0, context);
  assert.equal(stdout.split("\n").filter((l) => l.startsWith("case ")).length, CASES);
  const outcomes: Record<string, number> = JSON.parse(
    stdout.slice(stdout.indexOf("OUTCOMES ") + 9).split("\n")[0]!,
  );
  const count = (re: RegExp) =>
    Object.entries(outcomes).filter(([k]) => re.test(k)).reduce((n, [, v]) => n + v, 0);
  // The damage was real (opens refused, writes timed out on a live lock owner, truncations
  // absorbed) and the rings still worked between the damage.
  assert.ok(count(/^open(Reader|Writer):invalid$/) > 0, JSON.stringify(outcomes));
  assert.ok(count(/^write(Batch)?:busy$/) > 0, JSON.stringify(outcomes));
  assert.ok(count(/:truncated$/) > 0, JSON.stringify(outcomes));
  assert.ok(count(/^take:ok$/) > 0 && count(/^write:ok$/) > 0, JSON.stringify(outcomes));
  // Every ring file was removed by the driver.
  assert.deepEqual([...Deno.readDirSync(dir.path)].map((e) => e.name), []);
});
