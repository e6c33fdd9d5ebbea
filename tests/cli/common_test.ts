import assert from "node:assert/strict";
import {
  collect,
  fsbus,
  inotifyWatches,
  ROOT,
  stop,
  tempDir,
  waitFor,
} from "../_helpers.ts";

Deno.test("deno run mod.ts runs the CLI: sub --count 1 prints a published message and exits", async () => {
  using bus = tempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${ROOT}/mod.ts`, "sub", bus.path, "--count", "1"],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const out = collect(child.stdout);
  const err = collect(child.stderr);
  try {
    await waitFor(() => inotifyWatches(child.pid) > 0, "the subscriber's watch");
    assert.equal((await fsbus(["pub", bus.path, "hello"])).code, 0);
    const status = await child.status;
    await out.done;
    await err.done;
    assert.equal(status.code, 0, err.text());
    assert.match(out.text(), /^hello\n?$/);
  } finally {
    await stop(child);
  }
});

Deno.test("importing mod.ts runs nothing", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import * as m from "${ROOT}/mod.ts"; console.log(typeof m.msgfs.subscribe)`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  assert.equal(new TextDecoder().decode(r.stdout), "function\n");
});
