/**
 * The directory-bus commands: `fsbus pub`, `fsbus sub`, `fsbus init`, `fsbus gc`.
 *
 * @module
 */

// Only what pub needs is imported here: sub and gc load the rest of the transport (the
// subscriber, its watcher and readers) when they run, so a one-shot pub does not compile it.
import type * as msgfs from "../transports/msgfs/mod.ts";
import { Publisher } from "../transports/msgfs/publish.ts";
import { init as initBus } from "../transports/msgfs/access.ts";
import { FsbusError, UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  parseDuration,
  parseSize,
  READER_OUTPUT,
  readerChoice,
  readerOptions,
  stringOption,
  type Values,
  WRITER_INPUT,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource, messagesToWrite } from "./_input.ts";
import { isBrokenPipe, MessageOutput, out, warn } from "./_output.ts";

const PUB: CommandSpec = {
  name: "fsbus pub",
  usage: "DIR [MESSAGE] [options]",
  summary: "Publish to the directory bus DIR. " + WRITER_INPUT + " MESSAGE is written exactly " +
    "as given (no newline is added). Each message is a new file, created, written and closed " +
    "once, so plain inotify listeners see exactly one close_write per message. Silent on success.",
  options: {
    ...writerOptions(),
    topic: {
      type: "string",
      value: "NAME",
      help: "Publish to a topic (a subdirectory, made when missing)",
    },
    atomic: {
      type: "boolean",
      help:
        "Write in a hidden temp directory and rename in (only for buses whose subscribers are all fsbus)",
    },
  },
  examples: [
    "# One message, given on the command line",
    "fsbus pub /dev/shm/bus 'hello'",
    "# A file (binary is fine) as one message, to a topic",
    "fsbus pub /dev/shm/bus --topic images < cat.jpg",
    "# Every line of a log as its own message",
    "tail -f app.log | fsbus pub /dev/shm/bus --lines",
    "# A message that starts with a dash",
    "fsbus pub /dev/shm/bus -- '-1'",
  ],
  positionals: { min: 1, max: 2, names: "DIR" },
};

const SUB: CommandSpec = {
  name: "fsbus sub",
  usage: "DIR [options]",
  summary: "Subscribe to the directory bus DIR and write its messages to standard output. " +
    READER_OUTPUT + " Messages written by any program count: fsbus pub, echo hi > DIR/x, cp, " +
    "mv. Runs until interrupted, or until --count messages have arrived.",
  options: {
    ...readerOptions({
      since: {
        type: "string",
        value: "all|DURATION",
        help: "First replay messages already in the bus: all of them, or those of the last " +
          "DURATION (30s, 5m, 1h30m; a bare number is seconds)",
      },
    }, { env: "FSBUS_PATH" }),
    recursive: {
      type: "boolean",
      short: "r",
      help: "Include every topic below DIR, also topics created later",
    },
    topic: {
      type: "string",
      value: "NAME",
      help: "Subscribe to one topic (subdirectory) of the bus",
    },
    "max-size": {
      type: "string",
      value: "BYTES",
      help: "Skip (and report) messages larger than this",
      default: "256M",
    },
    lines: { type: "boolean", hidden: true, help: "One message per line (the default)" },
  },
  examples: [
    "# Print messages as they arrive, one per line",
    "fsbus sub /dev/shm/bus",
    "# Everything already in the bus, then live, one JSON object per line",
    "fsbus sub /dev/shm/bus --since all --json",
    "# Wait for one message and exit",
    "msg=$(fsbus sub /dev/shm/bus --count 1)",
    "# Copy binary messages byte for byte",
    "fsbus sub /dev/shm/bus --raw -n 1 > photo.jpg",
    "# Run a command for each message in any topic",
    "fsbus sub /dev/shm/bus -r --exec 'wc -c'",
  ],
  positionals: { min: 1, max: 1, names: "DIR" },
};

