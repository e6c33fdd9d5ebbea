import assert from "node:assert/strict";
import { fsbus, ROOT, sh } from "./_helpers.ts";

Deno.test("compile.sh --check compiles cli.ts with every command's modules embedded", async () => {
  const r = await sh(`cd ${ROOT} && bash compile.sh --check`);
  assert.equal(r.code, 0, r.stderr + r.text);
  const version = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).version;
  assert.match(r.text, new RegExp(`checking fsbus ${version.replaceAll(".", "\\.")} for `));
  const listing = r.text + r.stderr;
  for (const part of ["cli.ts", "cli", "transports", "sys", "deno.json"]) {
    assert.match(listing, new RegExp(`[─┬] ${part}[ /]`), `${part} is embedded`);
  }
  assert.match(r.text, /deno run --allow-all cli\.ts/);
});

Deno.test("the compiled entry point runs under deno run with the same permissions", async () => {
  const script = Deno.readTextFileSync(`${ROOT}/compile.sh`);
  const perms = script.match(/^PERMISSIONS=\((.*)\)$/m)?.[1]?.split(" ");
  assert.deepEqual(perms, ["--allow-all"]);
  const child = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms!, "--quiet", `${ROOT}/cli.ts`, "--version"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(child.code, 0);
  assert.equal(new TextDecoder().decode(child.stdout), (await fsbus(["--version"])).text);
});

Deno.test("compile.sh rejects unknown options and a DENORT_BIN for another target", async () => {
  let r = await sh(`cd ${ROOT} && bash compile.sh --nope`);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'compile.sh: unknown option "--nope"\n');
  const other = Deno.build.arch === "x86_64"
    ? "aarch64-unknown-linux-gnu"
    : "x86_64-unknown-linux-gnu";
  r = await sh(`cd ${ROOT} && DENORT_BIN=/nonexistent bash compile.sh ${other}`);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /DENORT_BIN is a runtime for this machine .* cannot build/);
});

Deno.test("compile.sh that cannot build leaves no empty dist/", async () => {
  const copy = Deno.makeTempDirSync({ prefix: "fsbus-compile-" });
  try {
    for (const f of ["compile.sh", "deno.json", "deno.lock", "cli.ts", "types.ts"]) {
      Deno.copyFileSync(`${ROOT}/${f}`, `${copy}/${f}`);
    }
    const host = Deno.build.arch === "x86_64"
      ? "x86_64-unknown-linux-gnu"
      : "aarch64-unknown-linux-gnu";
    // A runtime that does not exist: deno compile fails at once, without the network.
    const r = await sh(`DENORT_BIN=${copy}/no-denort bash ${copy}/compile.sh ${host}`);
    assert.equal(r.code, 1, r.text);
    assert.ok(!existsSync(`${copy}/dist`), "dist/ is left behind");
  } finally {
    Deno.removeSync(copy, { recursive: true });
  }
});

function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("every command module cli.ts imports at run time is one compile.sh --includes", () => {
  // cli.ts builds these specifiers at run time, so deno compile embeds them only through
  // compile.sh's --include of every cli/*.ts not starting with "_".
  const cli = Deno.readTextFileSync(`${ROOT}/cli.ts`);
  const paths = [...cli.matchAll(/importCommand<[^>]*>\("\.\/(cli\/[^"]+)"\)/g)].map((m) => m[1]!);
  assert.ok(paths.length >= 10, `found ${paths.length}`);
  for (const path of paths) {
    assert.match(path, /^cli\/[^_/][^/]*\.ts$/, path);
    assert.ok(Deno.statSync(`${ROOT}/${path}`).isFile, path);
  }
  assert.match(Deno.readTextFileSync(`${ROOT}/compile.sh`), /for f in cli\/\*\.ts; do/);
});
