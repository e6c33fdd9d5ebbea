import assert from "node:assert/strict";
import { checkGroup, MqGroup, type MqMessage, MqReader } from "../../transports/mq/mod.ts";
import {
  encodeRecord,
  HEADER,
  INTENT,
  MAGIC_V1,
  R,
  RECORD,
  recordProblem,
  u64,
} from "../../transports/mq/_layout.ts";
import { crc32 } from "../../transports/mq/_crc32.ts";
import { FsbusError } from "../../types.ts";
import { exists, sh, tempDir, waitFor } from "../_helpers.ts";
import { IN, Inotify } from "../../sys/inotify.ts";

const STREAMS = ["s0", "s1", "s2"];

/** Makes a group with 12 messages over three streams; returns each stream's messages. */
function makeGroup(path: string, count = 12): Record<string, string[]> {
  const expected: Record<string, string[]> = { s0: [], s1: [], s2: [] };
  using g = MqGroup.create(path, { replay: "all" });
  for (let i = 0; i < count; i++) {
    const stream = STREAMS[i % 3]!;
    const text = `m${i}-${"x".repeat(i % 7)}\n`;
    g.write(stream, text);
    expected[stream]!.push(text);
  }
  return expected;
}

/** One poll of stream "s" from its start (replay all), as text: a path, or an open group. */
async function pollStream(group: MqGroup | string): Promise<string[]> {
  const r = MqReader.open(group, ["s"], { replay: "all" });
  try {
    return r.poll().map((m) => new TextDecoder().decode(m.data));
  } finally {
    await r.close();
  }
}

/** Everything readable now from every stream, by stream (the reader opens the group). */
async function readNow(
  path: string,
  readOnly = false,
): Promise<Record<string, string[]>> {
  using g = MqGroup.open(path, { readOnly });
  const r = MqReader.open(g, STREAMS, { replay: "all" });
  try {
    const got: Record<string, string[]> = { s0: [], s1: [], s2: [] };
    // Until nothing more is readable: what is whole comes first, then damage is an error.
    for (let batch = r.poll(); batch.length > 0; batch = r.poll()) {
      for (const m of batch) got[m.stream]!.push(new TextDecoder().decode(m.data));
    }
    return got;
  } finally {
    await r.close();
  }
}

function patch(path: string, at: number, bytes: Uint8Array): void {
  const f = Deno.openSync(path, { read: true, write: true });
  try {
    f.seekSync(at, Deno.SeekMode.Start);
    f.writeSync(bytes);
  } finally {
    f.close();
  }
}

function isClear(err: unknown): boolean {
  return err instanceof FsbusError && /^Cannot [a-z]/.test(err.message) &&
    !/undefined|NaN|BigInt/.test(err.message);
}

Deno.test("checkGroup() reports a sound group as sound", () => {
  using tmp = tempDir();
  makeGroup(`${tmp.path}/g`);
  const report = checkGroup(`${tmp.path}/g`);
  assert.deepEqual(report.problems, []);
  assert.equal(report.messages, 12);
  assert.equal(report.streams, 3);
  assert.equal(report.version, 2);
});

Deno.test("MqReader refuses an index record with one flipped byte; checkGroup() with repair rebuilds it", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  patch(`${g}/.mq/index`, HEADER + 5 * RECORD + R.STATE, new Uint8Array([7]));
  await assert.rejects(() => readNow(g), /".mq\/index" record 5 is damaged \(checksum mismatch\)/);
  assert.throws(() => MqGroup.open(g), (e) => e instanceof FsbusError && e.code === "damaged");
  const report = checkGroup(g);
  assert.equal(report.problems.length, 1);
  assert.match(report.problems[0]!.problem, /^record 5: checksum mismatch/);
  assert.match(report.problems[0]!.repair!, /rebuild it/);
  assert.ok(checkGroup(g, { repair: true }).repaired);
  assert.deepEqual(checkGroup(g).problems, []);
  assert.deepEqual(await readNow(g), expected);
});

