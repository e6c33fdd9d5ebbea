/**
 * `fsbus fanout` (create, list, rm, pub, sub: /dev/fanout rings with topics) and baf's
 * `fsbus pubmsg` / `fsbus submsg`.
 *
 * @module
 */

import { FsbusError, type Message, type OverrunError, UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  intOption,
  parse,
  parseSize,
  READER_OUTPUT,
  readerChoice,
  readerOptions,
  stringOption,
  unknownCommand,
  type Values,
  WRITER_INPUT,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource, noticeTerminal } from "./_input.ts";
import { isBrokenPipe, MessageOutput, out, warn } from "./_output.ts";
import {
  type CreateOptions,
  createTopic,
  DEFAULT_RING_SIZE,
  defaultBafRoot,
  defaultRoot,
  listTopics,
  lockPublisher,
  openReader,
  openWriter,
  removeTopic,
  resolveTopic,
  RootWatch,
  subscribe,
  Subscriber,
  topicNames,
  type TopicWriter,
} from "../transports/fanout/mod.ts";
import { lookupGroup } from "../sys/users.ts";

const encoder = new TextEncoder();

const ROOT_OPTION = {
  type: "string",
  value: "DIR",
  help: "The topic root (default: /dev/shm/fsbus, else $XDG_RUNTIME_DIR/fsbus)",
} as const;

const BAF_ROOT_OPTION = {
  type: "string",
  value: "DIR",
  help: "The topic root (default: /dev/baf when it exists, else /dev/shm/fsbus)",
} as const;

const REPLAY_OPTION = {
  type: "string",
  value: "off|all",
  help: 'Where to start: off ("now", the default) or all (the oldest data the ring holds)',
} as const;

const CREATE_OPTIONS = {
  size: {
    type: "string",
    value: "BYTES",
    help: "Ring size: how far a reader may lag before it is overrun (K, M, G allowed)",
    default: String(DEFAULT_RING_SIZE),
  },
  messages: {
    type: "boolean",
    help: "Message mode: readers get whole messages instead of a byte stream",
  },
  mode: {
    type: "string",
    value: "MODE",
    help: "Permission bits in octal; readers need write permission too",
    default: "660",
  },
  group: { type: "string", value: "GROUP", help: "Give the topic file to this group" },
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
  "One-to-many ring buffers with the semantics of the /dev/fanout kernel module: each topic",
  "is a ring; every reader sees every write from the moment it opens; writes of at most a",
  "quarter ring are atomic; writers never wait for readers; a reader more than a ring behind",
  'is told it was overrun and goes on from "now". Rings live in shared memory (no kernel',
  "module needed); a topic that is a character device (a real /dev/fanout, or a /dev/baf",
  "symlink to one) is driven directly.",
  "",
  "Commands:",
  "  create TOPIC...       Create topics (--size, --messages, --mode, --group)",
  "  list                  List topics with backend, size, kind, readers and writers",
  "  rm TOPIC...           Remove topics",
  "  pub TOPIC [MESSAGE]   Write a message, or standard input",
  "  sub TOPIC...          Print what is written to topics",
  "",
  "Every command takes --root DIR (default /dev/shm/fsbus, else $XDG_RUNTIME_DIR/fsbus) and --help.",
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

function parseMode(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^0?[0-7]{1,4}$/.test(raw)) {
    throw new UsageError(`Cannot use "${raw}" for "--mode": expected octal permission bits`);
  }
  return parseInt(raw, 8);
}

function parseGroup(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const gid = lookupGroup(raw);
  if (gid === undefined) throw new UsageError(`Unknown group "${raw}" for "--group"`);
  return gid;
}

function createOptions(values: Values): Omit<CreateOptions, "root" | "exclusive"> {
  const o: Omit<CreateOptions, "root" | "exclusive"> = {};
  const size = stringOption(values, "size");
  if (size !== undefined) o.size = parseSize(size, "--size");
  if (values.messages) o.messages = true;
  const mode = parseMode(stringOption(values, "mode"));
  if (mode !== undefined) o.mode = mode;
  const gid = parseGroup(stringOption(values, "group"));
  if (gid !== undefined) o.gid = gid;
  return o;
}

