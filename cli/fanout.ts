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
  stringOption,
  type Values,
} from "./_args.ts";
import { isBrokenPipe, jsonLine, out, warn, writeAll } from "./_output.ts";
import {
  type CreateOptions,
  createTopic,
  DEFAULT_RING_SIZE,
  defaultBafRoot,
  defaultRoot,
  listTopics,
  lockPublisher,
  openWriter,
  removeTopic,
  resolveTopic,
  subscribe,
  type Subscriber,
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
      "List the topics under the root: backend (ring or device), ring size, mode, and the live readers and writers where known.",
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
    summary:
      "Write MESSAGE, or standard input, to a topic. Each write of at most a quarter ring is atomic; longer byte-stream writes are split. On a message-mode topic, MESSAGE (or all of standard input) is one message, or each line with --lines.",
    options: {
      root: ROOT_OPTION,
      lines: {
        type: "boolean",
        help: "Read standard input line by line: each line is one write (one message)",
      },
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
    summary:
      'Print what is written to topics, from "now" on (or from the oldest data the ring still holds). A reader that falls more than a ring behind says so on stderr and goes on from "now".',
    options: {
      root: ROOT_OPTION,
      count: {
        type: "string",
        value: "N",
        help: "Stop after N messages (message mode) or N lines (byte stream)",
      },
      bytes: { type: "string", value: "N", help: "Stop after N bytes" },
      "from-oldest": { type: "boolean", help: "Start at the oldest data the ring holds" },
      json: {
        type: "boolean",
        help: "One JSON object per message or chunk (binary data as base64)",
      },
      newline: {
        type: "boolean",
        help: "Add a newline after each message that does not end with one",
      },
      create: { type: "boolean", help: "Create missing topics" },
      ...CREATE_OPTIONS,
    },
    examples: [
      "fsbus fanout sub news",
      "# Replay what the ring holds, then follow",
      "fsbus fanout sub news --from-oldest",
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
  "  list                  List topics with backend, size, readers and writers",
  "  rm TOPIC...           Remove topics",
  "  pub TOPIC [MESSAGE]   Write a message, or standard input",
  "  sub TOPIC...          Print what is written to topics",
  "",
  "Every command takes --root DIR (default /dev/shm/fsbus) and --help.",
  "",
  "Examples:",
  "  fsbus fanout create news",
  "  fsbus fanout sub news &",
  "  fsbus fanout pub news 'hello'",
  "  fsbus fanout list",
  "  # baf's commands over the same topics",
  "  printf 'one\\ntwo\\n' | fsbus pubmsg news",
  "  fsbus submsg news,weather --prefix",
  "",
].join("\n");

function parseMode(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^0?[0-7]{1,4}$/.test(raw)) {
    throw new UsageError(`Invalid mode "${raw}" for "--mode": expected octal permission bits`);
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
 * ```ts ignore
 * await fanout(["create", "news"]);
 * ```
 */
export function fanout(args: string[]): Promise<number> {
  return Promise.resolve(runFanout(args));
}

function runFanout(args: string[]): number {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    out(FANOUT_HELP);
    return command === undefined ? 2 : 0;
  }
  const spec = Object.hasOwn(SPECS, command) ? SPECS[command] : undefined;
  if (!spec) {
    throw new UsageError(`Unknown command "fanout ${command}" (see "fsbus fanout --help")`);
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
    return 0;
  }
  const rows = [["TOPIC", "BACKEND", "SIZE", "MODE", "READERS", "WRITERS"]];
  for (const t of topics) {
    rows.push([
      t.topic,
      t.backend,
      t.size === undefined ? "-" : String(t.size),
      t.messages === undefined ? "-" : t.messages ? "messages" : "bytes",
      t.readers === undefined ? "?" : String(t.readers),
      t.writers === undefined ? "?" : String(t.writers),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  let text = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join(
    "\n",
  ) + "\n";
  for (const t of topics) if (t.problem) text += `# ${t.topic}: ${t.problem}\n`;
  out(text);
  return 0;
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
  if (pending.length > 0) {
    const last = new Uint8Array(pending.length + 1);
    last.set(pending);
    last[pending.length] = 10;
    handle([last]);
  }
}

function pub(positionals: string[], values: Values): number {
  const [topic, message] = positionals as [string, string | undefined];
  const w = openFor(topic, values, rootOf(values));
  try {
    if (message !== undefined) {
      w.write(message);
    } else if (values.lines) {
      pumpLines((lines) => w.writeBatch(lines));
    } else if (w.messages) {
      w.write(readStdin());
    } else {
      // A byte stream: pass each read on at once, in atomic pieces.
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

/** Writes output in as few system calls as possible, and counts what it wrote. */
class Output {
  #parts: Uint8Array[] = [];
  #size = 0;
  push(data: Uint8Array): void {
    this.#parts.push(data);
    this.#size += data.length;
  }
  flush(): void {
    if (this.#size === 0) return;
    let all: Uint8Array;
    if (this.#parts.length === 1) {
      all = this.#parts[0]!;
    } else {
      all = new Uint8Array(this.#size);
      let off = 0;
      for (const p of this.#parts) {
        all.set(p, off);
        off += p.length;
      }
    }
    this.#parts = [];
    this.#size = 0;
    writeAll(Deno.stdout, all);
  }
}

function countNewlines(data: Uint8Array, limit: number): { count: number; end: number } {
  let count = 0;
  for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) {
    if (++count === limit) return { count, end: i + 1 };
  }
  return { count, end: data.length };
}

function openSubscriber(
  topics: string[],
  values: Values,
  root: string,
  onOverrun: (err: OverrunError, topic: string) => void,
): Subscriber {
  return subscribe(topics, {
    root,
    ...(values["from-oldest"] ? { fromOldest: true } : {}),
    ...(values.create ? { create: createOptions(values) } : {}),
    onOverrun,
  });
}

function runLoop(s: Subscriber, each: (batch: Message[]) => boolean): number {
  try {
    for (;;) {
      const batch = s.nextSync();
      if (batch.length === 0) continue;
      if (!each(batch)) return 0;
    }
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    throw err;
  } finally {
    void s.close();
  }
}

function sub(topics: string[], values: Values): number {
  const count = intOption(values, "count", 1);
  const maxBytes = intOption(values, "bytes", 1);
  const json = values.json === true;
  const newline = values.newline === true;
  const s = openSubscriber(topics, values, rootOf(values), overrunNotice);
  let items = 0;
  let bytes = 0;
  const o = new Output();
  return runLoop(s, (batch) => {
    const byMessage = s.readers.every((r) => r.messages);
    let more = true;
    for (const m of batch) {
      let data = m.data;
      if (maxBytes !== undefined && bytes + data.length >= maxBytes) {
        data = data.subarray(0, maxBytes - bytes);
        more = false;
      }
      if (count !== undefined && !byMessage) {
        const { count: n, end } = countNewlines(data, count - items);
        if (items + n >= count) {
          data = data.subarray(0, end);
          more = false;
        }
        items += n;
      } else if (count !== undefined && ++items >= count) {
        more = false;
      }
      bytes += data.length;
      if (json) {
        o.push(encoder.encode(jsonLine({ data, ...(m.topic ? { topic: m.topic } : {}) })));
      } else {
        o.push(data);
        if (newline && (data.length === 0 || data[data.length - 1] !== 10)) {
          o.push(new Uint8Array([10]));
        }
      }
      if (!more) break;
    }
    o.flush();
    return more;
  });
}

// ---- baf -----------------------------------------------------------------------------------

const PUBMSG_SPEC: CommandSpec = {
  name: "fsbus pubmsg",
  usage: "TOPIC [options]",
  summary:
    "Publish each line of standard input to TOPIC, with a trailing newline, as baf's pubmsg does: one publisher per topic (an exclusive flock on ROOT/TOPIC.lock), each line one atomic write. Exits 0 at end of input.",
  options: {
    root: BAF_ROOT_OPTION,
    create: { type: "boolean", help: "Create the topic when it does not exist" },
    ...CREATE_OPTIONS,
  },
  examples: [
    "service-x | fsbus pubmsg test1",
    "# Create the topic on first use",
    "journalctl -f | fsbus pubmsg logs --create --size 1M",
  ],
  positionals: { min: 1, max: 1, names: "TOPIC" },
};

const SUBMSG_SPEC: CommandSpec = {
  name: "fsbus submsg",
  usage: "[TOPICS] [options]",
  summary:
    'Print the lines published to topics, interleaved line by line, as baf\'s submsg does. TOPICS is one comma-separated list (several arguments are joined); with none, every topic under the root. .lock files are never opened. A topic that overruns is reported on stderr and read on from "now".',
  options: {
    root: BAF_ROOT_OPTION,
    exclude: {
      type: "boolean",
      short: "e",
      help: "Subscribe to every topic except those listed",
    },
    prefix: { type: "boolean", help: 'Start each line with its topic and ": "' },
    count: { type: "string", value: "N", help: "Stop after N lines" },
    "from-oldest": { type: "boolean", help: "Start at the oldest data each ring holds" },
    create: { type: "boolean", help: "Create the listed topics when missing" },
    ...CREATE_OPTIONS,
  },
  examples: [
    "fsbus submsg topic1,topic2 | service-y",
    "# Everything except topic1, each line tagged with its topic",
    "fsbus submsg -e topic1 --prefix",
    "# Every topic, first 10 lines",
    "fsbus submsg --count 10",
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
 * ```ts ignore
 * await pubmsg(["news", "--create"]);
 * ```
 */
export function pubmsg(args: string[]): Promise<number> {
  const parsed = parse(PUBMSG_SPEC, args);
  if (parsed.help) {
    out(helpText(PUBMSG_SPEC));
    return Promise.resolve(0);
  }
  const { values, positionals } = parsed;
  const topic = positionals[0]!;
  const root = rootOf(values, true);
  try {
    requireTopic(topic, root, values);
  } catch (err) {
    if (err instanceof FsbusError && err.code === "not_found") {
      throw new FsbusError("not_found", `Topic "${topic}" does not exist in "${root}"`);
    }
    throw err;
  }
  const lock = lockPublisher(topic, { root });
  try {
    const w = openWriter(topic, { root });
    try {
      pumpLines((lines) => w.writeBatch(lines));
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
 * ```ts ignore
 * await submsg(["news,weather", "--prefix"]);
 * ```
 */
export function submsg(args: string[]): Promise<number> {
  const parsed = parse(SUBMSG_SPEC, args);
  if (parsed.help) {
    out(helpText(SUBMSG_SPEC));
    return Promise.resolve(0);
  }
  const { values, positionals } = parsed;
  const root = rootOf(values, true);
  const listed = splitTopics(positionals);
  for (const t of listed) {
    if (t.endsWith(".lock")) {
      throw new UsageError(`Invalid topic "${t}": .lock files are not topics`);
    }
  }
  let topics: string[];
  if (values.exclude) {
    const skip = new Set(listed);
    topics = topicNames(root).filter((t) => !skip.has(t));
  } else if (listed.length > 0) {
    topics = [...new Set(listed)];
    if (values.create) { for (const t of topics) requireTopic(t, root, values); }
  } else {
    topics = topicNames(root);
  }
  if (topics.length === 0) {
    throw new FsbusError("not_found", `No topics to subscribe to in "${root}"`);
  }
  const count = intOption(values, "count", 1);
  const prefix = values.prefix === true;
  const partial = new Map<string, Uint8Array>();
  const s = openSubscriber(topics, { ...values, create: false }, root, (err, topic) => {
    overrunNotice(err, topic);
    // The stream is broken: a half line would join unrelated text.
    partial.delete(topic);
  });
  const messageTopics = new Set(s.readers.filter((r) => r.messages).map((r) => r.topic));
  let lines = 0;
  const o = new Output();
  const emit = (topic: string, line: Uint8Array): boolean => {
    if (prefix) o.push(encoder.encode(`${topic}: `));
    o.push(line);
    return count === undefined || ++lines < count;
  };
  return Promise.resolve(runLoop(s, (batch) => {
    let more = true;
    for (const m of batch) {
      const topic = m.topic ?? "";
      if (messageTopics.has(topic)) {
        const d = m.data;
        const line = d.length > 0 && d[d.length - 1] === 10 ? d : concat(d, NEWLINE);
        more = emit(topic, line);
        if (!more) break;
        continue;
      }
      let data = m.data;
      const before = partial.get(topic);
      if (before) {
        data = concat(before, data);
        partial.delete(topic);
      }
      let start = 0;
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
        more = emit(topic, data.subarray(start, nl + 1));
        start = nl + 1;
        if (!more) break;
      }
      if (!more) break;
      if (start < data.length) partial.set(topic, data.slice(start));
    }
    o.flush();
    return more;
  }));
}

const NEWLINE = new Uint8Array([10]);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}