const INIT: CommandSpec = {
  name: "fsbus init",
  usage: "DIR [options]",
  summary: "Create the directory bus DIR (and its parents), or change the settings named of an " +
    "existing one (the others stay as they are). A private bus (mode 0700) is for its owner alone. A shared bus (mode 3770) lets its group publish and " +
    "subscribe: the setgid bit keeps messages in the group, and the sticky bit stops members from " +
    "deleting or renaming each other's messages.",
  options: {
    shared: { type: "boolean", help: "Make a bus shared with a group" },
    private: { type: "boolean", help: "Make a bus private to its owner (a new bus is)" },
    group: { type: "string", value: "GROUP", help: "The group of a shared bus (implies --shared)" },
    ttl: {
      type: "string",
      value: "DURATION",
      help: "How long messages live before they are swept (a new bus: 1h)",
    },
  },
  examples: [
    "# A private bus whose messages live ten minutes",
    "fsbus init /dev/shm/bus --ttl 10m",
    "# A bus for everyone in group 'staff'",
    "fsbus init /srv/bus --group staff",
  ],
  positionals: { min: 1, max: 1, names: "DIR" },
};

const GC: CommandSpec = {
  name: "fsbus gc",
  usage: "DIR [options]",
  summary: "Remove the expired messages of the directory bus DIR now, and say how many were " +
    "removed and kept. Publishers also do this in the background, at most once per interval.",
  options: {
    ttl: {
      type: "string",
      value: "DURATION",
      help: "Remove messages older than this (default: the bus's TTL)",
    },
  },
  examples: ["fsbus gc /dev/shm/bus", "fsbus gc /dev/shm/bus --ttl 0s"],
  positionals: { min: 1, max: 1, names: "DIR" },
};

