import assert from "node:assert/strict";
import {
  CLI,
  collect,
  exists,
  fsbus,
  runnableByOthers,
  sh,
  spawnFsbus,
  tempDir,
  waitFor,
} from "../_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(out.subarray(off, off + 65536));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function startsWith(whole: Uint8Array, part: Uint8Array): boolean {
  if (part.length > whole.length) return false;
  for (let i = 0; i < part.length; i++) if (whole[i] !== part[i]) return false;
  return true;
}

/** Kills a child (if still running) and waits for it, draining what is left of its pipes. */
async function finish(child: Deno.ChildProcess, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  try {
    child.kill(signal);
  } catch {
    // already gone
  }
  await child.status;
  for (const name of ["stdout", "stderr"] as const) {
    try {
      await child[name].cancel();
    } catch {
      // not piped, or already consumed
    }
  }
}

/** Chunks with text, NUL bytes, invalid UTF-8 and a final line without a newline. */
const CHUNKS: Uint8Array[] = [
  enc.encode("hello\n"),
  new Uint8Array([0, 1, 2, 0, 255, 254, 10]),
  enc.encode("two\nlines\n"),
  enc.encode("no newline at the end"),
];

/** The bytes as a printf(1) format: every byte as an octal escape. */
function printfFormat(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
}

/** A shell producer, PROTOCOLS.md §2: under flock(1), write FILE.__new__, mv it over FILE. */
function shellPut(file: string, bytes: Uint8Array): string {
  return `( flock -x 9 && printf '${printfFormat(bytes)}' > "${file}.__new__" && ` +
    `mv "${file}.__new__" "${file}" ) 9>"${file}.lock"`;
}

/** The same, in back-pressure mode: wait while FILE exists; re-check under the lock. */
function shellPutLossless(file: string, bytes: Uint8Array): string {
  return `while :; do
  while [ -e "${file}" ]; do sleep 0.005; done
  ( flock -x 9 || exit 1
    [ -e "${file}" ] && exit 3
    printf '${printfFormat(bytes)}' > "${file}.__new__" && mv "${file}.__new__" "${file}"
  ) 9>"${file}.lock"
  case $? in 0) break ;; 3) continue ;; *) exit 1 ;; esac
done`;
}

Deno.test("cli filebus: shell producer -> fsbus consumer, lossy, byte for byte", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  // Options after the action are accepted too.
  const child = spawnFsbus(["filebus", "consumer", "--filename", file]);
  const out = collect(child.stdout);
  try {
    const sent: Uint8Array[] = [];
    for (const chunk of CHUNKS) {
      assert.equal((await sh(shellPut(file, chunk))).code, 0);
      sent.push(chunk);
      const want = concat(sent);
      await waitFor(() => startsWith(out.bytes(), want), "the consumer to print the chunk");
    }
    assert.deepEqual(out.bytes(), concat(CHUNKS));
  } finally {
    await finish(child);
  }
});

Deno.test("cli filebus: fsbus producer -> shell consumer, lossy, no EOF marker", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const child = spawnFsbus(["filebus", "--filename", file, "--sleep-interval", "0.02", "producer"]);
  const w = child.stdin.getWriter();
  try {
    for (const chunk of CHUNKS) {
      await w.write(chunk);
      // Flushed after 20 ms without input; a shell consumer reads FILE under the lock.
      await waitFor(async () => {
        const r = await sh(`flock "${file}.lock" cat "${file}" 2>/dev/null`);
        return r.code === 0 && r.stdout.length === chunk.length &&
          r.stdout.every((b, i) => b === chunk[i]);
      }, "FILE to hold the chunk");
    }
    await w.close();
    assert.equal((await child.status).code, 0);
    // At end of input the lossy producer just exits: FILE keeps the last chunk.
    assert.deepEqual(Deno.readFileSync(file), CHUNKS.at(-1));
    assert.equal(exists(`${file}.lock`), true);
    assert.equal(exists(`${file}.__new__`), false);
  } finally {
    await finish(child);
  }
});

