import assert from "node:assert/strict";
import { ROOT, tempDir } from "./_helpers.ts";

const readme = Deno.readTextFileSync(`${ROOT}/README.md`);
const exports: Record<string, string> = JSON.parse(
  Deno.readTextFileSync(`${ROOT}/deno.json`),
).exports;

/**
 * The README's TypeScript examples, with the package's specifiers pointed at this checkout.
 * A block marked ```` ```ts ignore ```` (one that needs a server, say) is only type-checked.
 */
function examples(): { line: number; code: string; ignore: boolean }[] {
  const out: { line: number; code: string; ignore: boolean }[] = [];
  const re = /^```ts( ignore)?\n([\s\S]*?)^```$/gm;
  for (const m of readme.matchAll(re)) {
    let code = m[2]!;
    code = code.replace(/"jsr:@x\/fsbus(\/[a-z]+)?"/g, (_, sub: string | undefined) => {
      const target = exports[sub ? `.${sub}` : "."];
      assert.ok(target, `no export "${sub}" in deno.json`);
      return JSON.stringify(new URL(target.replace(/^\.\//, ""), `file://${ROOT}/`).href);
    });
    out.push({ line: readme.slice(0, m.index).split("\n").length, code, ignore: !!m[1] });
  }
  return out;
}

Deno.test("the README's library examples run as printed, twice", async () => {
  using dir = tempDir();
  const all = examples();
  assert.ok(all.length >= 4, `only ${all.length} examples`);
  for (const { line, code, ignore } of all) {
    const file = `${dir.path}/example_${line}.ts`;
    Deno.writeTextFileSync(file, code);
    if (ignore) {
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["check", "--quiet", "--config", `${ROOT}/deno.json`, file],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(r.code, 0, `README.md:${line}: ${new TextDecoder().decode(r.stderr)}`);
      continue;
    }
    for (const run of [1, 2]) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", "--config", `${ROOT}/deno.json`, file],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const r = await child.output();
      clearTimeout(timer);
      assert.equal(
        r.code,
        0,
        `README.md:${line} (run ${run}): ${new TextDecoder().decode(r.stderr)}`,
      );
    }
  }
});

Deno.test("the README links only to files in this repository", () => {
  for (const m of readme.matchAll(/\]\(([^)#]+)[^)]*\)|`(\.\.\/[^`]*)`/g)) {
    const target = m[1] ?? m[2]!;
    assert.ok(!/^(https?:|\.\.\/|\/)/.test(target), `outside link: ${target}`);
    assert.ok(
      (() => {
        try {
          Deno.statSync(`${ROOT}/${target}`);
          return true;
        } catch {
          return false;
        }
      })(),
      `missing: ${target}`,
    );
  }
  assert.doesNotMatch(readme, /\.\.\/shared\//);
});
