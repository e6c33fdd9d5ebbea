/**
 * `fsbus filebus`: a drop-in for the `filebus` command (0.3.5), same command line, same
 * files on disk, event-driven.
 *
 * @module
 */

import { FsbusError, UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  parseDuration,
  parseSize,
  readerChoice,
  readerOptions,
  stringOption,
} from "./_args.ts";
import { isBrokenPipe, MessageOutput, out, warn, writeAll } from "./_output.ts";
import {
  consumer,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_SLEEP_INTERVAL_MS,
  type FilebusOptions,
  producer,
  readChunks,
  waitForDirectory,
} from "../transports/filebus/mod.ts";

/** The shared reader options, worded for chunks, with --raw as the (original's) default. */
function consumerOptions(): CommandSpec["options"] {
  const shared = readerOptions();
  return {
    raw: {
      ...shared.raw!,
      help: "consumer: write each chunk's bytes exactly (the default, as the original)",
    },
    json: {
      ...shared.json!,
      help: "consumer: one JSON object per chunk: id (a running number), topic (FILE), " +
        'time (received), size, data and encoding ("utf-8", or "base64" for binary)',
    },
    count: {
      ...shared.count!,
      help: "consumer: exit after N chunks (lossless: N chunks taken, the rest left for " +
        "other consumers)",
    },
    exec: {
      ...shared.exec!,
      help: "consumer: run CMD with sh once per chunk, the chunk on its standard input and " +
        "FSBUS_ID, FSBUS_TOPIC, FSBUS_TIME in its environment",
    },
  };
}

const SPEC: CommandSpec = {
  name: "fsbus filebus",
  usage: "[--back-pressure] [--block-size N] [--lossless]\n" +
    "         [--no-file-monitoring] [--filename FILE] [--sleep-interval N] [-v]\n" +
    "         {producer [--blocking-read], consumer}",
  summary: "A regular file as a multicast named pipe, compatible with filebus 0.3.5 (Python and " +
    "bash) on disk and on the command line. The producer reads stdin and publishes it in " +
    "chunks to FILE (written to FILE.__new__ and renamed over FILE under an flock(2) on " +
    "FILE.lock); each consumer writes the chunks it sees to stdout exactly as they are, as " +
    "the original does: unlike fsbus's other readers no newline is added (a chunk is any " +
    "piece of a stream, not a line), so --raw is the default; --json, -n/--count and --exec " +
    "work as for the other readers. Lossy by default: " +
    "consumers see the latest chunk and may miss some. With --back-pressure each chunk goes " +
    "to exactly one consumer, the producer waits for it to be taken, and EOF is passed on. " +
    "Options may come before or after producer/consumer.",
  options: {
    "back-pressure": {
      type: "boolean",
      help: "Lossless back-pressure protocol: unconsumed chunks make producers wait; " +
        "consumers exit at the producer's EOF",
    },
    "block-size": {
      type: "string",
      value: "N",
      help: "Most bytes per read; a chunk is flushed once it holds at least N bytes",
      default: String(DEFAULT_BLOCK_SIZE),
    },
    lossless: { type: "boolean", help: "An alias for --back-pressure" },
    "no-file-monitoring": {
      type: "boolean",
      help: "Poll every --sleep-interval instead of waking on inotify events",
    },
    filename: {
      type: "string",
      value: "FILE",
      help: "Path of the data file (required); FILE.lock and FILE.__new__ live beside it",
    },
    "sleep-interval": {
      type: "string",
      value: "N",
      help: "Check at least every N seconds (also 100ms, 2s); the producer flushes input " +
        "idle this long",
      default: String(DEFAULT_SLEEP_INTERVAL_MS / 1000),
    },
    verbose: {
      type: "boolean",
      short: "v",
      multiple: true,
      help: "Say what happens on stderr (repeat for every chunk)",
    },
    "blocking-read": {
      type: "boolean",
      help: "producer: flush only full blocks and at EOF (no idle flush)",
    },
    impl: {
      type: "string",
      value: "NAME",
      help: "bash or python: accepted for compatibility (both speak the same protocol here)",
    },
    implementation: { type: "string", value: "NAME", help: "Same as --impl" },
    // The shared reader options, for the consumer. Raw is the default here, as the original
    // writes chunks exactly: a chunk is any piece of a stream, not a line.
    ...consumerOptions(),
  },
  examples: [
    "# Multicast a stream: one producer, any number of consumers",
    "strings /dev/urandom | fsbus filebus --filename /dev/shm/random.fb producer",
    "fsbus filebus --filename /dev/shm/random.fb consumer",
    "# A lossless queue of one chunk: each chunk to exactly one consumer, then EOF",
    "fsbus filebus --back-pressure --filename /dev/shm/jobs consumer > out.bin &",
    "fsbus filebus --back-pressure --filename /dev/shm/jobs producer < in.bin",
    "# Take one chunk from the queue and exit (the next one stays for others)",
    "fsbus filebus --lossless --filename /dev/shm/jobs consumer -n 1",
    "# Each chunk as one JSON object",
    "fsbus filebus --filename /dev/shm/random.fb consumer --json",
    "# Make scripts written for the original run unchanged",
    "alias filebus='fsbus filebus'",
  ],
  positionals: { min: 0, max: 1, names: "producer or consumer" },
};