Deno.test("cli filebus: shell producer -> fsbus consumer, lossless, EOF marker ends it", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const child = spawnFsbus(["filebus", "--back-pressure", "--filename", file, "consumer"]);
  try {
    const script = [
      ...CHUNKS.map((c) => shellPutLossless(file, c)),
      shellPutLossless(file, new Uint8Array()),
    ]
      .join("\n");
    const r = await sh(script);
    assert.equal(r.code, 0, r.stderr);
    const [{ code }, stdout] = await Promise.all([
      child.status,
      new Response(child.stdout).bytes(),
    ]);
    assert.equal(code, 0);
    assert.deepEqual(stdout, concat(CHUNKS));
    assert.equal(exists(file), false, "the consumer removed the EOF marker");
  } finally {
    await finish(child);
  }
});

Deno.test("cli filebus: fsbus producer -> shell consumer, lossless, with EOF marker", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const input = concat([...CHUNKS, randomBytes(50_000)]);
  Deno.writeFileSync(`${dir.path}/in`, input);
  // A shell consumer, PROTOCOLS.md §2: under the lock, cat FILE, then rm it; empty = EOF.
  const consumerScript = `
    while :; do
      if [ ! -e "${file}" ]; then sleep 0.005; continue; fi
      ( flock -x 9 || exit 1
        [ -e "${file}" ] || exit 0
        if [ -s "${file}" ]; then cat "${file}" >> "${dir.path}/out"; rm -f "${file}"; exit 0; fi
        rm -f "${file}"; echo EOF > "${dir.path}/eof"; exit 2
      ) 9>"${file}.lock"
      case $? in 0) ;; 2) break ;; *) exit 1 ;; esac
    done`;
  const shell = new Deno.Command("bash", { args: ["-c", consumerScript] }).spawn();
  try {
    const r = await fsbus([
      "filebus",
      "--lossless",
      "--filename",
      file,
      "--block-size",
      "4096",
      "producer",
    ], {
      stdin: input,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await shell.status).code, 0);
    assert.deepEqual(Deno.readFileSync(`${dir.path}/out`), input);
    assert.equal(Deno.readTextFileSync(`${dir.path}/eof`), "EOF\n");
  } finally {
    try {
      shell.kill();
    } catch {
      // done
    }
    await shell.status;
  }
});

Deno.test("cli filebus: fsbus producer -> fsbus consumer, lossless, binary, any order of options", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const input = concat([
    randomBytes(300_000),
    enc.encode("\0end without newline"),
  ]);
  const child = spawnFsbus(["filebus", "consumer", "--lossless", "--filename", file]);
  try {
    const [p, stdout] = await Promise.all([
      fsbus(
        ["filebus", "--filename", file, "--block-size", "1000", "producer", "--back-pressure"],
        {
          stdin: input,
        },
      ),
      new Response(child.stdout).bytes(),
    ]);
    assert.equal(p.code, 0, p.stderr);
    assert.equal((await child.status).code, 0);
    assert.deepEqual(stdout, input);
  } finally {
    await finish(child);
  }
});

