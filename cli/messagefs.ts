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
  intOption,
  parse,
  stringOption,
  type Values,
} from "./_args.ts";
import { readStdin, stdinLines } from "./_input.ts";
import { jsonLine, out, warn, writeAll } from "./_output.ts";

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
  summary: "Join a network as a node and print what it receives: a direct message as " +
    "'FROM: text', a broadcast as 'FROM @GROUP: text'; joins and leaves go to stderr. Each " +
    "line of standard input is sent: 'NAME: text' to one node, '@GROUP text' to a group and " +
    "the groups below it ('@/ text' to everyone). '/join GROUP', '/leave GROUP' and '/peers' " +
    "act on the node. Runs until interrupted (or --count messages).",
  options: {
    ...NODE_OPTIONS,
    ...NETWORK_OPTIONS,
    json: {
      type: "boolean",
      help: "One JSON object per message (id, topic, time, size, from, from_id, group, seq, " +
        "data, encoding) and per presence event (event: present, join, leave or update; name, id, groups)",
    },
    count: { type: "string", short: "n", value: "N", help: "Exit after N messages" },
  },
  examples: [
    "# Two terminals",
    "fsbus messagefs join --name alice --group ops",
    "fsbus messagefs join --name bob --group ops/db",
    "# then type in alice's: 'bob: hi', or '@ops deploying'",
    "# Across machines",
    "fsbus messagefs join --name alice --nats nats://10.0.0.1:4222,nats://10.0.0.2:4222",
  ],
  positionals: { min: 0, max: 0 },
};

const SEND: CommandSpec = {
  name: "fsbus messagefs send",
  usage: "NAME|@GROUP [MESSAGE] [options]",
  summary: "Join as a one-shot node, send MESSAGE (or all of standard input) to the node NAME " +
    "or to every node in GROUP and the groups below it ('@/' for everyone), then leave.",
  options: {
    name: { type: "string", value: "NAME", help: "The sending node's name" },
    ...NETWORK_OPTIONS,
    lines: { type: "boolean", help: "Send each line of standard input as its own message" },
  },
  examples: [
    "fsbus messagefs send bob 'hi bob'",
    "fsbus messagefs send @ops/db 'restarting'",
    "date | fsbus messagefs send @/ --name clock",
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

Nodes and groups: every node of a network has a unique name; groups are paths (ops/db); a
message to a group reaches every node in it and in the groups below it, once each. On one
machine no server is needed; --nats puts the network on NATS.

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
  switch (sub) {
    case "join":
      return await joinCommand(rest);
    case "send":
      return await sendCommand(rest);
    case "ls":
      return await lsCommand(rest);
    case "mount":
      return await mountCommand(rest);
    case undefined:
      out(HELP);
      return 2;
    case "-h":
    case "--help":
    case "help":
      out(HELP);
      return 0;
    default:
      throw new UsageError(`Unknown command "messagefs ${sub}" (see "fsbus messagefs --help")`);
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function showGroup(g: string): string {
  return `/${g}`;
}

function printMessage(m: NodeMessage, json: boolean): void {
  if (json) {
    out(jsonLine(m, {
      from: m.from,
      from_id: m.fromId,
      group: m.group === undefined ? null : showGroup(m.group),
      seq: m.seq,
    }));
    return;
  }
  const prefix = m.group === undefined ? `${m.from}: ` : `${m.from} @${showGroup(m.group)}: `;
  const body = m.data.length > 0 && m.data[m.data.length - 1] === 10 ? m.data : undefined;
  writeAll(Deno.stdout, encoder.encode(prefix));
  writeAll(Deno.stdout, m.data);
  if (body === undefined) writeAll(Deno.stdout, encoder.encode("\n"));
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
  const json = values.json === true;
  const limit = intOption(values, "count", 1);
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
    let n = 0;
    for await (const m of messages) {
      printMessage(m, json);
      if (limit !== undefined && ++n >= limit) break;
    }
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
  const target = positionals[0]!;
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
    const sendOne = (data: Uint8Array) =>
      group === undefined ? node.send(target, data) : node.broadcast(group, data);
    if (positionals[1] !== undefined) await sendOne(encoder.encode(positionals[1]));
    else if (values.lines) {
      for await (const batch of stdinLines({ keepNewline: false })) {
        for (const line of batch) await sendOne(line);
      }
    } else await sendOne(await readStdin());
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
