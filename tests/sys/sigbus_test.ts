import assert from "node:assert/strict";
import { tempDir } from "../_helpers.ts";

const SYS = new URL("../../sys/", import.meta.url).href;

/** Runs a script that maps a file, truncates it and touches the lost page. */
async function touchLostPage(guarded: boolean): Promise<Deno.CommandOutput> {
  using dir = tempDir();
  const script = `
    import { faultCount, faultedIn, guardRange, installGuard, unguardRange } from "${SYS}sigbus.ts";
    import { mapShared, truncateFd } from "${SYS}mman.ts";
    import { O, openFd } from "${SYS}fs.ts";
    const fd = openFd("${dir.path}/f", O.RDWR | O.CREAT, 0o600);
    truncateFd(fd, 65536);
    const m = mapShared(fd, 65536);
    const u8 = new Uint8Array(m.buffer);
    u8[40000] = 7;
    // Unguarded: the guard is installed, but this range is not registered with it.
    const slot = ${guarded} ? guardRange(m.pointer, m.length) : (installGuard(), -1);
    const before = faultCount();
    truncateFd(fd, 4096);
    const read = u8[40000];
    u8[50000] = 3;
    console.log(JSON.stringify({
      read, wrote: u8[50000], faults: faultCount() - before, hit: faultedIn(m.pointer, m.length, before),
    }));
    unguardRange(slot);
  `;
  return await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
}

Deno.test("guardRange() keeps a truncated mapping alive: it reads zeros and counts the faults", async () => {
  if (Deno.build.arch !== "x86_64" && Deno.build.arch !== "aarch64") return;
  const out = await touchLostPage(true);
  assert.equal(out.signal, null, new TextDecoder().decode(out.stderr));
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(r, { read: 0, wrote: 3, faults: 2, hit: true });
});

Deno.test("installGuard() passes a SIGBUS outside guarded ranges on, so it still kills the process", async () => {
  const out = await touchLostPage(false);
  assert.equal(out.signal, "SIGBUS");
});
