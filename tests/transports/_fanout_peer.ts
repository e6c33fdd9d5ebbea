/**
 * A peer process for the fanout tests: writes records through the library, or takes a
 * ring's writer lock and dies holding it.
 *
 * Usage:
 *   deno run -A _fanout_peer.ts write ROOT TOPIC ID COUNT MINLEN MAXLEN [MEET_DIR PEERS]
 *     COUNT records "ID:SEQ:LEN:xxxx...\n" of MINLEN..MAXLEN bytes, one write each
 *     (COUNT 0: forever); prints "ready" first. With MEET_DIR, after half its records it
 *     leaves a file there and waits until PEERS writers have, so the writers' second halves
 *     run at the same time whatever the scheduling.
 *   deno run -A _fanout_peer.ts lock-and-hang RING_FILE
 *     takes the writer lock, scribbles past the head, prints "locked", and waits to be killed.
 *
 * @module
 */

import { openWriter } from "../../transports/fanout/mod.ts";
import { Ring } from "../../transports/fanout/ring.ts";

const [mode, ...args] = Deno.args;
const encoder = new TextEncoder();

/** One record: "ID:SEQ:LEN:" then filler up to LEN bytes, ending in a newline. */
export function record(id: string, seq: number, len: number): Uint8Array {
  const head = `${id}:${seq}:${len}:`;
  const body = head + "x".repeat(Math.max(0, len - head.length - 1)) + "\n";
  return encoder.encode(body);
}

/** Leaves `ID` in `dir` and waits (up to 60 s) until `peers` writers have left theirs. */
async function meet(dir: string, id: string, peers: number): Promise<void> {
  Deno.writeTextFileSync(`${dir}/${id}`, "");
  const deadline = Date.now() + 60_000;
  while ([...Deno.readDirSync(dir)].length < peers) {
    if (Date.now() > deadline) throw new Error(`writer ${id}: the other writers never came`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

if (import.meta.main) {
  if (mode === "write") {
    const [root, topic, id, countRaw, minRaw, maxRaw, meetDir, peersRaw] = args as [
      string,
      string,
      string,
      string,
      string,
      string,
      string | undefined,
      string | undefined,
    ];
    const count = Number(countRaw);
    const min = Number(minRaw);
    const max = Number(maxRaw);
    const w = openWriter(topic, { root });
    console.log("ready");
    let seed = id.charCodeAt(0) * 7919;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let seq = 0; count === 0 || seq < count; seq++) {
      if (meetDir !== undefined && seq === Math.floor(count / 2)) {
        await meet(meetDir, id, Number(peersRaw));
      }
      w.write(record(id, seq, min + (rand() % (max - min + 1))));
      // Yield now and then so both writers truly interleave on 2 cores.
      if (seq % 64 === 63) await new Promise((r) => setTimeout(r, 0));
    }
    w.close();
  } else if (mode === "lock-and-hang") {
    const ring = Ring.open(args[0]!);
    ring.lock();
    const head = ring.head();
    // A torn write in progress: bytes past the committed head, never committed.
    ring.put(head, encoder.encode("GARBAGE-GARBAGE-GARBAGE\n"));
    console.log("locked");
    setInterval(() => {}, 1 << 30);
  } else {
    console.error(`unknown mode ${mode}`);
    Deno.exit(2);
  }
}
