/**
 * `fsbus messagefs`: nodes and groups. `join` runs a node that prints what it receives and
 * sends what is typed, `send` is a one-shot node, `ls` lists a network's nodes and groups.
 *
 * @module
 */

import { join, list, type Node, type NodeMessage, type Peer } from "../transports/messagefs/mod.ts";
import { checkGroup, heardGroups, reachesAny } from "../transports/messagefs/names.ts";
import { UsageError } from "../types.ts";
import {
  type CommandSpec,
  helpText,
  parse,
  readerChoice,
  readerOptions,
  stringOption,
  unknownCommand,
  type Values,
  WRITER_INPUT,
  writerOptions,
} from "./_args.ts";
import { checkMessageSource, messagesToWrite, stdinLines } from "./_input.ts";
import { isBrokenPipe, type MessageExtras, MessageOutput, out, warn } from "./_output.ts";

/** The options of the commands that run a node (join, mount): its name, groups and network. */
const NODE_OPTIONS: CommandSpec["options"] = {
  name: {
    type: "string",
    value: "NAME",
    help: "The node's name (default: 6 hex digits of its UUID)",
  },
  group: {
    type: "string",
    short: "g",
    multiple: true,
    value: "GROUP",
    help: "Join GROUP (repeatable)",
  },
};

const NETWORK_OPTIONS: CommandSpec["options"] = {
  network: { type: "string", value: "NET", help: "The network's name", default: "default" },
  root: {
    type: "string",
    value: "DIR",
    help: "Where local networks live (default: $XDG_RUNTIME_DIR/fsbus/messagefs, else " +
      "/tmp/fsbus-$UID/messagefs)",
  },
  nats: {
    type: "string",
    value: "URL[,URL...]",
    help: "Put the network on NATS (these servers, or a cluster's) instead of this machine",
  },
};

const JOIN: CommandSpec = {
  name: "fsbus messagefs join",
  usage: "[options]",
  summary: "Join a network as a node and print what it receives, each message on its own " +
    "line after its sender: a direct message as 'FROM: text', a broadcast as " +
    "'FROM @/GROUP: text' (a newline is added when the message has none); --raw writes " +
    "the messages' bytes exactly, with no sender and nothing added; --json one object per " +
    "message and per presence event (event: present, join, leave or update; name, id, " +
    "groups). Joins and leaves go to stderr. messagefs keeps no history: a node gets what " +
    "is sent while it is in the network. Each line of standard input is sent: 'NAME: text' " +
    "to one node, '@GROUP text' to a group and the groups below it ('@/ text' to everyone). " +
    "'/join GROUP', '/leave GROUP' and '/peers' act on the node. Runs until interrupted " +
    "(or --count messages).",
  options: {
    ...readerOptions({}, {
      json: "from, from_id, group (null for a direct message), seq",
      env: "FSBUS_FROM, FSBUS_GROUP",
    }),
    ...NODE_OPTIONS,
    ...NETWORK_OPTIONS,
  },
  examples: [
    "# Two terminals",
    "fsbus messagefs join --name alice --group ops",
    "fsbus messagefs join --name bob --group ops/db",
    "# then type in alice's: 'bob: hi', or '@ops deploying'",
    "# Wait for one message, print it as JSON and leave",
    "fsbus messagefs join --name waiter --json -n 1",
    "# Run a command for each message",
    "fsbus messagefs join --name logger --exec 'logger -t \"$FSBUS_FROM\"' </dev/null",
    "# Across machines",
    "fsbus messagefs join --name alice --nats nats://10.0.0.1:4222,nats://10.0.0.2",
  ],
  positionals: { min: 0, max: 0 },
};

