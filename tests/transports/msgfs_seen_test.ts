import assert from "node:assert/strict";
import { SeenFiles } from "../../transports/msgfs/_seen.ts";

const v = (ino: number) => ({ ino, size: 5, mtimeSec: 1, mtimeNsec: 2 });

Deno.test("SeenFiles.add with the entry find() gave: a file skipped, then delivered, is no longer a skip", () => {
  const seen = new SeenFiles();
  const first = seen.find("a");
  assert.equal(first, -1);
  seen.add("a", undefined, 1000, "a symbolic link", first);
  seen.add("b", v(2), 1000, "larger than the 4-byte limit", seen.find("b"));
  const skipped = seen.find("a");
  assert.equal(seen.skipOf(skipped), "a symbolic link");
  // Replaced by a regular file and delivered: the caller passes what find() gave.
  seen.add("a", v(1), 2000, undefined, skipped);
  const now = seen.find("a");
  assert.notEqual(now, skipped);
  assert.equal(seen.skipOf(now), undefined);
  assert.equal(seen.skipOf(skipped), undefined); // the old entry's reason is gone with it
  assert.ok(seen.same(now, v(1)));
  assert.equal(seen.skipOf(seen.find("b")), "larger than the 4-byte limit");
  assert.equal(seen.size, 2);
});

Deno.test("SeenFiles.add without the entry looks it up itself, as before", () => {
  const seen = new SeenFiles();
  seen.add("a", undefined, 1000, "not a regular file");
  const skipped = seen.find("a");
  seen.add("a", v(1), 2000);
  assert.equal(seen.skipOf(skipped), undefined);
  assert.equal(seen.skipOf(seen.find("a")), undefined);
  seen.forget(1500); // the old entry goes, the new one stays
  assert.ok(seen.same(seen.find("a"), v(1)));
  seen.forget(3000);
  assert.equal(seen.find("a"), -1);
  assert.equal(seen.size, 0);
});

Deno.test("SeenFiles: many files remembered and forgotten keep their entries apart", () => {
  const seen = new SeenFiles();
  for (let i = 0; i < 5000; i++) {
    const name = `m${i}`;
    seen.add(name, v(i), i, i % 7 === 0 ? "skipped" : undefined, seen.find(name));
  }
  assert.equal(seen.size, 5000);
  for (let i = 0; i < 5000; i += 499) {
    const e = seen.find(`m${i}`);
    assert.ok(seen.same(e, v(i)));
    assert.equal(seen.skipOf(e), i % 7 === 0 ? "skipped" : undefined);
  }
  seen.forget(2500);
  assert.equal(seen.size, 2500);
  assert.equal(seen.find("m2499"), -1);
  assert.ok(seen.find("m2500") >= 0);
});