const HELP_TAIL = `
Long options may be abbreviated to any unambiguous prefix, as the original's
(--file, --back, --loss, --sleep, --no-file, --verb, --blocking).

A consumer whose directory does not exist yet waits for it (saying so on
stderr). A lossless consumer removes a chunk only after writing it out: if its
output is closed (... consumer | head -c1), the chunk stays for the next
consumer.

Exit status: 0 at end of input (producer), at the EOF marker (lossless
consumer) or after --count chunks; 1 on errors, including a missing --filename
or action (as the original); 2 on other usage errors; 141 when the consumer's
output is closed (as the original, killed by SIGPIPE). A lossy consumer runs
until interrupted.

To install "filebus" as this command, add to ~/.bashrc:
  alias filebus='fsbus filebus'
or, for scripts that run "filebus" from PATH, create an executable
~/.local/bin/filebus:
  #!/bin/sh
  exec fsbus filebus "$@"
`;

/**
 * Runs `fsbus filebus`: `producer` copies stdin to the bus in chunks, `consumer` copies
 * chunks to stdout.
 *
 * @param args The arguments after "filebus".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { filebus } from "./filebus.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * // A consumer runs until stopped; the producer writes standard input (here a message).
 * const code = await filebus(["--filename", `${dir}/bus`, "producer", "--help"]);
 * assert.equal(code, 0);
 * await assert.rejects(filebus(["--filename", `${dir}/bus`, "both"]), /Unknown action "both"/);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function filebus(args: string[]): Promise<number> {
  const parsed = parse(SPEC, expandPrefixes(args));
  if (parsed.help) {
    out(helpText(SPEC) + HELP_TAIL);
    return 0;
  }
  const { values, positionals } = parsed;
  const role = positionals[0];
  if (role === undefined) {
    // The original exits 1 here (argparse's own errors exit 2).
    throw new FsbusError(
      "invalid",
      'Cannot run "fsbus filebus": expected an action, producer or consumer (see "fsbus filebus --help")',
    );
  }
  if (role !== "producer" && role !== "consumer") {
    throw new UsageError(
      `Unknown action "${role}" for "fsbus filebus": expected producer or consumer`,
    );
  }
  if (role === "consumer" && values["blocking-read"]) {
    throw new UsageError(
      'Cannot use "--blocking-read" with "fsbus filebus consumer": it is for the producer only',
    );
  }
  if (role === "producer") {
    for (const name of ["raw", "json", "count", "exec"]) {
      if (values[name] !== undefined) {
        throw new UsageError(
          `Cannot use "--${name}" with "fsbus filebus producer": it is a consumer's option`,
        );
      }
    }
  }
  // As the original, chunks are written exactly unless --json asks otherwise.
  const choice = { ...readerChoice(SPEC, values), format: values.json ? "json" : "raw" } as const;
  const filename = stringOption(values, "filename");
  if (filename === undefined || filename === "") {
    throw new FsbusError(
      "invalid",
      'Cannot run "fsbus filebus": the option "--filename FILE" is required',
    );
  }
  for (const name of ["impl", "implementation"]) {
    const impl = stringOption(values, name);
    if (impl !== undefined && impl !== "bash" && impl !== "python") {
      throw new UsageError(`Cannot use "${impl}" for "--${name}": expected bash or python`);
    }
  }
  const rawBlock = stringOption(values, "block-size");
  const blockSize = rawBlock === undefined
    ? DEFAULT_BLOCK_SIZE
    : parseSize(rawBlock, "--block-size");
  if (blockSize < 1) {
    throw new UsageError(`Cannot use "${rawBlock}" for "--block-size": expected at least 1`);
  }
  const rawSleep = stringOption(values, "sleep-interval");
  const sleepMs = rawSleep === undefined
    ? DEFAULT_SLEEP_INTERVAL_MS
    : parseDuration(rawSleep.replace(/^\./, "0."), "--sleep-interval");
  const verbosity = Array.isArray(values.verbose) ? values.verbose.length : values.verbose ? 1 : 0;
  const options: FilebusOptions = {
    lossless: Boolean(values["back-pressure"] || values.lossless),
    sleepIntervalMs: sleepMs,
    fileMonitoring: !values["no-file-monitoring"],
  };
  const mode = options.lossless ? "lossless" : "lossy";

  if (role === "consumer") {
    const dir = filename.includes("/") ? filename.slice(0, filename.lastIndexOf("/")) || "/" : ".";
    if (!isDirectory(dir)) {
      warn(`filebus: waiting for the directory "${dir}" to appear`);
      await waitForDirectory(dir);
    }
    // The consumer does nothing else while it waits: block in poll(2) on its own thread.
    await using bus = consumer(filename, { ...options, blockMs: 250 });
    if (options.fileMonitoring && !bus.ffi) {
      warn(`filebus: file monitoring needs --allow-ffi; polling every ${sleepMs / 1000} s`);
    }
    if (verbosity > 0) {
      warn(`filebus: ${mode} consumer of "${filename}" (${bus.monitoring})`);
    }
    let n = 0;
    const output = new MessageOutput(choice);
    const plain = choice.format === "raw" && !output.runs && choice.count === undefined;
    try {
      for await (const chunk of bus) {
        // A lossless chunk is removed only once written out (or when the loop asks for the
        // next one): a failed write leaves it in FILE for the next consumer.
        let more = true;
        if (plain) writeAll(Deno.stdout, chunk);
        else more = await output.deliver([{ data: chunk, topic: filename }]);
        bus.consumed();
        if (verbosity > 1) warn(`filebus: chunk ${++n}: ${chunk.length} bytes`);
        if (!more) return 0;
      }
    } catch (err) {
      if (isBrokenPipe(err)) return SIGPIPE_EXIT;
      throw err;
    }
    if (verbosity > 0 && options.lossless) warn("filebus: EOF");
    return 0;
  }

  const bus = producer(filename, options);
  try {
    if (options.lossless && options.fileMonitoring && !bus.ffi) {
      warn(`filebus: file monitoring needs --allow-ffi; polling every ${sleepMs / 1000} s`);
    }
    let stdinIsFile = false;
    try {
      stdinIsFile = Deno.statSync("/dev/stdin").isFile;
    } catch {
      // not a file
    }
    // Like the original: no idle flush with --blocking-read or when stdin is a regular file.
    const idleMs = values["blocking-read"] || stdinIsFile ? Infinity : sleepMs;
    if (verbosity > 0) {
      warn(
        `filebus: ${mode} producer to "${filename}" (${bus.monitoring}, block size ${blockSize}` +
          `, ${Number.isFinite(idleMs) ? `idle flush after ${idleMs} ms` : "no idle flush"})`,
      );
    }
    let n = 0;
    for await (const chunk of readChunks(Deno.stdin, { blockSize, idleMs })) {
      await bus.write(chunk);
      if (verbosity > 1) warn(`filebus: chunk ${++n}: ${chunk.length} bytes`);
    }
    await bus.close();
    if (verbosity > 0 && options.lossless) warn("filebus: EOF written");
    return 0;
  } finally {
    await bus.abort();
  }
}

/** The status a shell reports for a process killed by SIGPIPE, as the original consumer is. */
const SIGPIPE_EXIT = 128 + 13;

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Expands unambiguous prefixes of long options (`--file` for `--filename`), as the original's
 * argparse does; an ambiguous prefix is a usage error naming the candidates.
 */
function expandPrefixes(args: string[]): string[] {
  const names = [...Object.keys(SPEC.options), "help"];
  const result: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      result.push(...args.slice(i));
      break;
    }
    const m = /^--([^=]+)(=.*)?$/.exec(arg);
    if (!m || names.includes(m[1]!)) {
      result.push(arg);
      continue;
    }
    const matches = names.filter((n) => n.startsWith(m[1]!));
    if (matches.length > 1) {
      throw new UsageError(
        `Cannot tell which option "--${m[1]}" means in "fsbus filebus": could be ${
          matches.map((n) => `--${n}`).join(", ")
        }`,
      );
    }
    result.push(matches.length === 1 ? `--${matches[0]}${m[2] ?? ""}` : arg);
  }
  return result;
}

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = { filebus: { "": SPEC } };