const SEND: CommandSpec = {
  name: "fsbus messagefs send",
  usage: "NAME|@GROUP [MESSAGE] [options]",
  summary: "Join as a one-shot node, send to the node NAME or to every node in GROUP and the " +
    "groups below it ('@/' for everyone), then leave. " + WRITER_INPUT +
    " MESSAGE is sent exactly as given; with --lines each line without its newline.",
  options: {
    ...writerOptions("Send each line of standard input as its own message"),
    name: { type: "string", value: "NAME", help: "The sending node's name" },
    ...NETWORK_OPTIONS,
  },
  examples: [
    "fsbus messagefs send bob 'hi bob'",
    "fsbus messagefs send @ops/db 'restarting'",
    "# All of standard input as one message, from a node named clock",
    "date | fsbus messagefs send @/ --name clock",
    "# Each line its own message",
    "tail -f app.log | fsbus messagefs send @ops --lines",
  ],
  positionals: { min: 1, max: 2, names: "NAME|@GROUP" },
};

const LS: CommandSpec = {
  name: "fsbus messagefs ls",
  usage: "[options]",
  summary: "List a network's nodes with their groups, then each group with the nodes its .all " +
    "reaches (its members and those of the groups below it).",
  options: {
    ...NETWORK_OPTIONS,
    json: { type: "boolean", help: "One JSON object: network, nodes, groups" },
  },
  examples: ["fsbus messagefs ls", "fsbus messagefs ls --nats nats://127.0.0.1:4222 --json"],
  positionals: { min: 0, max: 0 },
};

const MOUNT: CommandSpec = {
  name: "fsbus messagefs mount",
  usage: "MOUNTPOINT [options]",
  summary: "Join a network as a node and mount its tree on MOUNTPOINT (an empty directory) " +
    "with FUSE: every node is a file (write to it: one direct message per write), every " +
    "group a directory (mkdir joins, rmdir leaves), .all in each directory reaches the " +
    "group and the groups below it, your own file shows the last message received, and " +
    ".inbox blocks and gives one received message per read. Unmounts and leaves on " +
    "Ctrl-C, SIGTERM or umount.",
  options: {
    ...NODE_OPTIONS,
    ...NETWORK_OPTIONS,
  },
  examples: [
    "fsbus messagefs mount /mnt/mfs --name alice &",
    "ls -a /mnt/mfs",
    "echo hi > /mnt/mfs/bob",
    "mkdir /mnt/mfs/ops && echo deploying > /mnt/mfs/ops/.all",
    "cat /mnt/mfs/.inbox",
  ],
  positionals: { min: 1, max: 1, names: "MOUNTPOINT" },
};

const HELP = `Usage: fsbus messagefs join|send|ls|mount [ARGS...]

Nodes and groups: every node of a network has a unique name; groups are paths
(ops/db); a message to a group reaches every node in it and in the groups
below it, once each. On one machine no server is needed; --nats puts the
network on NATS.

Commands:
  join   Run a node: print what it receives, send what is typed
  send   Send one message (or each line) from a one-shot node
  ls     List nodes and groups
  mount  Mount the network as a tree: nodes are files, groups are directories

Run "fsbus messagefs COMMAND --help" for a command's options.
`;

function networkOptions(values: Values) {
  const o: { network?: string; root?: string; nats?: string } = {};
  const network = stringOption(values, "network");
  const root = stringOption(values, "root");
  const nats = stringOption(values, "nats");
  if (network !== undefined) o.network = network;
  if (root !== undefined) o.root = root;
  if (nats !== undefined) o.nats = nats;
  return o;
}

/**
 * Runs `fsbus messagefs ...`.
 *
 * @param args The arguments after "messagefs".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { messagefs } from "./messagefs.ts";
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await messagefs(["ls", "--root", root]), 0); // prints the nodes: none here
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export async function messagefs(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    out(HELP);
    return sub === undefined ? 2 : 0;
  }
  const run = Object.hasOwn(COMMANDS, sub) ? COMMANDS[sub] : undefined;
  if (!run) throw unknownCommand("fsbus messagefs", sub, Object.keys(COMMANDS));
  return await run(rest);
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function showGroup(g: string): string {
  return `/${g}`;
}

/** What a received message adds to the shared JSON fields and `--exec` environment. */
function extras(m: NodeMessage): MessageExtras {
  const group = m.group === undefined ? undefined : showGroup(m.group);
  return {
    json: { from: m.from, from_id: m.fromId, group: group ?? null, seq: m.seq },
    env: { FSBUS_FROM: m.from, FSBUS_GROUP: group ?? "" },
  };
}

