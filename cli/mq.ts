/**
 * `fsbus mq`: mq(4) stream groups on a directory: `mkgroup`, `ctl`, `write`, `read` and
 * `cat` (mq-cat: several streams merged in write order).
 *
 * @module
 */

import { checkGroup, MqGroup, type MqMessage, MqReader } from "../transports/mq/mod.ts";
import type { DataMode, ReplayMode } from "../transports/mq/mod.ts";
import { UsageError } from "../types.ts";
import { lookupGroup } from "../sys/users.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  READER_OUTPUT,
  type ReaderChoice,
  readerChoice,
  readerOptions,
  stringOption,
  unknownCommand,
  type Values,
  WRITER_INPUT,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource, messagesToWrite } from "./_input.ts";
import { MOUNT, mountCommand, UMOUNT, umountCommand } from "./mq_mount.ts";
import { MessageOutput, out, warn } from "./_output.ts";

const REPLAY_HELP = "Where to start: off (new messages), last (the most recent), all (history)";

const MKGROUP: CommandSpec = {
  name: "fsbus mq mkgroup",
  usage: "DIR [options]",
  summary: "Make DIR (and its parents) an mq group: a directory holding ctl, order and its " +
    "streams, with history kept on disk. Any file then written in DIR is a stream; a group " +
    "inside a group is a nested group. On a group that exists, succeeds when the settings " +
    "given match its own (so scripts may run it again), and fails naming those that differ.",
  options: {
    replay: {
      type: "string",
      value: "off|last|all",
      help: "Readers' default start",
      default: "off",
    },
    data: {
      type: "string",
      value: "message|coalesce",
      help: "Readers get whole messages, or a byte stream",
      default: "message",
    },
    depth: {
      type: "string",
      value: "N|SIZE",
      help: "Keep only the last N messages or SIZE bytes (K, M, G); 0 = unlimited",
      default: "0",
    },
    mode: {
      type: "string",
      value: "MODE",
      help: "The directory's permission bits in octal (files get them without x): 2770 " +
        "shares the group with its group, 2750 lets the group read only",
    },
    group: {
      type: "string",
      value: "GROUP",
      help: "Give the group to this Unix group (mode 2770 unless --mode says otherwise)",
    },
  },
  examples: [
    "# A group whose readers see all history by default",
    "fsbus mq mkgroup /dev/shm/chat --replay all",
    "# Keep at most 16 MiB of history",
    "fsbus mq mkgroup /dev/shm/logs --depth 16M",
    "# Shared with everyone in the Unix group staff; members may read and write",
    "fsbus mq mkgroup /srv/chat --group staff",
  ],
  positionals: { min: 1, max: 1, names: "DIR" },
};

const CTL: CommandSpec = {
  name: "fsbus mq ctl",
  usage: "GROUP [COMMAND...]",
  summary: "Without COMMAND, print the group's ctl (data, replay, and depth when set). With " +
    "COMMAND, apply it as a write to mq's ctl: data message|coalesce, replay off|last|all " +
    "(on = all), depth COUNT|SIZE[K|M|G] (0 = unlimited). A command mq would reject changes " +
    "nothing. The shell can do the same: echo replay all > GROUP/ctl.",
  options: {},
  examples: [
    "fsbus mq ctl /dev/shm/chat",
    "fsbus mq ctl /dev/shm/chat replay all",
    "fsbus mq ctl /dev/shm/chat depth 1000",
  ],
  positionals: { min: 1, max: Infinity, names: "GROUP" },
};

const WRITE: CommandSpec = {
  name: "fsbus mq write",
  usage: "GROUP STREAM [MESSAGE] [options]",
  summary: "Write to STREAM of GROUP (the stream is made when missing). " + WRITER_INPUT +
    " MESSAGE is written exactly as given; with --lines each line keeps its newline. Empty " +
    "standard input writes a zero-length message, which is EOF for the stream's readers.",
  options: writerOptions(),
  examples: [
    "fsbus mq write /dev/shm/chat alice 'hi'",
    "# End the stream: its readers stop",
    "fsbus mq write /dev/shm/chat alice < /dev/null",
    "tail -f app.log | fsbus mq write /dev/shm/logs app --lines",
  ],
  positionals: { min: 2, max: 3, names: "GROUP STREAM" },
};