Deno.test("cli filebus: several lossless consumers take each chunk once; a lossy one watches", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  // 64-byte records read from a regular file with --block-size 64: one record per chunk.
  const records = Array.from(
    { length: 400 },
    (_, i) => `record ${String(i).padStart(6, "0")}`.padEnd(63) + "\n",
  );
  Deno.writeTextFileSync(`${dir.path}/in`, records.join(""));
  const takers = [0, 1, 2].map(() =>
    spawnFsbus(["filebus", "--lossless", "--filename", file, "consumer"])
  );
  const outs = takers.map((c) => collect(c.stdout));
  const watcher = spawnFsbus(["filebus", "--filename", file, "consumer"]);
  const watched = collect(watcher.stdout);
  try {
    const p = await sh(
      `exec deno run -A --quiet "${CLI}" filebus --lossless --block-size 64 --filename "${file}" producer < "${dir.path}/in"`,
    );
    assert.equal(p.code, 0, p.stderr);
    // The one EOF marker ends one lossless consumer; the others wait for more.
    const first = await Promise.race(takers.map((c) => c.status));
    assert.equal(first.code, 0);
    await waitFor(() => !exists(file), "the EOF marker to be taken");
    for (const c of takers) await finish(c);
    await Promise.all(outs.map((o) => o.done));
    const taken = outs.flatMap((o) => (o.text().match(/.{63}\n/gs) ?? []));
    assert.equal(outs.reduce((n, o) => n + o.bytes().length, 0), 400 * 64, "whole records only");
    assert.deepEqual([...taken].sort(), records, "each chunk exactly once across consumers");
    await finish(watcher);
    await watched.done;
    const seen = watched.text().match(/.{63}\n/gs) ?? [];
    assert.equal(seen.length * 64, watched.bytes().length, "the lossy consumer saw whole chunks");
    assert.ok(seen.length > 0, "the lossy consumer saw chunks");
    assert.ok(seen.every((r) => records.includes(r)));
  } finally {
    for (const c of [...takers, watcher]) await finish(c);
  }
});

Deno.test("cli filebus: a producer killed mid-chunk leaves no partial chunk visible", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const size = 32 << 20;
  const input = new Uint8Array(2 * size);
  input.fill(0x41, 0, size); // chunk A
  input.fill(0x42, size); // chunk B
  Deno.writeFileSync(`${dir.path}/in`, input);
  const stdin = Deno.openSync(`${dir.path}/in`);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      CLI,
      "filebus",
      "--lossless",
      "--block-size",
      String(size),
      "--filename",
      file,
      "producer",
      // Whole blocks only: an idle flush on a loaded machine would split chunk A.
      "--blocking-read",
    ],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pump = stdin.readable.pipeTo(child.stdin).catch(() => {});
  try {
    await waitFor(() => exists(file) && Deno.statSync(file).size === size, "chunk A", 20_000);
    // Take chunk A; the producer then writes chunk B to FILE.__new__: kill it meanwhile.
    await sh(`flock "${file}.lock" rm -f "${file}"`);
    await waitFor(() => exists(`${file}.__new__`) || exists(file), "the producer to start chunk B");
    child.kill("SIGKILL");
    await child.status;
    if (exists(file)) {
      const seen = Deno.readFileSync(file);
      assert.equal(seen.length, size, "FILE is a whole chunk");
      assert.ok(seen.every((b) => b === 0x42));
    }
    // A consumer started now sees no partial chunk: nothing, or the whole of chunk B.
    const r = await sh(`flock "${file}.lock" cat "${file}" 2>/dev/null | wc -c`);
    assert.ok(r.text.trim() === "0" || r.text.trim() === String(size), r.text);
    // A new producer recovers the bus (FILE.__new__ is simply overwritten).
    await sh(`flock "${file}.lock" rm -f "${file}"`);
    const again = await fsbus(["filebus", "--filename", file, "producer"], { stdin: "after" });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(Deno.readTextFileSync(file), "after");
  } finally {
    await finish(child, "SIGKILL");
    await pump;
  }
});

