/**
 * `fsbus fanout` (create, list, rm, pub, sub: /dev/fanout rings with topics). baf's
 * `fsbus pubmsg` / `fsbus submsg` over the same topics are in `baf.ts`.
 *
 * @module
 */

import { UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  intOption,
  parse,
  READER_OUTPUT,
  readerChoice,
  readerOptions,
  unknownCommand,
  type Values,
  WRITER_INPUT,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource, noticeTerminal } from "./_input.ts";
import { MessageOutput, out, warn } from "./_output.ts";
import {
  createTopic,
  listTopics,
  openWriter,
  removeTopic,
  type TopicWriter,
} from "../transports/fanout/mod.ts";
import {
  CREATE_OPTIONS,
  createOptions,
  REPLAY_OPTION,
  replayFrom,
  rootOf,
} from "./_fanout_args.ts";
import {
  LineFramer,
  openSubscriber,
  overrunNotice,
  pumpLines,
  readLoop,
  withNewline,
} from "./_fanout_io.ts";

const encoder = new TextEncoder();

const ROOT_OPTION = {
  type: "string",
  value: "DIR",
  help: "The topic root (default: /dev/shm/fsbus, else $XDG_RUNTIME_DIR/fsbus)",
} as const;

const SPECS: Record<string, CommandSpec> = {
  create: {
    name: "fsbus fanout create",
    usage: "TOPIC... [options]",
    summary: "Create topics: one shared-memory ring each, with /dev/fanout's semantics.",
    options: { ...CREATE_OPTIONS, root: ROOT_OPTION },
    examples: [
      "# A 16 KiB byte ring, as the kernel module makes",
      "fsbus fanout create news",
      "# A 1 MiB ring of whole messages, shared with a group",
      "fsbus fanout create events --size 1M --messages --mode 660 --group staff",
    ],
    positionals: { min: 1, max: Infinity, names: "TOPIC..." },
  },
  list: {
    name: "fsbus fanout list",
    usage: "[options]",
    summary:
      "List the topics under the root: backend (ring or device), ring size, kind (bytes or messages), and the live readers and writers where known.",
    options: {
      root: ROOT_OPTION,
      json: { type: "boolean", help: "One JSON object per topic" },
    },
    examples: ["fsbus fanout list", "fsbus fanout list --root /dev/baf"],
    positionals: { min: 0, max: 0 },
  },
  rm: {
    name: "fsbus fanout rm",
    usage: "TOPIC... [options]",
    summary:
      "Remove topics (the ring file or symlink, and its .lock file). Processes that have a ring open keep using it until they close it.",
    options: { root: ROOT_OPTION },
    examples: ["fsbus fanout rm news events"],
    positionals: { min: 1, max: Infinity, names: "TOPIC..." },
  },
  pub: {
    name: "fsbus fanout pub",
    usage: "TOPIC [MESSAGE] [options]",
    summary: "Write to a topic. " + WRITER_INPUT + " Each write of at most a quarter ring is " +
      "atomic. On a message-mode topic a message is one record; on a byte-stream topic a " +
      "message is a line (MESSAGE gets a newline when it has none), and standard input " +
      "without --lines is passed on as it arrives, in atomic pieces.",
    options: {
      ...writerOptions("Read standard input line by line: each line is one write (one message)"),
      root: ROOT_OPTION,
      create: { type: "boolean", help: "Create the topic when it does not exist" },
      ...CREATE_OPTIONS,
    },
    examples: [
      "fsbus fanout pub news 'hello'",
      "# Stream a log into a topic, one atomic write per line",
      "tail -f app.log | fsbus fanout pub logs --lines --create",
    ],
    positionals: { min: 1, max: 2, names: "TOPIC [MESSAGE]" },
  },
  sub: {
    name: "fsbus fanout sub",
    usage: "TOPIC... [options]",
    summary: 'Print what is written to topics, from "now" on (or from the oldest data the ' +
      "ring still holds). " + READER_OUTPUT + " On a byte-stream topic a message is a line " +
      "(--raw passes the bytes on as they arrive; --count still counts lines). A reader that " +
      'falls more than a ring behind says so on stderr and goes on from "now".',
    options: {
      ...readerOptions({ replay: REPLAY_OPTION }),
      bytes: {
        type: "string",
        value: "N",
        help: "Exit after N bytes, written exactly (implies --raw)",
      },
      root: ROOT_OPTION,
      create: { type: "boolean", help: "Create missing topics" },
      ...CREATE_OPTIONS,
      "from-oldest": { type: "boolean", hidden: true, help: "Same as --replay all" },
      newline: { type: "boolean", hidden: true, help: "One message per line (the default)" },
    },
    examples: [
      "fsbus fanout sub news",
      "# Replay what the ring holds, then follow",
      "fsbus fanout sub news --replay all",
      "# Wait for one message on either topic",
      "fsbus fanout sub news events --count 1 --json",
    ],
    positionals: { min: 1, max: Infinity, names: "TOPIC..." },
  },
};

