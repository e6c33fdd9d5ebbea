import assert from "node:assert/strict";
import { createTopic, RootWatch, subscribe, topicNames } from "../../transports/fanout/mod.ts";
import { tempDir } from "../_helpers.ts";

Deno.test("Subscriber.wake() ends a pending wait on several rings, and the subscription goes on", async () => {
  using tmp = tempDir();
  const sub = subscribe(["a", "b"], { root: tmp.path, create: true });
  try {
    let ended = false;
    const pending = sub.wait().then(() => (ended = true));
    sub.wake();
    await pending;
    assert.ok(ended);
    assert.equal(sub.closed, false);
    assert.deepEqual(sub.takeNow(), []);
  } finally {
    await sub.close();
  }
});

Deno.test("RootWatch sees a root removed and made again, and topics linked into it", async () => {
  using tmp = tempDir();
  const root = `${tmp.path}/deep/rings`;
  await using watch = new RootWatch(root);
  assert.equal(watch.watchingRoot, false);
  assert.equal(watch.changed(), false);
  // Made in two steps: first the parent's parent is watched, then the parent, then the root.
  Deno.mkdirSync(`${tmp.path}/deep`);
  assert.equal(await watch.wait(5000), "ready");
  assert.ok(watch.changed());
  assert.equal(watch.watchingRoot, false);
  Deno.mkdirSync(root);
  assert.equal(await watch.wait(5000), "ready");
  assert.ok(watch.changed());
  assert.equal(watch.watchingRoot, true);
  createTopic("news", { root });
  assert.equal(await watch.wait(5000), "ready");
  assert.ok(watch.changed());
  assert.deepEqual(topicNames(root), ["news"]);
  // Removed and made again: the new directory is watched.
  Deno.removeSync(root, { recursive: true });
  assert.equal(await watch.wait(5000), "ready");
  assert.ok(watch.changed());
  assert.equal(watch.watchingRoot, false);
  createTopic("weather", { root });
  assert.equal(await watch.wait(5000), "ready");
  while (watch.changed()) {
    if (watch.watchingRoot) break;
    assert.equal(await watch.wait(5000), "ready");
  }
  assert.equal(watch.watchingRoot, true);
  assert.deepEqual(topicNames(root), ["weather"]);
});
