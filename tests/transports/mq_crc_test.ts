import assert from "node:assert/strict";
import { MqGroup, MqReader } from "../../transports/mq/mod.ts";
import { crc32, crc32Js, loadNativeCrc32, usingNativeCrc32 } from "../../transports/mq/_crc32.ts";
import { FsbusError } from "../../types.ts";
import { tempDir } from "../_helpers.ts";

// The first test must run first: it sees the runtime's CRC-32 not yet loaded (module state).

Deno.test("MqReader with 8 MiB and more to replay loads the runtime's CRC-32, and still refuses a changed byte", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const size = 64 * 1024;
  const count = 130; // 8.1 MiB
  {
    using w = MqGroup.create(g, { replay: "all" });
    const payload = new Uint8Array(size);
    for (let i = 0; i < count; i++) {
      payload.fill(i & 255);
      w.write("s", payload);
    }
  }
  // One byte of the last message changed, well past the first 64 bytes.
  const f = Deno.openSync(`${g}/s`, { read: true, write: true });
  try {
    f.seekSync((count - 1) * size + 1000, Deno.SeekMode.Start);
    f.writeSync(new Uint8Array([0xee]));
  } finally {
    f.close();
  }
  assert.equal(usingNativeCrc32(), false);
  const r = MqReader.open(g, ["s"], { replay: "all" });
  const got: number[] = [];
  await assert.rejects(
    async () => {
      for await (const m of r) {
        // Iteration waited for it: every message here was checked by the runtime's CRC-32.
        assert.equal(usingNativeCrc32(), true);
        assert.ok(m.data.every((b) => b === (m.seq & 255)), `message ${m.seq} is wrong`);
        got.push(m.seq);
      }
    },
    (e) => {
      assert.ok(e instanceof FsbusError && e.code === "damaged", String(e));
      assert.match(
        e.message,
        new RegExp(
          `^Cannot read stream "${g}/s": its message ${count - 1} \\(${size} bytes at offset ` +
            `${(count - 1) * size}\\) differs from what was written \\(checksum mismatch\\)`,
        ),
      );
      return true;
    },
  );
  assert.equal(usingNativeCrc32(), true);
  assert.deepEqual(got, [...Array(count - 1).keys()]);
});

Deno.test("crc32() gives crc32Js()'s values through the runtime's CRC-32 (random data, offsets, lengths, continuations)", async () => {
  assert.equal(await loadNativeCrc32(), true);
  assert.equal(usingNativeCrc32(), true);
  const buf = new Uint8Array(70_000);
  for (let at = 0; at < buf.length; at += 65_536) {
    crypto.getRandomValues(buf.subarray(at, Math.min(buf.length, at + 65_536)));
  }
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let t = 0; t < 5000; t++) {
    const from = rand(4096);
    const to = from + (t % 10 === 0 ? rand(66_000) : rand(3000));
    const init = t % 3 === 0 ? 0 : (rand(0x10000) * 0x10000 + rand(0x10000)) >>> 0;
    assert.equal(crc32(init, buf, from, to), crc32Js(init, buf, from, to), `${from}..${to}`);
    const part = buf.subarray(from, to);
    const mid = rand(part.length + 1);
    assert.equal(crc32(crc32(init, part, 0, mid), part, mid), crc32Js(init, part));
  }
  assert.equal(crc32(0, new TextEncoder().encode("123456789".repeat(8))), 0x8811a440); // as Python's zlib.crc32 gives
});