const FANOUT_HELP = [
  "Usage: fsbus fanout COMMAND [ARGS...]",
  "",
  "One-to-many ring buffers with the semantics of the /dev/fanout kernel module:",
  "each topic is a ring; every reader sees every write from the moment it opens;",
  "writes of at most a quarter ring are atomic; writers never wait for readers; a",
  'reader more than a ring behind is told it was overrun and goes on from "now".',
  "Rings live in shared memory (no kernel module needed); a topic that is a",
  "character device (a real /dev/fanout, or a /dev/baf symlink to one) is driven",
  "directly.",
  "",
  "Commands:",
  "  create TOPIC...       Create topics (--size, --messages, --mode, --group)",
  "  list                  List topics: backend, size, kind, readers and writers",
  "  rm TOPIC...           Remove topics",
  "  pub TOPIC [MESSAGE]   Write a message, or standard input",
  "  sub TOPIC...          Print what is written to topics",
  "",
  "Every command takes --root DIR (default /dev/shm/fsbus, else",
  "$XDG_RUNTIME_DIR/fsbus) and --help.",
  "",
  "Examples:",
  "  fsbus fanout create news",
  "  fsbus fanout sub news &",
  "  fsbus fanout pub news 'hello'",
  "  fsbus fanout list",
  "  # baf's commands over the same topics",
  "  printf 'one\\ntwo\\n' | fsbus pubmsg news",
  "  fsbus submsg news,weather --prefix",
  "  fsbus help fanout sub     # each command's options",
  "",
].join("\n");

