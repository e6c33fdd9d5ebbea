import assert from "node:assert/strict";
import { HeaderReader, parseTime, SubjectReader } from "../../transports/bridge/_headers.ts";
import { HEADER } from "../../transports/bridge/_envelope.ts";

const enc = new TextEncoder();

/** The reading the reader must match: the whole block decoded, split, first key wins. */
function reference(block: Uint8Array): Record<string, string> {
  const wanted = new Set<string>(Object.values(HEADER));
  const out: Record<string, string> = {};
  const lines = new TextDecoder().decode(block).split("\r\n");
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const at = line.indexOf(":");
    if (at < 0) continue;
    const k = line.slice(0, at);
    if (wanted.has(k) && out[k] === undefined) out[k] = line.slice(at + 1).trim();
  }
  return out;
}

function block(lines: string[]): Uint8Array {
  return enc.encode(["NATS/1.0", ...lines, "", ""].join("\r\n"));
}

Deno.test("HeaderReader: each block read as a whole reading would, whatever came before", () => {
  const fixed = ["Fsbus-Origin: o1", "Fsbus-Topic: a%2Fb", "Fsbus-Host: h"];
  const blocks: Uint8Array[] = [
    block([...fixed, "Fsbus-Id: id-1", "Fsbus-Time: 2026-12-02T13:10:35.123Z"]),
    // The same fixed lines: only the rest is read.
    block([...fixed, "Fsbus-Id: id-2", "Fsbus-Time: 2026-12-02T13:10:35.124Z"]),
    // A key repeated after the remembered lines: the first still wins.
    block([...fixed, "Fsbus-Id: id-3", "Fsbus-Origin: other", "Fsbus-Host:  spaced  "]),
    // Another sender: read in full, and remembered instead.
    block(["Fsbus-Origin: o2", "Fsbus-Host: h2", "Fsbus-Id: x"]),
    block(["Fsbus-Origin: o2", "Fsbus-Host: h2", "Fsbus-Id: y", "Fsbus-Pin-State: 1"]),
    // A block whose remembered part is a prefix of a longer line.
    block(["Fsbus-Origin: o2", "Fsbus-Host: h2x", "Fsbus-Id: z"]),
    // Non-ASCII values (decoded as UTF-8), unknown keys, lines without a colon, a status.
    enc.encode("NATS/1.0 503\r\nFsbus-Host: hôte\r\nOther: 1\r\nno colon\r\nFsbus-Id: é\r\n\r\n"),
    enc.encode("NATS/1.0\r\nFsbus-Host: \xff\r\n\r\n"),
    new Uint8Array([...enc.encode("NATS/1.0\r\nFsbus-Host: "), 0xc3, 13, 10, 13, 10]),
    // No varying line at all: the whole block is remembered, then met again.
    block(["Fsbus-Origin: o3"]),
    block(["Fsbus-Origin: o3"]),
    block(["Fsbus-Origin: o3", "Fsbus-Id: after"]),
    // Blocks cut short (no final CR LF, no line at all).
    enc.encode("NATS/1.0\r\nFsbus-Origin: o3"),
    enc.encode("NATS/1.0\r\nFsbus-Origin: o3x\r\n\r\n"),
    enc.encode("NATS/1.0\r\nFsbus-Origin: o4\r\nFsbus-Host: h"),
    enc.encode("NATS/1.0\r\nFsbus-Origin: o4\r\nFsbus-Host: h\r\n\r\n"),
    enc.encode("NATS/1.0\r\nFsbus-Origin: o4\r\nFsbus-Host: hh\r\n\r\n"),
    enc.encode("NATS/1.0"),
    new Uint8Array(0),
  ];
  const r = new HeaderReader();
  for (const [i, b] of blocks.entries()) {
    assert.deepEqual({ ...r.read(b) }, reference(b), `block ${i}`);
  }
  // Read again in reverse order, each after a different one.
  for (const [i, b] of blocks.toReversed().entries()) {
    assert.deepEqual({ ...r.read(b) }, reference(b), `block ${i} (reversed)`);
  }
});

Deno.test("parseTime: Date.parse's value for every form, within a second seen and outside", () => {
  const texts = [
    "2026-12-02T13:10:35.123Z",
    "2026-12-02T13:10:35.000Z",
    "2026-12-02T13:10:35.999Z",
    "2026-12-02T13:10:36.001Z",
    "2026-12-02T13:10:35.5Z",
    "2026-12-02T13:10:35.12xZ",
    "2026-12-02T13:10:35.123+01:00",
    "2026-12-02T24:00:00.000Z",
    "2026-12-02T24:00:00.123Z",
    "+012026-12-02T13:10:35.123Z",
    "Wed, 02 Dec 2026 13:10:35 GMT",
    "",
    "soon",
  ];
  for (const t of [...texts, ...texts.toReversed(), ...texts]) {
    assert.deepEqual(parseTime(t), Date.parse(t), t);
  }
});

Deno.test("SubjectReader: the client's text of each subject, whatever came before", () => {
  const enc = new TextEncoder();
  const subjects = ["app.a", "app.a", "app.b", "app.bb", "app.é", "app.a", "", "app.a"];
  const raw = [...subjects.map((s) => enc.encode(s)), new Uint8Array([0x61, 0xc3, 0x2e])];
  const r = new SubjectReader();
  for (const [i, bytes] of raw.entries()) {
    assert.equal(r.read(bytes), new TextDecoder().decode(bytes), `subject ${i}`);
  }
  // The bytes it was given may be reused by their owner: it kept its own copy.
  const reused = enc.encode("app.x");
  assert.equal(r.read(reused), "app.x");
  reused.set(enc.encode("app.y"));
  assert.equal(r.read(reused), "app.y");
});