function oneLineError(r: { code: number; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line expected: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

Deno.test("cli filebus: bad input gives one-line errors and non-zero exits", async () => {
  using dir = tempDir();
  oneLineError(
    await fsbus(["filebus", "--filename", `${dir.path}/missing/bus`, "producer"], {
      stdin: "x",
    }),
    1,
    /^fsbus: Cannot use the directory ".*\/missing": no such file or directory$/,
  );
  Deno.mkdirSync(`${dir.path}/bus`);
  for (const role of ["producer", "consumer"]) {
    oneLineError(
      await fsbus(["filebus", "--filename", `${dir.path}/bus`, role], { stdin: "x" }),
      1,
      /^fsbus: Cannot use ".*\/bus" as a filebus file: is a directory$/,
    );
  }
  oneLineError(
    await fsbus(["filebus", "--nope", "consumer"]),
    2,
    /^fsbus: Unknown option "--nope"/,
  );
  // As the original: a missing action or --filename exits 1, other usage errors 2.
  oneLineError(
    await fsbus(["filebus", "--filename", "x"]),
    1,
    /^fsbus: Cannot run "fsbus filebus": expected an action, producer or consumer/,
  );
  oneLineError(
    await fsbus(["filebus", "consumer"]),
    1,
    /^fsbus: Cannot run "fsbus filebus": the option "--filename FILE" is required$/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "--impl", "perl", "consumer"]),
    2,
    /^fsbus: Cannot use "perl" for "--impl": expected bash or python$/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "--b", "consumer"]),
    2,
    /^fsbus: Cannot tell which option "--b" means in "fsbus filebus": could be --back-pressure, --block-size, --blocking-read$/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "both"]),
    2,
    /^fsbus: Unknown action "both"/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "--block-size", "lots", "producer"]),
    2,
    /^fsbus: Cannot use "lots" for "--block-size": expected bytes/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "--sleep-interval", "soon", "consumer"]),
    2,
    /^fsbus: Cannot use "soon" for ".*": expected a number of seconds/,
  );
  oneLineError(
    await fsbus(["filebus", "--filename", "x", "consumer", "--blocking-read"]),
    2,
    /^fsbus: Cannot use "--blocking-read" with "fsbus filebus consumer": it is for the producer only$/,
  );
});

