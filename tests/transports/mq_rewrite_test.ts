import assert from "node:assert/strict";
import { checkGroup, MqGroup, MqReader } from "../../transports/mq/mod.ts";
import { sh, tempDir } from "../_helpers.ts";

Deno.test("MqGroup: a stream rewritten in place to the same size is a new incarnation, never mis-split", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  w.write("s", "one");
  w.write("s", "two");
  const old = MqReader.open(g, ["s"], { replay: "all" });
  const oldMessages = (async () => {
    const out: string[] = [];
    for await (const m of old) out.push(new TextDecoder().decode(m.data));
    return out;
  })();
  // "three\n" is six bytes, as "one" and "two" together: only the bytes tell.
  await sh(`echo three > ${g}/s`);
  w.sync();
  // Readers of the old incarnation get EOF (within a deadline, so a miss fails, not hangs).
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((r) => timer = setTimeout(() => r("no EOF"), 10_000));
  const got = await Promise.race([oldMessages, late]);
  clearTimeout(timer);
  if (got === "no EOF") {
    await old.close();
    await oldMessages;
  }
  assert.deepEqual(got, ["one", "two"]);
  const r = MqReader.open(g, ["s"], { replay: "all" });
  try {
    assert.deepEqual(r.poll().map((m) => new TextDecoder().decode(m.data)), ["three\n"]);
  } finally {
    await r.close();
  }
  // A touch changes the time, not the bytes: still the same stream.
  await sh(`touch ${g}/s`);
  w.write("s", "four\n");
  const again = MqReader.open(g, ["s"], { replay: "all" });
  try {
    assert.deepEqual(again.poll().map((m) => new TextDecoder().decode(m.data)), [
      "three\n",
      "four\n",
    ]);
  } finally {
    await again.close();
  }
  assert.deepEqual(checkGroup(g).problems, []);
});