/**
 * Runs `fsbus pub`.
 *
 * @param args The arguments after "pub".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pub } from "./msgfs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await pub([dir, "hello"]), 0);
 * const [file] = [...Deno.readDirSync(dir)].filter((e) => !e.name.startsWith("."));
 * assert.equal(Deno.readTextFileSync(`${dir}/${file!.name}`), "hello");
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function pub(args: string[]): Promise<number> {
  const parsed = parse(PUB, args);
  if (parsed.help) return help(PUB);
  const { values, positionals } = parsed;
  const [dir, message] = positionals as [string, string | undefined];
  const topic = stringOption(values, "topic");
  const source = { lines: values.lines === true, command: PUB.name };
  checkMessageSource(message, source);
  // Waits, when closed, for the sweep of expired messages that a publish may start.
  await using publisher = new Publisher(dir, { atomic: values.atomic === true });
  const options = topic === undefined ? {} : { topic };
  for await (const batch of messagesToWrite(message, source)) {
    for (const m of batch) publisher.publish(m, options);
  }
  return 0;
}

function sinceOption(values: Values): "all" | number | undefined {
  const since = stringOption(values, "since");
  if (since === undefined) return undefined;
  return since === "all" ? "all" : parseDuration(since, "--since");
}

/**
 * Runs `fsbus sub`.
 *
 * @param args The arguments after "sub".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pub, sub } from "./msgfs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await pub([dir, "hello"]);
 * assert.equal(await sub([dir, "--count", "1", "--since", "all"]), 0); // prints "hello"
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function sub(args: string[]): Promise<number> {
  const parsed = parse(SUB, args);
  if (parsed.help) return help(SUB);
  const { values, positionals } = parsed;
  const dir = positionals[0]!;
  if (values.lines && (values.json || values.raw)) {
    throw new UsageError(
      'Cannot use "--lines" with --raw or --json in "fsbus sub": it is the default format',
    );
  }
  const choice = readerChoice(SUB, values);
  const maxSize = stringOption(values, "max-size");
  const topic = stringOption(values, "topic");
  const since = sinceOption(values);
  const options: msgfs.SubscribeOptions = {
    recursive: values.recursive === true,
    // Nothing else runs in this process while it waits (unless --exec runs commands), so it
    // waits in poll(2) on its own thread: one thread hand-off less per message.
    blockMs: choice.exec === undefined ? 60_000 : 0,
    onSkip: (s) => warn(`Skipped "${s.path}": ${s.reason}`),
  };
  if (topic !== undefined) options.topic = topic;
  if (since !== undefined) options.since = since;
  if (maxSize !== undefined) options.maxSize = parseSize(maxSize, "--max-size");
  const { subscribe } = await import("../transports/msgfs/mod.ts");
  const subscription = subscribe(dir, options);
  if (subscription.backend === "watchfs") {
    warn(
      "FFI is not permitted (run with --allow-ffi or -A): watching with Deno.watchFs plus rescans",
    );
  }
  const output = new MessageOutput(choice, (m) => {
    const path = (m as msgfs.BusMessage).path;
    return { env: { FSBUS_PATH: path } };
  });
  try {
    for await (const m of subscription) {
      if (!await output.deliver([m])) break;
    }
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    throw err;
  } finally {
    await subscription.close();
  }
  return 0;
}

/**
 * Runs `fsbus init`.
 *
 * @param args The arguments after "init".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { init } from "./msgfs.ts";
 * import { readConfig } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await init([`${dir}/bus`, "--ttl", "10m"]), 0);
 * assert.equal(readConfig(`${dir}/bus`).ttlMs, 600_000);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function init(args: string[]): Promise<number> {
  const parsed = parse(INIT, args);
  if (parsed.help) return Promise.resolve(help(INIT));
  const { values, positionals } = parsed;
  const group = stringOption(values, "group");
  const ttl = stringOption(values, "ttl");
  const shared = values.shared === true || group !== undefined;
  if (shared && values.private) {
    throw new UsageError(
      'Cannot use "--private" together with "--shared" (or "--group"): choose one',
    );
  }
  // On an existing bus, only what is named changes.
  const options: msgfs.InitOptions = {};
  if (shared) options.access = "shared";
  else if (values.private) options.access = "private";
  if (group !== undefined) options.group = group;
  if (ttl !== undefined) options.ttlMs = positiveDuration(ttl, "--ttl");
  const dir = positionals[0]!;
  let existing: Deno.FileInfo | undefined;
  try {
    existing = Deno.statSync(dir);
  } catch {
    // absent (or unreadable): init says why
  }
  if (existing && !existing.isDirectory) {
    throw new FsbusError("not_a_directory", `Cannot create a bus at "${dir}": not a directory`);
  }
  initBus(dir, options);
  return Promise.resolve(0);
}

function positiveDuration(raw: string, what: string): number {
  const ms = parseDuration(raw, what);
  if (!(ms > 0)) {
    throw new UsageError(`Cannot use "${raw}" for "${what}": expected more than zero`);
  }
  return ms;
}

/**
 * Runs `fsbus gc`.
 *
 * @param args The arguments after "gc".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gc, pub } from "./msgfs.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await pub([dir, "hello"]);
 * assert.equal(await gc([dir, "--ttl", "1h"]), 0); // nothing is an hour old: kept
 * assert.equal([...Deno.readDirSync(dir)].filter((e) => !e.name.startsWith(".")).length, 1);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function gc(args: string[]): Promise<number> {
  const parsed = parse(GC, args);
  if (parsed.help) return help(GC);
  const { values, positionals } = parsed;
  const dir = positionals[0]!;
  const ttl = stringOption(values, "ttl");
  const bus = await import("../transports/msgfs/mod.ts");
  const result = await bus.gc(
    dir,
    ttl === undefined ? {} : { ttlMs: parseDuration(ttl, "--ttl") },
  );
  out(`removed ${result.removed}, kept ${result.kept}\n`);
  if (result.failed) {
    warn(`Cannot remove ${result.failed} of the expired messages in "${dir}"`);
    return 1;
  }
  return 0;
}

function help(spec: CommandSpec): number {
  out(helpText(spec));
  return 0;
}

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = {
  pub: { "": PUB },
  sub: { "": SUB },
  init: { "": INIT },
  gc: { "": GC },
};