/**
 * Runs `fsbus fanout`: create, list, rm, pub and sub.
 *
 * @param args The arguments after "fanout".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanout } from "./fanout.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await fanout(["create", "news", "--root", root]), 0);
 * assert.ok(Deno.statSync(`${root}/news`).isFile);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function fanout(args: string[]): Promise<number> {
  return await runFanout(args);
}

function runFanout(args: string[]): number | Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    out(FANOUT_HELP);
    return command === undefined ? 2 : 0;
  }
  const spec = Object.hasOwn(SPECS, command) ? SPECS[command] : undefined;
  if (!spec) {
    throw unknownCommand("fsbus fanout", command, Object.keys(SPECS));
  }
  const parsed = parse(spec, rest);
  if (parsed.help) {
    out(helpText(spec));
    return 0;
  }
  const { values, positionals } = parsed;
  switch (command) {
    case "create": {
      const options = { ...createOptions(values), root: rootOf(values) };
      for (const topic of positionals) createTopic(topic, options);
      return 0;
    }
    case "list":
      return list(rootOf(values), values.json === true);
    case "rm": {
      const root = rootOf(values);
      for (const topic of positionals) removeTopic(topic, { root });
      return 0;
    }
    case "pub":
      return pub(positionals, values);
    case "sub":
      return sub(positionals, values);
  }
  return 2;
}

function list(root: string, json: boolean): number {
  const topics = listTopics({ root });
  if (json) {
    out(topics.map((t) => JSON.stringify(t) + "\n").join(""));
  } else {
    const rows = [["TOPIC", "BACKEND", "SIZE", "KIND", "READERS", "WRITERS"]];
    for (const t of topics) {
      rows.push([
        t.topic,
        t.backend,
        t.size === undefined ? "?" : String(t.size),
        t.messages === undefined ? "?" : t.messages ? "messages" : "bytes",
        t.readers === undefined ? "?" : String(t.readers),
        t.writers === undefined ? "?" : String(t.writers),
      ]);
    }
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    out(
      rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") +
        "\n",
    );
  }
  const problems = topics.filter((t) => t.problem);
  for (const t of problems) warn(`Cannot read topic "${t.topic}": ${t.problem}`);
  return problems.length > 0 ? 1 : 0;
}

function openFor(topic: string, values: Values, root: string): TopicWriter {
  return openWriter(topic, {
    root,
    ...(values.create ? { create: createOptions(values) } : {}),
  });
}

/** Reads standard input to the end. */
function readStdin(): Uint8Array {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = Deno.stdin.readSync(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return all;
}

function pub(positionals: string[], values: Values): number {
  const [topic, message] = positionals as [string, string | undefined];
  checkMessageSource(message, { lines: values.lines === true, command: SPECS.pub!.name });
  const w = openFor(topic, values, rootOf(values));
  try {
    if (message !== undefined) {
      // On a byte stream, a message is a line.
      w.write(w.messages ? message : withNewline(encoder.encode(message)));
    } else if (values.lines) {
      pumpLines((lines) => w.writeBatch(lines));
    } else if (w.messages) {
      noticeTerminal();
      w.write(readStdin());
    } else {
      // A byte stream: pass each read on at once, in atomic pieces.
      noticeTerminal();
      const buf = new Uint8Array(Math.max(1, w.maxWrite));
      for (;;) {
        const n = Deno.stdin.readSync(buf);
        if (n === null) break;
        w.write(buf.subarray(0, n));
      }
    }
  } finally {
    w.close();
  }
  return 0;
}

async function sub(topics: string[], values: Values): Promise<number> {
  const spec = SPECS.sub!;
  if (values.newline && (values.raw || values.json)) {
    throw new UsageError(
      'Cannot use "--newline" with --raw or --json in "fsbus fanout sub": it is the default format',
    );
  }
  const maxBytes = intOption(values, "bytes", 1);
  if (maxBytes !== undefined && (values.json || values.exec !== undefined)) {
    throw new UsageError(
      'Cannot use "--bytes" with --json or --exec in "fsbus fanout sub": it writes bytes',
    );
  }
  const choice = readerChoice(spec, maxBytes === undefined ? values : { ...values, raw: true });
  const fromOldest = replayFrom(spec, values);
  const framer = new LineFramer();
  const s = openSubscriber(topics, values, rootOf(values), fromOldest, (err, topic) => {
    overrunNotice(err, topic);
    framer.drop(topic);
  });
  for (const r of s.readers) if (r.messages) framer.messageTopics.add(r.topic);
  const output = new MessageOutput(choice);
  // --raw passes byte streams on as they arrive (counting lines); otherwise a line is a message.
  const raw = choice.format === "raw" && !output.runs;
  let bytesLeft = maxBytes ?? Infinity;
  return await readLoop(s, () => s.nextSync(), async (batch) => {
    if (!raw) return await output.deliver(framer.frame(batch));
    let more = true;
    for (let m of batch) {
      if (m.data.length >= bytesLeft) {
        m = { ...m, data: m.data.subarray(0, bytesLeft) };
        more = false;
      }
      bytesLeft -= m.data.length;
      const wanted = framer.messageTopics.has(m.topic ?? "")
        ? output.add(m)
        : output.addStream(m.data);
      if (!wanted || !more) {
        more = false;
        break;
      }
    }
    output.flush();
    return more;
  });
}

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const COMPLETION_SPECS: Record<string, Record<string, CommandSpec>> = {
  fanout: SPECS,
};