const READ_OPTIONS: CommandSpec["options"] = {
  ...readerOptions(
    { replay: { type: "string", value: "off|last|all", help: REPLAY_HELP } },
    { json: "stream, seq", env: "FSBUS_STREAM" },
  ),
  data: {
    type: "string",
    value: "message|coalesce",
    help: "Whole messages, or consecutive messages joined (default: the group's ctl)",
  },
};

const READ: CommandSpec = {
  name: "fsbus mq read",
  usage: "GROUP STREAM [options]",
  summary: "Print the messages of STREAM (or of order, the group's write order: each " +
    "stream's name and a NUL per write) until EOF (a zero-length write, or the stream's " +
    "removal) or --count messages. " + READER_OUTPUT + " Replay defaults to the group's ctl.",
  options: READ_OPTIONS,
  examples: [
    "fsbus mq read /dev/shm/chat alice --replay all",
    "# The last message as JSON, then exit",
    "fsbus mq read /dev/shm/chat alice --replay last --json -n 1",
    "fsbus mq read /dev/shm/chat order --replay all --raw | tr '\\0' '\\n'",
  ],
  positionals: { min: 2, max: 2, names: "GROUP STREAM" },
};

const CAT: CommandSpec = {
  name: "fsbus mq cat",
  usage: "GROUP STREAM... [options]",
  summary: "mq-cat: print the named streams merged in the order they were written, history " +
    "first (replay all unless --replay says otherwise), then live. Ends when every named " +
    "stream has reached EOF, or after --count messages. " + READER_OUTPUT,
  options: READ_OPTIONS,
  examples: [
    "fsbus mq cat /dev/shm/session 0 1 2",
    "# A terminal session's bytes exactly, as written",
    "fsbus mq cat /dev/shm/session 1 2 --raw",
  ],
  positionals: { min: 2, max: Infinity, names: "GROUP STREAM..." },
};

const CHECK: CommandSpec = {
  name: "fsbus mq check",
  usage: "GROUP [--repair] [--json]",
  summary: "Check a group's files: every index record (checksum, place, that it follows the " +
    "one before, that its bytes are in its stream), .mq/streams, the checkpoint, the " +
    "settings and order. Prints what is wrong and what --repair does about it; exits 0 " +
    "when the group is sound (or everything wrong was repaired), 1 otherwise. --repair " +
    "rebuilds a damaged record from its neighbours, order and stream, drops a torn tail, " +
    "rebuilds .mq/streams lines from order, sets a damaged cutoff just after the last " +
    "message trimming freed, and where nothing else can be done cuts the index at the " +
    "damage (saying how many messages are lost). A message whose bytes changed cannot be " +
    "repaired (its readers fail at it, naming it). Repair while the group is idle.",
  options: {
    repair: { type: "boolean", help: "Repair what can be repaired (holds the group's lock)" },
    json: { type: "boolean", help: "Print the report as one JSON object" },
  },
  examples: [
    "fsbus mq check /dev/shm/chat",
    "fsbus mq check /dev/shm/chat --repair",
  ],
  positionals: { min: 1, max: 1, names: "GROUP" },
};

const SUBCOMMANDS: Record<
  string,
  { spec: CommandSpec; run: (v: Values, p: string[]) => Promise<number> }
> = {
  mkgroup: { spec: MKGROUP, run: mkgroup },
  ctl: { spec: CTL, run: ctl },
  write: { spec: WRITE, run: write },
  read: { spec: READ, run: read },
  cat: { spec: CAT, run: cat },
  mount: { spec: MOUNT, run: mountCommand },
  umount: { spec: UMOUNT, run: umountCommand },
  check: { spec: CHECK, run: check },
};