/** A message with its sender in front, for the default one-per-line format. */
function withSender(m: NodeMessage): NodeMessage {
  const prefix = encoder.encode(
    m.group === undefined ? `${m.from}: ` : `${m.from} @${showGroup(m.group)}: `,
  );
  const data = new Uint8Array(prefix.length + m.data.length);
  data.set(prefix);
  data.set(m.data, prefix.length);
  return { ...m, data };
}

function peerJson(p: Peer) {
  return { name: p.name, id: p.id, groups: p.groups.map(showGroup) };
}

function describePeer(p: Peer): string {
  return p.groups.length ? `"${p.name}" (${p.groups.map(showGroup).join(" ")})` : `"${p.name}"`;
}

async function handleLine(node: Node, raw: Uint8Array): Promise<void> {
  const line = decoder.decode(raw).replace(/\r$/, "");
  if (line.trim() === "") return;
  try {
    if (line.startsWith("@")) {
      const sp = line.indexOf(" ");
      const group = sp < 0 ? line.slice(1) : line.slice(1, sp);
      await node.broadcast(group, sp < 0 ? "" : line.slice(sp + 1));
      return;
    }
    const cmd = line.match(/^\/(join|leave|peers)\b\s*(.*)$/);
    if (cmd) {
      if (cmd[1] === "peers") {
        for (const p of node.peers()) warn(`peer ${describePeer(p)}`);
        return;
      }
      if (!cmd[2]) throw new UsageError(`Missing group for "/${cmd[1]}"`);
      if (cmd[1] === "join") await node.joinGroup(cmd[2]);
      else await node.leaveGroup(cmd[2]);
      return;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new UsageError(`Cannot send "${line}": write "NAME: text" or "@GROUP text"`);
    }
    const text = line.slice(colon + 1).replace(/^ /, "");
    await node.send(line.slice(0, colon).trim(), text);
  } catch (err) {
    warn(err instanceof Error ? err.message : String(err));
  }
}

async function joinCommand(args: string[]): Promise<number> {
  const parsed = parse(JOIN, args);
  if (parsed.help) {
    out(helpText(JOIN));
    return 0;
  }
  const { values } = parsed;
  const choice = readerChoice(JOIN, values);
  const json = choice.format === "json";
  const labelled = choice.format === "lines" && choice.exec === undefined;
  const name = stringOption(values, "name");
  const node = await join({
    ...networkOptions(values),
    ...(name !== undefined ? { name } : {}),
    groups: (values.group as string[] | undefined) ?? [],
    onNotice: warn,
  });
  const ac = new AbortController();
  const stopNow = () => ac.abort();
  Deno.addSignalListener("SIGINT", stopNow);
  Deno.addSignalListener("SIGTERM", stopNow);
  try {
    const messages = node.messages({ signal: ac.signal });
    const presence = node.presence({ signal: ac.signal });
    warn(
      `joined network "${node.network}" as "${node.name}" (${
        node.mode === "local" ? node.where : `NATS ${node.where}`
      }); ${node.peers().length} other node(s)`,
    );
    for (const p of node.peers()) {
      if (json) out(JSON.stringify({ event: "present", ...peerJson(p) }) + "\n");
      else warn(`${describePeer(p)} is here`);
    }
    (async () => {
      for await (const e of presence) {
        if (json) {
          out(JSON.stringify({ event: e.kind, ...peerJson(e.peer) }) + "\n");
        } else {
          const verb = e.kind === "join" ? "joined" : e.kind === "leave" ? "left" : "is now in";
          warn(
            e.kind === "update"
              ? `"${e.peer.name}" ${verb} ${e.peer.groups.map(showGroup).join(" ") || "/"}`
              : `${describePeer(e.peer)} ${verb}`,
          );
        }
      }
    })();
    (async () => {
      try {
        for await (const batch of stdinLines({ keepNewline: false })) {
          for (const line of batch) await handleLine(node, line);
        }
      } catch {
        // stdin unreadable: keep receiving
      }
    })();
    const output = new MessageOutput(choice, (m) => extras(m as NodeMessage));
    for await (const m of messages) {
      if (!await output.deliver([labelled ? withSender(m) : m])) break;
    }
  } catch (err) {
    if (!isBrokenPipe(err)) throw err;
  } finally {
    Deno.removeSignalListener("SIGINT", stopNow);
    Deno.removeSignalListener("SIGTERM", stopNow);
    await node.leave();
  }
  return 0;
}

