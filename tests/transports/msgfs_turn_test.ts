import assert from "node:assert/strict";
import * as msgfs from "../../transports/msgfs/mod.ts";
import { tempDir } from "../_helpers.ts";

Deno.test("a blocking subscription serves timers and sockets while messages keep coming without a wait", async () => {
  using dir = tempDir();
  const pub = new msgfs.Publisher(dir.path, { sweep: false });
  // An echo server and a client in this process: their reads complete only when the event
  // loop polls its I/O, which a subscription that blocks its thread must let it do.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(16);
    const n = await conn.read(buf);
    if (n !== null) await conn.write(buf.subarray(0, n));
    return conn;
  })();
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  let timerFired = false;
  let echoed = false;
  const timer = setTimeout(() => (timerFired = true), 20);
  const echo = (async () => {
    await client.write(new Uint8Array([1, 2, 3]));
    const got = new Uint8Array(16);
    const n = await client.read(got);
    echoed = n === 3;
  })();
  const sub = msgfs.subscribe(dir.path, { blockMs: 60_000 });
  const it = sub[Symbol.asyncIterator]();
  const first = it.next(); // sets up the watch
  pub.publish("0");
  let received = 0;
  const limit = 100_000; // far beyond what the turns need (some thousands here)
  try {
    for (let r = await first; !r.done; r = await it.next()) {
      received++;
      if ((timerFired && echoed) || received >= limit) break;
      pub.publish(String(received)); // the next event is always there: the wait never blocks
    }
  } finally {
    clearTimeout(timer);
    await sub.close();
    await echo.catch(() => {});
    client.close();
    (await served).close();
    listener.close();
  }
  assert.ok(timerFired, `the timer did not fire in ${received} messages`);
  assert.ok(echoed, `the socket was not served in ${received} messages`);
  assert.ok(received < limit);
});
