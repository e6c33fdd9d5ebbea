/**
 * `fsbus filebus`: a drop-in for the `filebus` command (0.3.5), same command line, same
 * files on disk, event-driven.
 *
 * @module
 */

import { UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  parseDuration,
  parseSize,
  stringOption,
} from "./_args.ts";
import { out, warn, writeAll } from "./_output.ts";
import {
  consumer,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_SLEEP_INTERVAL_MS,
  type FilebusOptions,
  producer,
  readChunks,
} from "../transports/filebus/mod.ts";

const SPEC: CommandSpec = {
  name: "fsbus filebus",
  usage: "[--back-pressure] [--block-size N] [--lossless] [--no-file-monitoring]\n" +
    "         [--filename FILE] [--sleep-interval N] [-v] {producer [--blocking-read], consumer}",
  summary: "A regular file as a multicast named pipe, compatible with filebus 0.3.5 (Python and " +
    "bash) on disk and on the command line. The producer reads stdin and publishes it in " +
    "chunks to FILE (written to FILE.__new__ and renamed over FILE under an flock(2) on " +
    "FILE.lock); each consumer writes the chunks it sees to stdout. Lossy by default: " +
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
      help: "Accepted for compatibility and ignored (--implementation too)",
    },
    implementation: { type: "string", value: "NAME", help: "Same as --impl" },
  },
  examples: [
    "# Multicast a stream: one producer, any number of consumers",
    "strings /dev/urandom | fsbus filebus --filename /dev/shm/urandom.filebus producer",
    "fsbus filebus --filename /dev/shm/urandom.filebus consumer",
    "# A lossless queue of one chunk: each chunk to exactly one consumer, then EOF",
    "fsbus filebus --back-pressure --filename /dev/shm/jobs consumer > out.bin &",
    "fsbus filebus --back-pressure --filename /dev/shm/jobs producer < in.bin",
    "# Make scripts written for the original run unchanged",
    "alias filebus='fsbus filebus'",
  ],
  positionals: { min: 0, max: 1, names: "producer or consumer" },
};

const HELP_TAIL = `
Exit status: 0 at end of input (producer) or at the EOF marker (lossless consumer);
1 on errors; 2 on usage errors. A lossy consumer runs until interrupted.

To install "filebus" as this command, add to ~/.bashrc:
  alias filebus='fsbus filebus'
or, for scripts that run "filebus" from PATH, create an executable ~/.local/bin/filebus:
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
 * ```ts ignore
 * import { filebus } from "./filebus.ts";
 * const code = await filebus(["--filename", "/dev/shm/bus", "consumer"]);
 * ```
 */
export async function filebus(args: string[]): Promise<number> {
  const parsed = parse(SPEC, args);
  if (parsed.help) {
    out(helpText(SPEC) + HELP_TAIL);
    return 0;
  }
  const { values, positionals } = parsed;
  const role = positionals[0];
  if (role === undefined) {
    throw new UsageError(
      'Missing action for "fsbus filebus": expected producer or consumer (see "fsbus filebus --help")',
    );
  }
  if (role !== "producer" && role !== "consumer") {
    throw new UsageError(
      `Unknown action "${role}" for "fsbus filebus": expected producer or consumer`,
    );
  }
  if (role === "consumer" && values["blocking-read"]) {
    throw new UsageError('Option "--blocking-read" is for "fsbus filebus producer" only');
  }
  const filename = stringOption(values, "filename");
  if (filename === undefined || filename === "") {
    throw new UsageError('Missing required option "--filename FILE" for "fsbus filebus"');
  }
  const rawBlock = stringOption(values, "block-size");
  const blockSize = rawBlock === undefined
    ? DEFAULT_BLOCK_SIZE
    : parseSize(rawBlock, "--block-size");
  if (blockSize < 1) {
    throw new UsageError(`Invalid value "${rawBlock}" for "--block-size": expected at least 1`);
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
    // The consumer does nothing else while it waits: block in poll(2) on its own thread.
    await using bus = consumer(filename, { ...options, blockMs: 250 });
    if (options.fileMonitoring && !bus.ffi) {
      warn(`filebus: file monitoring needs --allow-ffi; polling every ${sleepMs / 1000} s`);
    }
    if (verbosity > 0) {
      warn(`filebus: ${mode} consumer of "${filename}" (${bus.monitoring})`);
    }
    let n = 0;
    for await (const chunk of bus) {
      writeAll(Deno.stdout, chunk);
      if (verbosity > 1) warn(`filebus: chunk ${++n}: ${chunk.length} bytes`);
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

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = { filebus: { "": SPEC } };