function rootOf(values: Values, baf = false): string {
  return stringOption(values, "root") ?? (baf ? defaultBafRoot() : defaultRoot());
}

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

/**
 * Reads standard input as it arrives and hands over whole lines (each with its newline; a
 * last line without one gets one), as many as one read delivered, until end of input.
 */
function pumpLines(handle: (lines: Uint8Array[]) => void): void {
  noticeTerminal();
  const buf = new Uint8Array(64 * 1024);
  let pending = new Uint8Array(0);
  for (;;) {
    const n = Deno.stdin.readSync(buf);
    if (n === null) break;
    let data = buf.subarray(0, n);
    if (pending.length > 0) {
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(data, pending.length);
      data = joined;
    }
    const lines: Uint8Array[] = [];
    let start = 0;
    for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
      lines.push(data.slice(start, nl + 1));
      start = nl + 1;
    }
    pending = data.slice(start);
    if (lines.length > 0) handle(lines);
  }
  if (pending.length > 0) handle([withNewline(pending)]);
}

function withNewline(data: Uint8Array): Uint8Array {
  return data[data.length - 1] === 10 ? data : concat(data, NEWLINE);
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

function overrunNotice(err: OverrunError, topic: string): void {
  const lost = err.lost === undefined ? "" : ` (at least ${err.lost} bytes lost)`;
  warn(`Topic "${topic}" overrun${lost}: reading on from "now"`);
}

/**
 * Cuts byte-stream topics into lines, each line one message (with its newline), keeping a
 * partial line per topic until the rest arrives. Message-mode topics pass through.
 */
class LineFramer {
  readonly #partial = new Map<string, Uint8Array>();
  readonly messageTopics = new Set<string>();

  /** Forgets a topic's partial line (after an overrun, it would join unrelated text). */
  drop(topic: string): void {
    this.#partial.delete(topic);
  }

  frame(batch: readonly Message[]): Message[] {
    const out: Message[] = [];
    for (const m of batch) {
      const topic = m.topic ?? "";
      if (this.messageTopics.has(topic)) {
        out.push(m);
        continue;
      }
      let data = m.data;
      const before = this.#partial.get(topic);
      if (before) {
        data = concat(before, data);
        this.#partial.delete(topic);
      }
      let start = 0;
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
        out.push({ data: data.subarray(start, nl + 1), topic });
        start = nl + 1;
      }
      if (start < data.length) this.#partial.set(topic, data.slice(start));
    }
    return out;
  }
}

function replayFrom(spec: CommandSpec, values: Values): boolean {
  const replay = stringOption(values, "replay");
  if (replay === undefined) return values["from-oldest"] === true;
  if (replay === "all") return true;
  if (replay === "off") return false;
  throw new UsageError(
    `Cannot use "${replay}" for "--replay" of "${spec.name}": expected off or all`,
  );
}

function openSubscriber(
  topics: string[],
  values: Values,
  root: string,
  fromOldest: boolean,
  onOverrun: (err: OverrunError, topic: string) => void,
): Subscriber {
  return subscribe(topics, {
    root,
    ...(fromOldest ? { fromOldest: true } : {}),
    ...(values.create ? { create: createOptions(values) } : {}),
    onOverrun,
  });
}

/**
 * Reads until `each` wants no more. `next` gives the next batch (empty when there is
 * nothing yet). A closed stdout ends it quietly.
 */