Deno.test("cli filebus: a lock file the user cannot open", async () => {
  using dir = tempDir();
  Deno.chmodSync(dir.path, 0o777);
  const denoDir = Deno.makeTempDirSync({ prefix: "fsbus-deno-dir-" });
  try {
    Deno.chownSync(denoDir, 65534, 65534);
    Deno.writeFileSync(`${dir.path}/bus.lock`, new Uint8Array());
    Deno.chmodSync(`${dir.path}/bus.lock`, 0o000);
    const asNobody = (role: string, file = `${dir.path}/bus`) =>
      sh(
        `exec setpriv --reuid 65534 --regid 65534 --clear-groups ` +
          `"${runnableByOthers().deno}" run -A --quiet "${runnableByOthers().cli}" filebus ` +
          `--filename "${file}" ${role} </dev/null`,
        {
          env: {
            DENO_DIR: denoDir,
            HOME: denoDir,
            NO_COLOR: "1",
            PATH: Deno.env.get("PATH") ?? "",
          },
        },
      );
    for (const role of ["producer", "consumer"]) {
      oneLineError(
        await asNobody(role),
        1,
        /^fsbus: Cannot open ".*\/bus\.lock": permission denied$/,
      );
    }
    // A directory the user cannot write: the missing lock file cannot be created.
    Deno.mkdirSync(`${dir.path}/ro`, { mode: 0o755 });
    oneLineError(
      await asNobody("producer", `${dir.path}/ro/bus`),
      1,
      /^fsbus: Cannot open ".*\/ro\/bus\.lock": permission denied$/,
    );
    // A readable lock file is enough for an eavesdropping lossy consumer (flock works read-only).
    Deno.chmodSync(`${dir.path}/bus.lock`, 0o644);
    Deno.writeTextFileSync(`${dir.path}/bus`, "readable");
    const child = new Deno.Command("setpriv", {
      args: [
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        runnableByOthers().deno,
        "run",
        "-A",
        "--quiet",
        runnableByOthers().cli,
        "filebus",
        "--filename",
        `${dir.path}/bus`,
        "consumer",
      ],
      env: { DENO_DIR: denoDir, HOME: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = collect(child.stdout);
    try {
      await waitFor(() => out.text() === "readable", "the read-only consumer to print FILE");
    } finally {
      await finish(child);
    }
  } finally {
    Deno.removeSync(denoDir, { recursive: true });
  }
});

Deno.test("cli filebus: --help shows the original's usage and how to install an alias", async () => {
  const r = await fsbus(["filebus", "--help"]);
  assert.equal(r.code, 0);
  assert.match(r.text, /--back-pressure/);
  assert.match(r.text, /\{producer \[--blocking-read\], consumer\}/);
  assert.match(r.text, /alias filebus='fsbus filebus'/);
  const sub = await fsbus(["filebus", "consumer", "-h"]);
  assert.equal(sub.code, 0);
});

Deno.test("cli filebus: polling (--no-file-monitoring) and no FFI permission still work", async () => {
  // On /tmp: Deno asks for --allow-all to open files under /dev (and so /dev/shm).
  using dir = tempDir("/tmp");
  const file = `${dir.path}/bus`;
  const input = enc.encode("polled\0data\nlast line");
  // Without --allow-ffi: Deno's file API, polling every sleep interval, said once on stderr.
  const noFfi = ["run", "--quiet", "--allow-read", "--allow-write", "--allow-env", CLI];
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...noFfi,
      "filebus",
      "--lossless",
      "--sleep-interval",
      "0.01",
      "--filename",
      file,
      "consumer",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  try {
    const p = await fsbus(
      [
        "filebus",
        "--lossless",
        "--no-file-monitoring",
        "--sleep-interval",
        "0.01",
        "-v",
        "--filename",
        file,
        "producer",
      ],
      { stdin: input },
    );
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stderr, /polling/);
    const [{ code }, stdout, stderr] = await Promise.all([
      child.status,
      new Response(child.stdout).bytes(),
      new Response(child.stderr).text(),
    ]);
    assert.equal(code, 0, stderr);
    assert.deepEqual(stdout, input);
    assert.match(
      stderr,
      /^fsbus: filebus: file monitoring needs --allow-ffi; polling every 0.01 s\n$/,
    );
  } finally {
    await finish(child);
  }
});

Deno.test("cli filebus: a broken stdout ends the consumer quietly with status 141", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  Deno.writeTextFileSync(file, "x".repeat(1_000_000));
  const r = await sh(
    `deno run -A --quiet "${CLI}" filebus --filename "${file}" consumer | head -c 10; ` +
      `echo " \${PIPESTATUS[0]}"`,
  );
  assert.equal(r.code, 0);
  assert.equal(r.text, "xxxxxxxxxx 141\n");
  assert.equal(dec.decode(new TextEncoder().encode(r.stderr)), "");
});

Deno.test("cli filebus: unambiguous prefixes of long options work, as with the original", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const consumer = spawnFsbus(["filebus", "--file", file, "--loss", "--sleep", "0.05", "consumer"]);
  const out = collect(consumer.stdout);
  try {
    const r = await fsbus(
      ["filebus", "--back", "--file", file, "--no-file", "--verb", "producer", "--blocking"],
      { stdin: "abbreviated\n" },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /lossless producer/);
    const status = await consumer.status;
    assert.equal(status.code, 0);
    assert.equal(out.text(), "abbreviated\n");
  } finally {
    await finish(consumer);
  }
});

Deno.test("cli filebus: a consumer waits for its directory to appear", async () => {
  using dir = tempDir();
  const file = `${dir.path}/later/deeper/bus`;
  const consumer = spawnFsbus(["filebus", "--lossless", "--filename", file, "consumer"]);
  const out = collect(consumer.stdout);
  const err = collect(consumer.stderr);
  try {
    await waitFor(() => err.text().includes("waiting for the directory"), "the notice");
    assert.match(
      err.text(),
      /^fsbus: filebus: waiting for the directory ".*\/later\/deeper" to appear\n$/,
    );
    Deno.mkdirSync(`${dir.path}/later/deeper`, { recursive: true });
    const r = await fsbus(["filebus", "--lossless", "--filename", file, "producer"], {
      stdin: "arrived\n",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await consumer.status).code, 0);
    assert.equal(out.text(), "arrived\n");
  } finally {
    await finish(consumer);
  }
});