Deno.test("checkGroup() with repair drops a damaged last record and its bytes are indexed again", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  Deno.writeFileSync(`${g}/.mq/intent`, new Uint8Array(0)); // no intent to recover from
  patch(`${g}/.mq/index`, HEADER + 11 * RECORD + R.LENGTH, new Uint8Array([200]));
  await assert.rejects(() => readNow(g), /record 11 is damaged/);
  checkGroup(g, { repair: true });
  assert.deepEqual(await readNow(g), expected);
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("checkGroup() with repair cuts the index and streams back where nothing can be rebuilt", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  // Two neighbours damaged: neither can be rebuilt from the other.
  patch(`${g}/.mq/index`, HEADER + 6 * RECORD + R.OFFSET, new Uint8Array([9]));
  patch(`${g}/.mq/index`, HEADER + 7 * RECORD + R.OFFSET, new Uint8Array([9]));
  const report = checkGroup(g, { repair: true });
  assert.match(report.problems.at(-1)!.repair!, /6 messages from 6 on are lost/);
  const got = await readNow(g);
  for (const s of STREAMS) assert.deepEqual(got[s], expected[s]!.slice(0, 2));
  assert.deepEqual(checkGroup(g).problems, []);
  using w = MqGroup.open(g);
  w.write("s0", "after\n");
  assert.deepEqual((await readNow(g)).s0, [...expected.s0!.slice(0, 2), "after\n"]);
});

Deno.test("MqGroup.open() names a bad .mq/streams line; checkGroup() with repair rebuilds it from order", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  const lines = Deno.readTextFileSync(`${g}/.mq/streams`).split("\n");
  lines[1] = "12abc\ts1";
  Deno.writeTextFileSync(`${g}/.mq/streams`, lines.join("\n"));
  for (const open of [() => readNow(g), () => readNow(g, true)]) {
    await assert.rejects(open, (e) => {
      assert.ok(isClear(e), String(e));
      assert.match((e as Error).message, /".mq\/streams" line 2 is damaged \(expected/);
      return true;
    });
  }
  assert.throws(() => MqGroup.open(g).write("s1", "x"), /".mq\/streams" line 2/);
  checkGroup(g, { repair: true });
  assert.deepEqual(await readNow(g), expected);
});

Deno.test("MqGroup.open() refuses an emptied .mq/streams (no double delivery); checkGroup() restores it", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  Deno.writeFileSync(`${g}/.mq/streams`, new Uint8Array(0));
  await assert.rejects(() => readNow(g), /record 0 is damaged \(it names stream 0/);
  assert.throws(() => MqGroup.open(g), (e) => isClear(e));
  checkGroup(g, { repair: true });
  assert.deepEqual(await readNow(g), expected);
  using w = MqGroup.open(g);
  w.write("s2", "new\n");
  assert.deepEqual((await readNow(g)).s2, [...expected.s2!, "new\n"]);
});

Deno.test("MqReader.poll() fails naming a truncated stream, never reads zeros or other bytes", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  makeGroup(g);
  using reader = MqGroup.open(g, { readOnly: true });
  Deno.truncateSync(`${g}/s1`, 3);
  const r = MqReader.open(reader, ["s1"], { replay: "all" });
  try {
    assert.throws(() => r.poll(), /Cannot read stream ".*\/s1": it holds 3 bytes but/);
  } finally {
    await r.close();
  }
  assert.match(checkGroup(g).problems.map((p) => p.problem).join("\n"), /s1" holds 3 bytes/);
});