function topHelp(): string {
  return [
    "Usage: fsbus mq SUBCOMMAND [ARGS...]",
    "",
    "mq(4) stream groups in an ordinary directory: ctl, order, replay, history.",
    "",
    "Subcommands:",
    "  mkgroup DIR          Make a group",
    "  ctl GROUP [CMD...]   Print or change a group's settings",
    "  write GROUP STREAM   Write a message (argument or stdin; empty stdin = EOF)",
    "  read GROUP STREAM    Print a stream's messages",
    "  cat GROUP STREAM...  Print streams merged in write order (mq-cat)",
    "  mount DIR MOUNTPOINT Serve DIR's groups as files for any program (FUSE)",
    "  umount MOUNTPOINT    Unmount it",
    "  check GROUP          Check a group's files; --repair repairs what can be",
    "",
    'See "fsbus mq SUBCOMMAND --help".',
    "",
  ].join("\n");
}

/**
 * Runs `fsbus mq SUBCOMMAND ...`.
 *
 * @param args The arguments after "mq".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mq } from "./mq.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await mq(["mkgroup", `${dir}/g`, "--replay", "all"]), 0);
 * assert.ok(Deno.statSync(`${dir}/g/ctl`).isFile);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function mq(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    out(topHelp());
    return sub === undefined ? 2 : 0;
  }
  const entry = Object.hasOwn(SUBCOMMANDS, sub) ? SUBCOMMANDS[sub] : undefined;
  if (!entry) {
    throw unknownCommand("fsbus mq", sub, Object.keys(SUBCOMMANDS));
  }
  const parsed = parse(entry.spec, rest);
  if (parsed.help) {
    out(helpText(entry.spec));
    return 0;
  }
  return await entry.run(parsed.values, parsed.positionals);
}

function replayOption(values: Values): ReplayMode | undefined {
  const raw = stringOption(values, "replay");
  if (raw === undefined) return undefined;
  if (raw === "on") return "all";
  if (raw === "off" || raw === "last" || raw === "all") return raw;
  throw new UsageError(`Cannot use "${raw}" for "--replay": expected off, last or all`);
}

function dataOption(values: Values): DataMode | undefined {
  const raw = stringOption(values, "data");
  if (raw === undefined) return undefined;
  if (raw === "message" || raw === "coalesce") return raw;
  throw new UsageError(`Cannot use "${raw}" for "--data": expected message or coalesce`);
}

function mkgroup(values: Values, [dir]: string[]): Promise<number> {
  const replay = replayOption(values);
  const data = dataOption(values);
  const depth = stringOption(values, "depth");
  if (depth !== undefined && !/^\d+[KMGkmg]?$/.test(depth)) {
    throw new UsageError(
      `Cannot use "${depth}" for "--depth": expected a count or a size such as 64K, 16M, 1G`,
    );
  }
  const modeText = stringOption(values, "mode");
  if (modeText !== undefined && !/^[0-7]{3,4}$/.test(modeText)) {
    throw new UsageError(`Cannot use "${modeText}" for "--mode": expected octal, as 2770`);
  }
  const groupName = stringOption(values, "group");
  const gid = groupName === undefined ? undefined : lookupGroup(groupName);
  if (groupName !== undefined && gid === undefined) {
    throw new UsageError(`Cannot use "${groupName}" for "--group": no such group`);
  }
  const mode = modeText !== undefined
    ? parseInt(modeText, 8)
    : gid !== undefined
    ? 0o2770
    : undefined;
  const g = MqGroup.create(dir!, {
    ...(replay ? { replay } : {}),
    ...(data ? { data } : {}),
    ...(depth !== undefined ? { depth } : {}),
    ...(mode !== undefined ? { mode } : {}),
    ...(gid !== undefined ? { gid } : {}),
  });
  g.close();
  return Promise.resolve(0);
}

function ctl(_values: Values, [dir, ...words]: string[]): Promise<number> {
  const g = MqGroup.open(dir!);
  try {
    if (words.length > 0) {
      g.ctl(words.join(" "));
    } else {
      g.checkCtl();
      const rejected = g.takeRejected();
      if (rejected) warn(`Rejected a write to "${g.path}/ctl": ${rejected}`);
    }
    out(Deno.readTextFileSync(`${g.path}/ctl`));
  } finally {
    g.close();
  }
  return Promise.resolve(0);
}

function check(values: Values, [dir]: string[]): Promise<number> {
  const repair = values.repair === true;
  const report = checkGroup(dir!, { repair });
  const unrepairable = report.problems.filter((p) => p.repair === undefined).length;
  if (values.json === true) {
    out(JSON.stringify(report) + "\n");
  } else {
    for (const p of report.problems) {
      out(`${report.group}/${p.file}: ${p.problem}${p.repair ? ` (${p.repair})` : ""}\n`);
    }
    const summary = `${report.group}: ${report.messages} messages, ${report.streams} streams, ` +
      `format ${report.version}`;
    const n = report.problems.length;
    if (n === 0) out(`${summary}: sound\n`);
    else if (!repair) out(`${summary}: ${n} problems\n`);
    else if (unrepairable === 0) out(`${summary}: ${n} problems, repaired\n`);
    else out(`${summary}: ${n} problems, ${unrepairable} of them cannot be repaired\n`);
  }
  const sound = report.problems.length === 0 || (repair && unrepairable === 0);
  return Promise.resolve(sound ? 0 : 1);
}

async function write(values: Values, [dir, stream, message]: string[]): Promise<number> {
  const lines = values.lines === true;
  const source = { lines, keepNewline: true, command: WRITE.name };
  checkMessageSource(message, source);
  const g = MqGroup.open(dir!);
  try {
    for await (const batch of messagesToWrite(message, source)) {
      for (const m of batch) g.write(stream!, m);
    }
  } finally {
    g.close();
  }
  return 0;
}

async function read(values: Values, [dir, stream]: string[]): Promise<number> {
  const choice = readerChoice(READ, values);
  // Nothing else runs in this process while it waits: block in poll(2) on this thread.
  const blockMs = choice.exec === undefined ? 60_000 : 0;
  const reader = MqReader.open(dir!, [stream!], { ...readOptions(values), blockMs });
  return await print(reader, choice);
}

async function cat(values: Values, [dir, ...streams]: string[]): Promise<number> {
  if (streams.includes("order")) {
    throw new UsageError(
      'Cannot merge "order" with streams: it is not a stream (use "fsbus mq read GROUP order")',
    );
  }
  const choice = readerChoice(CAT, values);
  const options = readOptions(values);
  const blockMs = choice.exec === undefined ? 60_000 : 0;
  const reader = MqReader.open(dir!, streams, { replay: "all", ...options, blockMs });
  return await print(reader, choice);
}

function readOptions(values: Values): { replay?: ReplayMode; data?: DataMode } {
  const replay = replayOption(values);
  const data = dataOption(values);
  return { ...(replay ? { replay } : {}), ...(data ? { data } : {}) };
}

async function print(reader: MqReader, choice: ReaderChoice): Promise<number> {
  const output = new MessageOutput(choice, (m) => {
    const { stream, seq } = m as MqMessage;
    return { json: { stream, seq }, env: { FSBUS_STREAM: stream } };
  });
  try {
    for await (const batch of reader.batches()) {
      if (!await output.deliver(batch)) break;
    }
  } finally {
    await reader.close();
  }
  return 0;
}

/** The commands of this file, for shell completion: command → subcommand → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = {
  mq: Object.fromEntries(Object.entries(SUBCOMMANDS).map(([name, s]) => [name, s.spec])),
};