Deno.test("cli filebus: a lossy consumer makes no lock file before FILE exists", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  const consumer = spawnFsbus(["filebus", "-v", "--filename", file, "consumer"]);
  const out = collect(consumer.stdout);
  const err = collect(consumer.stderr);
  try {
    await waitFor(() => err.text().includes("lossy consumer"), "the consumer to start");
    assert.equal(exists(`${file}.lock`), false, "no lock file yet");
    const r = await fsbus(["filebus", "--filename", file, "producer"], { stdin: "first\n" });
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => out.text() === "first\n", "the chunk");
    assert.ok(exists(`${file}.lock`));
  } finally {
    await finish(consumer);
  }
});

Deno.test("cli filebus: a lossless consumer whose output closes leaves the chunk and exits 141", async () => {
  using dir = tempDir();
  const file = `${dir.path}/bus`;
  Deno.writeTextFileSync(file, "first\n"); // a chunk waiting to be taken
  // head takes one byte and exits; the first chunk fits in the pipe, so it was written out
  // and is consumed. The next chunk cannot be written: it must stay for the next consumer.
  const pipeline = sh(
    `"${Deno.execPath()}" run -A --quiet "${CLI}" filebus --lossless --filename "${file}" ` +
      `consumer | head -c1; echo " status=\${PIPESTATUS[0]}"`,
  );
  // Offer chunk after chunk until the consumer finds its output closed (head may still be
  // reading when the first ones are written out).
  let done = false;
  const result = pipeline.finally(() => (done = true));
  let last = "";
  for (let n = 2; !done; n++) {
    await waitFor(() => done || !exists(file), "the chunk to be taken or the consumer to end");
    if (done) break;
    last = `chunk ${n}\n`;
    Deno.writeTextFileSync(`${dir.path}/tmp`, last);
    Deno.renameSync(`${dir.path}/tmp`, file);
  }
  const r = await result;
  assert.equal(r.text, "f status=141\n");
  assert.equal(Deno.readTextFileSync(file), last, "the chunk it could not write is still there");
  // The next consumer gets it, then the EOF marker.
  const next = spawnFsbus(["filebus", "--lossless", "--filename", file, "consumer"]);
  const out = collect(next.stdout);
  try {
    await waitFor(() => out.text() === last, "the next consumer to get the chunk");
    const eof = await fsbus(["filebus", "--lossless", "--filename", file, "producer"], {
      stdin: "",
    });
    assert.equal(eof.code, 0);
    assert.equal((await next.status).code, 0);
  } finally {
    await finish(next);
  }
});

Deno.test("cli filebus: rm -rf of a bus directory is not undone by a running consumer", async () => {
  using base = tempDir();
  for (let round = 0; round < 5; round++) {
    const dir = `${base.path}/bus${round}`;
    Deno.mkdirSync(dir);
    const file = `${dir}/chan`;
    const r = await fsbus(["filebus", "--filename", file, "producer"], { stdin: "x\n" });
    assert.equal(r.code, 0, r.stderr);
    const consumer = spawnFsbus(["filebus", "--filename", file, "consumer"]);
    const out = collect(consumer.stdout);
    try {
      await waitFor(() => out.text() === "x\n", "the consumer to read the chunk");
      const rm = await sh(`rm -rf "${dir}"`);
      assert.equal(rm.code, 0, `rm -rf: ${rm.stderr}`);
      assert.equal(exists(dir), false);
    } finally {
      await finish(consumer);
    }
  }
});