async function sendCommand(args: string[]): Promise<number> {
  const parsed = parse(SEND, args);
  if (parsed.help) {
    out(helpText(SEND));
    return 0;
  }
  const { values, positionals } = parsed;
  const [target, message] = positionals as [string, string | undefined];
  const source = { lines: values.lines === true, command: SEND.name };
  checkMessageSource(message, source);
  const group = target.startsWith("@") ? target.slice(1) : undefined;
  if (group === undefined && target === "") throw new UsageError('Missing node name for "send"');
  if (group !== undefined) checkGroup(group);
  const name = stringOption(values, "name");
  const node = await join({
    ...networkOptions(values),
    ...(name !== undefined ? { name } : {}),
    connectTimeoutMs: 10_000,
  });
  try {
    for await (const batch of messagesToWrite(message, source)) {
      for (const data of batch) {
        if (group === undefined) await node.send(target, data);
        else await node.broadcast(group, data);
      }
    }
    await node.flush(10_000);
  } finally {
    await node.leave();
  }
  return 0;
}

async function lsCommand(args: string[]): Promise<number> {
  const parsed = parse(LS, args);
  if (parsed.help) {
    out(helpText(LS));
    return 0;
  }
  const { values } = parsed;
  const options = networkOptions(values);
  const peers = await list({ ...options, connectTimeoutMs: 10_000 });
  const groups = [...heardGroups(peers.flatMap((p) => p.groups))].sort();
  const members = (g: string) => peers.filter((p) => reachesAny(g, p.groups)).map((p) => p.name);
  if (values.json) {
    out(
      JSON.stringify({
        network: options.network ?? "default",
        nodes: peers.map((p) => ({
          name: p.name,
          id: p.id,
          groups: p.groups.map(showGroup),
          pid: p.pid ?? null,
          host: p.host ?? null,
          since: p.since.toISOString(),
        })),
        groups: Object.fromEntries(groups.map((g) => [showGroup(g), members(g)])),
      }) + "\n",
    );
    return 0;
  }
  const width = Math.max(4, ...peers.map((p) => p.name.length)) + 2;
  const lines = [`${"NAME".padEnd(width)}GROUPS`];
  for (const p of peers) lines.push(`${p.name.padEnd(width)}${p.groups.map(showGroup).join(" ")}`);
  const gw = Math.max(5, ...groups.map((g) => g.length + 1)) + 2;
  lines.push("", `${"GROUP".padEnd(gw)}REACHES`);
  for (const g of groups) lines.push(`${showGroup(g).padEnd(gw)}${members(g).join(" ")}`);
  out(lines.join("\n") + "\n");
  return 0;
}

async function mountCommand(args: string[]): Promise<number> {
  const parsed = parse(MOUNT, args);
  if (parsed.help) {
    out(helpText(MOUNT));
    return 0;
  }
  const { values, positionals } = parsed;
  const mountpoint = positionals[0]!;
  const name = stringOption(values, "name");
  const { mountNode } = await import("../transports/messagefs/mount.ts");
  const node = await join({
    ...networkOptions(values),
    ...(name !== undefined ? { name } : {}),
    groups: (values.group as string[] | undefined) ?? [],
    onNotice: warn,
  });
  try {
    const tree = await mountNode(node, mountpoint, {
      handleSignals: true,
      onError: (err) => warn(`Serving "${mountpoint}": ${(err as Error)?.message ?? err}`),
    });
    warn(`mounted network "${node.network}" on "${mountpoint}" as "${node.name}"`);
    await tree.done;
  } finally {
    await node.leave();
  }
  return 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  join: joinCommand,
  send: sendCommand,
  ls: lsCommand,
  mount: mountCommand,
};

/** The commands of this file, for shell completion: command → subcommand → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = {
  messagefs: { join: JOIN, send: SEND, ls: LS, mount: MOUNT },
};