async function readLoop(
  s: Subscriber,
  next: () => Promise<Message[]> | Message[],
  each: (batch: Message[]) => Promise<boolean>,
): Promise<number> {
  try {
    for (;;) {
      const batch = await next();
      if (batch.length === 0) continue;
      if (!await each(batch)) return 0;
    }
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    throw err;
  } finally {
    void s.close();
  }
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

// ---- baf -----------------------------------------------------------------------------------

const PUBMSG_SPEC: CommandSpec = {
  name: "fsbus pubmsg",
  usage: "TOPIC [MESSAGE] [options]",
  summary: "Publish lines to TOPIC as baf's pubmsg does: each line of standard input (or " +
    "MESSAGE) with a trailing newline, one atomic write each; one publisher per topic (an " +
    "exclusive flock on ROOT/TOPIC.lock). Exits 0 at end of input.",
  options: {
    ...writerOptions(
      "Each line of standard input is its own message (always so: accepted " +
        "for the shared vocabulary)",
    ),
    root: BAF_ROOT_OPTION,
    create: { type: "boolean", help: "Create the topic when it does not exist" },
    ...CREATE_OPTIONS,
  },
  examples: [
    "service-x | fsbus pubmsg test1",
    "fsbus pubmsg test1 'one line'",
    "# Create the topic on first use",
    "journalctl -f | fsbus pubmsg logs --create --size 1M",
  ],
  positionals: { min: 1, max: 2, names: "TOPIC" },
};

const SUBMSG_SPEC: CommandSpec = {
  name: "fsbus submsg",
  usage: "[TOPICS] [options]",
  summary: "Print the lines published to topics, interleaved line by line, as baf's submsg " +
    "does. TOPICS is one comma-separated list (several arguments are joined); with none, " +
    "every topic under the root, and with -e every topic but those: both follow topics " +
    "created later (at once: the root is watched with inotify) and wait on an empty root. " +
    ".lock files are never " +
    'opened. A topic that overruns is reported on stderr and read on from "now". ' +
    READER_OUTPUT,
  options: {
    ...readerOptions({ replay: REPLAY_OPTION }),
    root: BAF_ROOT_OPTION,
    exclude: {
      type: "boolean",
      short: "e",
      help: "Subscribe to every topic except those listed",
    },
    prefix: { type: "boolean", help: 'Start each line with its topic and ": "' },
    create: { type: "boolean", help: "Create the listed topics when missing" },
    ...CREATE_OPTIONS,
    "from-oldest": { type: "boolean", hidden: true, help: "Same as --replay all" },
  },
  examples: [
    "fsbus submsg topic1,topic2 | service-y",
    "# Everything except topic1, each line tagged with its topic",
    "fsbus submsg -e topic1 --prefix",
    "# Every topic (also those made later), first 10 lines, as JSON",
    "fsbus submsg --count 10 --json",
  ],
  positionals: { min: 0, max: Infinity, names: "[TOPICS]" },
};

function requireTopic(topic: string, root: string, values: Values): void {
  if (values.create) {
    createTopic(topic, { ...createOptions(values), root, exclusive: false });
    return;
  }
  resolveTopic(topic, { root });
}

/**
 * Runs `fsbus pubmsg TOPIC`: each stdin line to the topic, one publisher per topic.
 *
 * @param args The arguments after "pubmsg".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pubmsg } from "./fanout.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await pubmsg(["news", "hello", "--create", "--root", root]), 0);
 * assert.ok(Deno.statSync(`${root}/news`).isFile);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export function pubmsg(args: string[]): Promise<number> {
  const parsed = parse(PUBMSG_SPEC, args);
  if (parsed.help) {
    out(helpText(PUBMSG_SPEC));
    return Promise.resolve(0);
  }
  const { values, positionals } = parsed;
  const [topic, message] = positionals as [string, string | undefined];
  checkMessageSource(message, { lines: values.lines === true, command: PUBMSG_SPEC.name });
  const root = rootOf(values, true);
  try {
    requireTopic(topic, root, values);
  } catch (err) {
    if (err instanceof FsbusError && err.code === "not_found") {
      throw new FsbusError("not_found", `Cannot open topic "${topic}" in "${root}": no such topic`);
    }
    throw err;
  }
  const lock = lockPublisher(topic, { root });
  try {
    const w = openWriter(topic, { root });
    try {
      if (message !== undefined) w.write(withNewline(encoder.encode(message)));
      else pumpLines((lines) => w.writeBatch(lines));
    } finally {
      w.close();
    }
  } finally {
    lock.close();
  }
  return Promise.resolve(0);
}

function splitTopics(args: string[]): string[] {
  return args.flatMap((a) => a.split(",")).map((t) => t.trim()).filter((t) => t !== "");
}

/**
 * Runs `fsbus submsg [TOPICS] [-e]`: the lines of several topics, interleaved.
 *
 * @param args The arguments after "submsg".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanout, submsg } from "./fanout.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await fanout(["create", "news", "--root", root]);
 * await fanout(["create", "weather", "--root", root]);
 * await fanout(["pub", "news", "extra", "--root", root]);
 * // From the oldest data the rings hold (the default is from now on): prints "news: extra".
 * assert.equal(await submsg(["news,weather", "--prefix", "--replay", "all", "-n", "1", "--root", root]), 0);
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function submsg(args: string[]): Promise<number> {
  const parsed = parse(SUBMSG_SPEC, args);
  if (parsed.help) {
    out(helpText(SUBMSG_SPEC));
    return 0;
  }
  const { values, positionals } = parsed;
  const root = rootOf(values, true);
  const listed = splitTopics(positionals);
  for (const t of listed) {
    if (t.endsWith(".lock")) {
      throw new UsageError(`Cannot use "${t}" as a topic: .lock files are not topics`);
    }
  }
  const choice = readerChoice(SUBMSG_SPEC, values);
  const fromOldest = replayFrom(SUBMSG_SPEC, values);
  // With no list, or -e, submsg follows the root: topics made later join.
  const follow = values.exclude === true || listed.length === 0;
  const skip = new Set(values.exclude ? listed : []);
  let topics: string[];
  if (follow) {
    topics = topicNames(root).filter((t) => !skip.has(t));
  } else {
    topics = [...new Set(listed)];
    if (values.create) { for (const t of topics) requireTopic(t, root, values); }
  }
  const framer = new LineFramer();
  const onOverrun = (err: OverrunError, topic: string) => {
    overrunNotice(err, topic);
    framer.drop(topic);
  };
  const s = topics.length > 0
    ? openSubscriber(topics, { ...values, create: false }, root, fromOldest, onOverrun)
    : new Subscriber([], { onOverrun });
  for (const r of s.readers) if (r.messages) framer.messageTopics.add(r.topic);
  const known = new Set(topics);
  const broken = new Set<string>();
  if (follow && topics.length === 0) warn(`No topics in "${root}" yet: waiting for one`);
  // A following submsg watches the root with inotify: a topic is linked into place whole, so
  // its creation event is the moment to open it.
  const watch = follow ? new RootWatch(root) : undefined;
  const scan = () => {
    for (const name of topicNames(root)) {
      if (known.has(name) || skip.has(name)) continue;
      try {
        // Everything a topic made after we started holds is new: read it from its start.
        const r = openReader(name, { root, fromOldest: true });
        known.add(name);
        broken.delete(name);
        if (r.messages) framer.messageTopics.add(name);
        s.add(r);
      } catch (err) {
        // Not readable yet (a chmod or a new link is an event too: look again then); say so once.
        if (!broken.has(name)) {
          broken.add(name);
          if (!(err instanceof FsbusError && err.code === "not_found")) {
            warn(`Skipping topic "${name}" for now: ${(err as Error).message}`);
          }
        }
      }
    }
  };
  // Events queued between the first listing and the watch are covered by listing once more.
  if (watch) scan();
  const next = async (): Promise<Message[]> => {
    if (!watch) return s.nextSync();
    for (;;) {
      if (watch.changed()) scan();
      const batch = s.takeNow();
      if (batch.length > 0 || s.closed) return batch;
      if (s.readers.length === 0) {
        await watch.wait();
        continue;
      }
      // Sleep on the rings and the root together; whichever ends first cuts the other short.
      let ringsDone = false;
      let rootDone = false;
      const rings = s.wait().finally(() => (ringsDone = true));
      const topics = watch.wait().finally(() => (rootDone = true));
      await Promise.race([rings, topics]);
      if (!ringsDone) s.wake();
      if (!rootDone) watch.wake();
      await Promise.all([rings, topics]);
    }
  };
  const prefix = values.prefix === true && choice.format !== "json";
  const output = new MessageOutput(choice);
  try {
    return await readLoop(s, next, (batch) => {
      let lines = framer.frame(batch);
      if (prefix) {
        lines = lines.map((m) => ({
          ...m,
          data: concat(encoder.encode(`${m.topic}: `), withNewline(m.data)),
        }));
      }
      return output.deliver(lines);
    });
  } finally {
    await watch?.close();
  }
}

const NEWLINE = new Uint8Array([10]);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const COMPLETION_SPECS: Record<string, Record<string, CommandSpec>> = {
  fanout: SPECS,
  pubmsg: { "": PUBMSG_SPEC },
  submsg: { "": SUBMSG_SPEC },
};
