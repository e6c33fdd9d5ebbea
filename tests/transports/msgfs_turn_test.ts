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

Deno.test("a blocking subscription with nothing coming lets timers run between its waits, takes what they publish, and stops when they abort it", async () => {
  using dir = tempDir();
  const pub = new msgfs.Publisher(dir.path, { sweep: false });
  const stop = new AbortController();
  // Short waits: a timer fires only at the turn after a wait that timed out.
  const sub = msgfs.subscribe(dir.path, { blockMs: 10, signal: stop.signal });
  const got: string[] = [];
  let ticks = 0;
  const ticker = setInterval(() => {
    ticks++;
    if (ticks === 3) pub.publish("from a timer");
    if (ticks === 6) stop.abort();
  }, 15);
  try {
    for await (const m of sub) got.push(new TextDecoder().decode(m.data));
  } finally {
    clearInterval(ticker);
    await pub.close();
  }
  assert.deepEqual(got, ["from a timer"]);
  assert.ok(ticks >= 6);
});