Deno.test("MqReader.poll() refuses an absurd record length before allocating for it", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  makeGroup(g, 3);
  // A well-formed (checksummed) last record claiming 2^50 bytes.
  const index = Deno.readFileSync(`${g}/.mq/index`);
  const v = new DataView(index.buffer);
  const at = HEADER + 2 * RECORD;
  encodeRecord(v, at, {
    state: 1,
    flags: 0,
    stream: v.getUint32(at + R.STREAM, true),
    seq: 2,
    offset: u64(v, at + R.OFFSET),
    length: 2 ** 50,
    local: 0,
    timeUs: 0,
    cum: u64(v, at + R.CUM),
    order: u64(v, at + R.ORDER),
    dataCrc: 0,
  }, 2);
  Deno.writeFileSync(`${g}/.mq/index`, index);
  using ro = MqGroup.open(g, { readOnly: true });
  const r = MqReader.open(ro, ["s2"], { replay: "all" });
  try {
    assert.throws(() => r.poll(), /Cannot read stream ".*\/s2": it holds \d+ bytes but/);
  } finally {
    await r.close();
  }
});

Deno.test("MqGroup.open() of a group trimmed by depth keeps its history (checkpoint)", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const data = new Uint8Array(1024).fill(65);
  {
    using w = MqGroup.create(g, { depth: "1000" });
    for (let i = 0; i < 5000; i++) w.write("s", data);
  }
  using again = MqGroup.open(g);
  assert.equal(again.next, 5000);
  again.write("s", "tail");
  assert.equal(again.next, 5001);
  const r = MqReader.open(again, ["s"], { replay: "all" });
  try {
    const got = r.poll();
    assert.equal(got.length, 1000);
    assert.equal(got.at(-1)!.seq, 5000);
    assert.ok(got.slice(0, -1).every((m) => m.data.length === 1024 && m.data[0] === 65));
  } finally {
    await r.close();
  }
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("MqGroup reads and writes a group made by an earlier version (format 1)", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  // Rewrite the index and streams in format 1: the position in place of the checksums.
  const index = Deno.readFileSync(`${g}/.mq/index`);
  const v = new DataView(index.buffer);
  index.set(MAGIC_V1, 0);
  index.fill(0, 8, 24);
  for (let seq = 0; seq < 12; seq++) {
    const at = HEADER + seq * RECORD;
    v.setUint32(at + R.SEQ, seq, true);
    v.setUint32(at + R.SEQ + 4, 0, true);
  }
  Deno.writeFileSync(`${g}/.mq/index`, index);
  const streams = Deno.readTextFileSync(`${g}/.mq/streams`).replace(/\t[0-9a-f]{8}\n/g, "\n");
  Deno.writeTextFileSync(`${g}/.mq/streams`, streams);
  assert.deepEqual(await readNow(g), expected);
  using w = MqGroup.open(g);
  w.write("s0", "v1\n");
  w.write("new", "stream\n");
  assert.deepEqual((await readNow(g)).s0, [...expected.s0!, "v1\n"]);
  assert.match(Deno.readTextFileSync(`${g}/.mq/streams`), /\tnew\n$/);
  assert.equal(checkGroup(g).version, 1);
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("MqGroup.sync() makes a stream truncated or rewritten in place a new incarnation, never mis-split", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  w.write("s", "one\n");
  w.write("s", "two\n");
  const old = MqReader.open(g, ["s"], { replay: "all" });
  const oldMessages = (async () => {
    const out: string[] = [];
    for await (const m of old) out.push(new TextDecoder().decode(m.data));
    return out;
  })();
  await sh(`echo three > ${g}/s`); // shorter: truncated, then written
  w.sync();
  // Readers of the old incarnation get EOF after what they could read.
  assert.deepEqual(await oldMessages, ["one\n", "two\n"]);
  const read = () => pollStream(g);
  assert.deepEqual(await read(), ["three\n"]);
  await sh(`echo a-much-longer-line > ${g}/s`); // longer: its last message's bytes changed
  w.sync();
  assert.deepEqual(await read(), ["a-much-longer-line\n"]);
  await sh(`echo appended >> ${g}/s`); // a plain append stays a message of its own
  w.sync();
  assert.deepEqual(await read(), ["a-much-longer-line\n", "appended\n"]);
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("MqGroup.write() holding the lock takes a stream truncated, rewritten or appended to between writes as a sync does", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  // Read through the writer's group: another open of it would wait for the lock held here.
  const read = () => pollStream(w);
  w.holdLock();
  try {
    w.write("s", "one\n");
    w.write("s", "two\n");
    // No sync between these writes: each change is found by the next write.
    await sh(`echo 3 > ${g}/s`); // shorter: truncated, then written
    w.write("s", "four\n");
    assert.deepEqual(await read(), ["3\n", "four\n"]);
    await sh(`echo a-much-longer-line > ${g}/s`); // longer: its last message's bytes changed
    w.write("s", "five\n");
    assert.deepEqual(await read(), ["a-much-longer-line\n", "five\n"]);
    await sh(`echo appended >> ${g}/s`); // a plain append stays a message of its own
    w.write("s", "six\n");
    assert.deepEqual(await read(), ["a-much-longer-line\n", "five\n", "appended\n", "six\n"]);
    await sh(`: > ${g}/s`); // emptied
    w.write("s", "seven\n");
    assert.deepEqual(await read(), ["seven\n"]);
  } finally {
    w.releaseLock();
  }
  assert.equal(
    Deno.readTextFileSync(`${g}/order`),
    "s\0".repeat(9), // one two 3 four a-much-longer-line five appended six seven
  );
  assert.deepEqual(checkGroup(g).problems, []);
});

/**
 * Makes group `g` in `dir` with the messages "one" and "two" on stream `s`, then drops the
 * second's record, as left by a writer killed after its bytes and before its commit: the
 * record is gone, its intent is left.
 */
function groupWithDeadWriter(dir: string): string {
  const g = `${dir}/g`;
  {
    using w = MqGroup.create(g, { replay: "all" });
    w.write("s", "one\n");
    w.write("s", "two\n");
  }
  const index = Deno.readFileSync(`${g}/.mq/index`);
  Deno.writeFileSync(`${g}/.mq/index`, index.subarray(0, HEADER + RECORD));
  return g;
}

Deno.test("MqGroup.open() never lengthens a stream truncated after a dead writer's intent", async () => {
  using tmp = tempDir();
  const g = groupWithDeadWriter(tmp.path);
  // Then a plain program empties the stream.
  Deno.truncateSync(`${g}/s`, 0);
  using w = MqGroup.open(g);
  assert.equal(Deno.statSync(`${g}/s`).size, 0, "no bytes added to the stream");
  w.write("s", "three\n");
  const r = MqReader.open(g, ["s"], { replay: "all" });
  try {
    assert.deepEqual(r.poll().map((m) => new TextDecoder().decode(m.data)), ["three\n"]);
  } finally {
    await r.close();
  }
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("MqGroup.open() commits a dead writer's whole message found after a plain append, the append first", async () => {
  using tmp = tempDir();
  // As a writer holding the lock, killed after its bytes landed behind a plain append made
  // since its last write, before it found the append (its intent names where the append
  // starts).
  const g = groupWithDeadWriter(tmp.path);
  Deno.writeTextFileSync(`${g}/s`, "one\nplain\ntwo\n"); // the same file, rewritten
  using w = MqGroup.open(g);
  const r = MqReader.open(w, ["s"], { replay: "all" });
  try {
    assert.deepEqual(
      r.poll().map((m) => new TextDecoder().decode(m.data)),
      ["one\n", "plain\n", "two\n"],
    );
  } finally {
    await r.close();
  }
  assert.equal(Deno.readTextFileSync(`${g}/order`), "s\0s\0s\0");
  assert.deepEqual(checkGroup(g).problems, []);
});

Deno.test("MqGroup.write(): every lock holder that writes an intent makes an inotify event on .mq/intent", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  const ino = new Inotify();
  try {
    ino.add(`${g}/.mq/intent`, IN.MODIFY);
    // (A mount's server watches it to know whether another writer, perhaps one killed
    // before its commit, held the lock while it did not.)
    for (let burst = 0; burst < 3; burst++) {
      w.holdLock();
      for (let i = 0; i < 5; i++) w.write("s", `${burst}.${i}\n`);
      w.releaseLock();
      assert.ok(ino.read().length > 0, `burst ${burst} made an event`);
    }
  } finally {
    await ino.close();
  }
});

Deno.test("MqGroup.write() survives .mq/intent truncated under its mapping, and writes its intent plainly then", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  // One burst under the lock: its intents after the first go through a shared mapping.
  w.holdLock();
  w.write("s", "one\n");
  w.write("s", "two\n");
  Deno.truncateSync(`${g}/.mq/intent`, 0); // by a process with write access
  w.write("s", "three\n"); // the store faults: the SIGBUS guard keeps the process alive
  // The intent of each write is in the file, sound, naming that write.
  const intentOf = (seq: number) => {
    const intent = Deno.readFileSync(`${g}/.mq/intent`);
    assert.equal(intent.length, RECORD);
    return recordProblem(new DataView(intent.buffer), 0, seq, 2, INTENT);
  };
  assert.equal(intentOf(2), undefined, "the third write's intent, written with pwrite");
  w.write("s", "four\n");
  assert.equal(intentOf(3), undefined);
  w.releaseLock();
  const r = MqReader.open(w, ["s"], { replay: "all" });
  try {
    assert.deepEqual(
      r.poll().map((m) => new TextDecoder().decode(m.data)),
      ["one\n", "two\n", "three\n", "four\n"],
    );
  } finally {
    await r.close();
  }
  assert.deepEqual(checkGroup(g).problems, []);
});

/** A small seeded PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function isPrefix(got: string[], want: string[]): boolean {
  return got.length <= want.length && got.every((m, i) => m === want[i]);
}

Deno.test("MqGroup and MqReader give right data or a clear error after random damage to the index (seeded)", async () => {
  const SEED = 0x5eed_0015;
  const CASES = 300;
  const rand = prng(SEED);
  const int = (n: number) => Math.floor(rand() * n);
  using tmp = tempDir();
  const pristine = `${tmp.path}/pristine`;
  const expected = makeGroup(pristine);
  const files = ["ctl", "order", "s0", "s1", "s2", ".mq/index", ".mq/streams", ".mq/settings"];
  const outcomes = { exact: 0, errors: 0 };
  for (let c = 0; c < CASES; c++) {
    const g = `${tmp.path}/c${c}`;
    Deno.mkdirSync(`${g}/.mq`, { recursive: true });
    for (const f of files) Deno.copyFileSync(`${pristine}/${f}`, `${g}/${f}`);
    Deno.writeFileSync(`${g}/.mq/intent`, new Uint8Array(0));
    // The damage: random bytes over index records (and now and then the header's cutoff),
    // over .mq/streams, or a file cut short or emptied.
    const kind = int(10);
    const target = kind < 7 ? ".mq/index" : ".mq/streams";
    const path = `${g}/${target}`;
    const size = Deno.statSync(path).size;
    let what: string;
    if (kind === 9) {
      const to = int(size);
      Deno.truncateSync(path, to);
      what = `${target} cut to ${to}`;
    } else {
      const from = target === ".mq/index" ? (kind === 0 ? 8 : HEADER) : 0;
      const bytes = new Uint8Array(1 + int(4)).map(() => int(256));
      const at = from + int(size - from);
      patch(path, at, bytes);
      what = `${target} at ${at}: ${bytes}`;
    }
    const label = `case ${c} (seed ${SEED}), ${what}`;
    // Every reader and writer either works with the right data or fails clearly.
    for (const readOnly of [true, false]) {
      try {
        const got = await readNow(g, readOnly);
        for (const s of STREAMS) {
          assert.ok(isPrefix(got[s]!, expected[s]!), `${label}: wrong data ${JSON.stringify(got)}`);
          if (!readOnly) assert.deepEqual(got[s], expected[s], label);
        }
        outcomes.exact++;
      } catch (err) {
        assert.ok(isClear(err), `${label}: ${err instanceof Error ? err.stack : err}`);
        outcomes.errors++;
      }
    }
    try {
      using w = MqGroup.open(g);
      w.write("s1", "after\n");
      const got = await readNow(g);
      assert.deepEqual(got.s1, [...expected.s1!, "after\n"], label);
    } catch (err) {
      assert.ok(isClear(err), `${label}: ${err instanceof Error ? err.stack : err}`);
    }
    Deno.removeSync(g, { recursive: true });
  }
  // Both outcomes occur: damage is found, and damage that misses what matters is harmless.
  assert.ok(outcomes.errors > 0 && outcomes.exact > 0, JSON.stringify(outcomes));
});

const MSG = 512;

/** The `i`th message of a trimmed group: its number, then a byte pattern of its own. */
function numbered(i: number): Uint8Array {
  const m = new Uint8Array(MSG).fill(33 + (i % 90));
  m.set(new TextEncoder().encode(`m${i}:`));
  return m;
}

/** Makes a group of 1,500 numbered messages in "s" with depth 300 (so history is trimmed,
 * stream pages are freed and a checkpoint is written); returns its cutoff. */
function makeTrimmed(path: string): number {
  using g = MqGroup.create(path, { replay: "all", depth: 300 });
  for (let i = 0; i < 1500; i++) g.write("s", numbered(i));
  return cutoffOf(path);
}

function cutoffOf(path: string): number {
  const word = new Uint8Array(8);
  const f = Deno.openSync(`${path}/.mq/index`);
  try {
    f.seekSync(8, Deno.SeekMode.Start);
    f.readSync(word);
  } finally {
    f.close();
  }
  return u64(new DataView(word.buffer), 0);
}

/** The message numbers of "s" readable now (replay all), each checked to be whole. */
async function readNumbers(path: string): Promise<number[]> {
  using g = MqGroup.open(path, { readOnly: true });
  const r = MqReader.open(g, ["s"], { replay: "all" });
  try {
    const all: MqMessage[] = [];
    for (let batch = r.poll(); batch.length > 0; batch = r.poll()) all.push(...batch);
    return all.map((m) => {
      const i = Number(/^m(\d+):/.exec(new TextDecoder().decode(m.data.subarray(0, 12)))![1]);
      assert.deepEqual(m.data, numbered(i), `message ${i} is not whole`);
      assert.equal(m.seq, i);
      return i;
    });
  } finally {
    await r.close();
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, k) => from + k);
}

Deno.test("checkGroup() sets a damaged cutoff again, just after the last message trimming freed", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const cutoff = makeTrimmed(g);
  assert.ok(cutoff >= 1200, `cutoff ${cutoff}`);
  assert.deepEqual(await readNumbers(g), range(cutoff, 1500));
  patch(`${g}/.mq/index`, 9, new Uint8Array([0xff])); // the cutoff's second byte
  await assert.rejects(
    () => readNumbers(g),
    /Cannot read group ".*": ".mq\/index" cutoff is damaged \(checksum mismatch\)/,
  );
  const report = checkGroup(g);
  assert.equal(report.problems.length, 1, JSON.stringify(report.problems));
  assert.match(report.problems[0]!.problem, /^the cutoff's checksum does not match/);
  const guess = Number(/^repair would: set it to (\d+),/.exec(report.problems[0]!.repair!)![1]);
  // Pages are freed 64 KiB at a time: the guess is at most that far below the real cutoff.
  assert.ok(guess <= cutoff && cutoff - guess <= (64 * 1024) / MSG + 8, `${guess} vs ${cutoff}`);
  assert.ok(checkGroup(g, { repair: true }).repaired);
  assert.deepEqual(checkGroup(g).problems, []);
  assert.deepEqual(await readNumbers(g), range(guess, 1500));
  {
    using w = MqGroup.open(g);
    w.write("s", numbered(1500)); // the next write trims to the depth again
  }
  assert.deepEqual(await readNumbers(g), range(1201, 1501));
});

Deno.test("checkGroup() sets a cutoff past the last record again (format 1 too)", async () => {
  for (const version of [2, 1]) {
    using tmp = tempDir();
    const g = `${tmp.path}/g`;
    const cutoff = makeTrimmed(g);
    if (version === 1) {
      // Format 1: the position in place of the checksums, no CRC on the cutoff or lines.
      const index = Deno.readFileSync(`${g}/.mq/index`);
      const v = new DataView(index.buffer);
      index.set(MAGIC_V1, 0);
      index.fill(0, 16, 24);
      for (let seq = 0; seq < 1500; seq++) {
        const at = HEADER + seq * RECORD;
        if (index.subarray(at, at + RECORD).every((b) => b === 0)) continue; // freed
        v.setUint32(at + R.SEQ, seq, true);
        v.setUint32(at + R.SEQ + 4, 0, true);
      }
      Deno.writeFileSync(`${g}/.mq/index`, index);
      const lines = Deno.readTextFileSync(`${g}/.mq/streams`).replace(/\t[0-9a-f]{8}\n/g, "\n");
      Deno.writeTextFileSync(`${g}/.mq/streams`, lines);
    }
    const word = new Uint8Array(12);
    const wv = new DataView(word.buffer);
    wv.setUint32(0, 1_000_000, true);
    wv.setUint32(8, crc32(0, word, 0, 8), true);
    patch(`${g}/.mq/index`, 8, word.subarray(0, version === 1 ? 8 : 12));
    await assert.rejects(() => readNumbers(g), /cutoff is damaged \(it is past the last record/);
    const report = checkGroup(g, { repair: true });
    assert.equal(report.version, version);
    assert.match(report.problems[0]!.problem, /^the cutoff \(1000000\) is past its last record/);
    assert.deepEqual(checkGroup(g).problems, []);
    const got = await readNumbers(g);
    assert.ok(got[0]! <= cutoff, `${version}: ${got[0]} vs ${cutoff}`);
    assert.deepEqual(got, range(got[0]!, 1500));
  }
});

Deno.test("checkGroup() with repair: random damage to the cutoff is found and set right (seeded)", async () => {
  const SEED = 0x5eed_c0f;
  const CASES = 60;
  const rand = prng(SEED);
  const int = (n: number) => Math.floor(rand() * n);
  using tmp = tempDir();
  // One group, damaged and repaired in turn (a copy would be another inode, which the check
  // does not bind to the stream's line); its header is put back after each case.
  const g = `${tmp.path}/g`;
  const cutoff = makeTrimmed(g);
  const header = Deno.readFileSync(`${g}/.mq/index`).subarray(0, 32);
  let found = 0;
  for (let c = 0; c < CASES; c++) {
    // Random bytes over the cutoff and its CRC (header bytes 8..15 and 16..19).
    const bytes = new Uint8Array(1 + int(4)).map(() => int(256));
    const at = 8 + int(12);
    patch(`${g}/.mq/index`, at, bytes);
    const label = `case ${c} (seed ${SEED}), at ${at}: ${bytes}`;
    // Before: every reader reads a whole tail of the history, or fails clearly.
    try {
      const got = await readNumbers(g);
      assert.deepEqual(got, range(got[0] ?? 1500, 1500), label);
    } catch (err) {
      assert.ok(isClear(err), `${label}: ${err instanceof Error ? err.stack : err}`);
    }
    const report = checkGroup(g, { repair: true });
    if (report.problems.length > 0) found++;
    assert.ok(report.problems.every((p) => p.repair !== undefined), `${label}: ${report.problems}`);
    // After: sound, and the kept history reads whole, from at most the real cutoff.
    assert.deepEqual(checkGroup(g).problems, [], label);
    const got = await readNumbers(g);
    assert.ok(got[0]! <= cutoff, `${label}: starts at ${got[0]}, past ${cutoff}`);
    assert.deepEqual(got, range(got[0]!, 1500), label);
    patch(`${g}/.mq/index`, 0, header);
  }
  assert.ok(found > CASES / 4, `only ${found} of ${CASES} cases damaged the cutoff`);
});

Deno.test("MqReader.poll() refuses a message whose bytes changed in its stream file, naming it", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  const expected = makeGroup(g);
  // s1 holds messages 1, 4, 7, 10; message 4 ("m4-xxxx\n") starts at offset 5.
  patch(`${g}/s1`, 5, new Uint8Array([0x21]));
  const why = new RegExp(
    `^Cannot read stream "${g}/s1": its message 4 \\(8 bytes at offset 5\\) differs from ` +
      `what was written \\(checksum mismatch\\); see "fsbus mq check ${g}"$`,
  );
  for (const readOnly of [true, false]) {
    await assert.rejects(() => readNow(g, readOnly), (e) => {
      assert.ok(e instanceof FsbusError && e.code === "damaged", String(e));
      assert.match(e.message, why);
      return true;
    });
  }
  // The other streams read on.
  {
    using ro = MqGroup.open(g, { readOnly: true });
    const r = MqReader.open(ro, ["s0", "s2"], { replay: "all" });
    try {
      const got = r.poll().map((m) => new TextDecoder().decode(m.data));
      assert.deepEqual(got.sort(), [...expected.s0!, ...expected.s2!].sort());
    } finally {
      await r.close();
    }
  }
  // check names it; repair cannot make the lost bytes whole, so it leaves them an error.
  const report = checkGroup(g, { repair: true });
  assert.equal(report.repaired, false);
  assert.deepEqual(report.problems.map((p) => [p.file, p.repair]), [["s1", undefined]]);
  assert.match(report.problems[0]!.problem, /message 4 \(8 bytes at offset 5\) differ/);
  await assert.rejects(() => readNow(g), (e) => e instanceof FsbusError && why.test(e.message));
});

Deno.test("MqGroup.write() raced by a plain truncation between its check and its write commits the message where it landed, in a new incarnation", async () => {
  using tmp = tempDir();
  const g = `${tmp.path}/g`;
  using w = MqGroup.create(g, { replay: "all" });
  w.write("s", "first\n");
  // A plain program truncating the stream again and again, up to 0.2 ms apart (a truncation
  // only: every byte in the stream is this writer's). A write whose check came before a
  // truncation and its bytes after lands below where its index says the stream ends.
  const truncator = new Deno.Command("python3", {
    args: [
      "-c",
      "import os,sys,time,random\n" +
      "open(sys.argv[3], 'w').close()\n" +
      "while not os.path.exists(sys.argv[2]):\n" +
      "  os.truncate(sys.argv[1], 0); time.sleep(random.random() / 5000)",
      `${g}/s`,
      `${tmp.path}/stop`,
      `${tmp.path}/started`,
    ],
  }).spawn();
  try {
    await waitFor(() => exists(`${tmp.path}/started`), "the truncating program to start");
    for (let i = 0; i < 3000; i++) w.write("s", `m${i}\n`);
  } finally {
    Deno.writeFileSync(`${tmp.path}/stop`, new Uint8Array());
    await truncator.status;
  }
  w.write("s", "last\n");
  // Nothing but this writer ever wrote bytes: no message may be taken as a plain program's
  // (foreign), and each record's bytes are the message it was written with.
  const index = Deno.readFileSync(`${g}/.mq/index`);
  const v = new DataView(index.buffer);
  let foreign = 0;
  for (let seq = 0; seq < w.next; seq++) {
    if (v.getUint8(HEADER + seq * RECORD + R.FLAGS) !== 0) foreign++;
  }
  assert.equal(foreign, 0, `${foreign} of ${w.next} messages taken as foreign`);
  assert.deepEqual(checkGroup(g).problems, []);
  const r = MqReader.open(w, ["s"], { replay: "all" });
  try {
    const got: string[] = [];
    for (let batch = r.poll(); batch.length > 0; batch = r.poll()) {
      for (const m of batch) got.push(new TextDecoder().decode(m.data));
    }
    assert.equal(got.at(-1), "last\n");
    for (const m of got) assert.match(m, /^(first|m\d+|last)\n$/);
  } finally {
    await r.close();
  }
});
