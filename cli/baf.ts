/**
 * baf's `fsbus pubmsg` / `fsbus submsg`: lines to and from /dev/fanout topics (the topics of
 * `fsbus fanout`, in `fanout.ts`), one publisher per topic, several topics interleaved.
 *
 * @module
 */

import { FsbusError, type Message, type OverrunError, UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  READER_OUTPUT,
  readerChoice,
  readerOptions,
  type Values,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource } from "./_input.ts";
import { MessageOutput, out, warn } from "./_output.ts";
import {
  createTopic,
  lockPublisher,
  openReader,
  openWriter,
  resolveTopic,
  RootWatch,
  Subscriber,
  topicNames,
} from "../transports/fanout/mod.ts";
import {
  CREATE_OPTIONS,
  createOptions,
  REPLAY_OPTION,
  replayFrom,
  rootOf,
} from "./_fanout_args.ts";
import {
  concat,
  LineFramer,
  openSubscriber,
  overrunNotice,
  pumpLines,
  readLoop,
  withNewline,
} from "./_fanout_io.ts";

const encoder = new TextEncoder();

const BAF_ROOT_OPTION = {
  type: "string",
  value: "DIR",
  help: "The topic root (default: /dev/baf when it exists, else /dev/shm/fsbus)",
} as const;

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
 * import { pubmsg } from "./baf.ts";
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
 * import { fanout } from "./fanout.ts";
 * import { submsg } from "./baf.ts";
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

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const COMPLETION_SPECS: Record<string, Record<string, CommandSpec>> = {
  pubmsg: { "": PUBMSG_SPEC },
  submsg: { "": SUBMSG_SPEC },
};
