/**
 * Helpers for the messagefs CLI tests: a `fsbus messagefs join --json` node in a child
 * process (optionally in a network namespace), what it printed, typing into it, ending it.
 *
 * @module
 */

import { CLI, collect, waitFor } from "../_helpers.ts";

/** A `fsbus messagefs join --json` process. */
export interface MfsNode {
  child: Deno.ChildProcess;
  out: ReturnType<typeof collect>;
  err: ReturnType<typeof collect>;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  name: string;
}

/** The JSON lines a node printed so far. */
export function events(n: MfsNode): Record<string, unknown>[] {
  const text = n.out.text();
  return text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
}

/** The messages (not presence events) a node printed so far. */
export function received(n: MfsNode): Record<string, unknown>[] {
  return events(n).filter((e) => e.event === undefined);
}

/** Starts a node and waits until it has joined. */
export async function startNode(args: string[], netns?: string): Promise<MfsNode> {
  const argv = ["run", "-A", "--quiet", CLI, "messagefs", "join", "--json", ...args];
  const [cmd, cmdArgs] = netns
    ? ["ip", ["netns", "exec", netns, Deno.execPath(), ...argv]]
    : [Deno.execPath(), argv];
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const n: MfsNode = {
    child,
    out: collect(child.stdout),
    err: collect(child.stderr),
    writer: child.stdin.getWriter(),
    name: "",
  };
  await waitFor(
    () => /joined network/.test(n.err.text()) || /fsbus: Cannot/.test(n.err.text()),
    "a node to join",
    20_000,
  );
  const m = n.err.text().match(/as "([^"]+)"/);
  if (!m) throw new Error(`node did not join: ${n.err.text()}`);
  n.name = m[1]!;
  return n;
}

/** Types one line into a node. */
export async function say(n: MfsNode, line: string): Promise<void> {
  await n.writer.write(new TextEncoder().encode(line + "\n"));
}

/** Ends a node with a signal and waits for it. */
export async function endNode(
  n: MfsNode,
  signal: Deno.Signal = "SIGTERM",
): Promise<Deno.CommandStatus> {
  try {
    n.child.kill(signal);
  } catch {
    // already gone
  }
  try {
    await n.writer.close();
  } catch {
    // closed
  }
  const status = await n.child.status;
  await n.out.done;
  await n.err.done;
  return status;
}

/** The texts of the messages a node printed so far. */
export function texts(n: MfsNode): string[] {
  return received(n).map((m) => m.data as string);
}

/** How many times a node printed a message with this text. */
export function count(n: MfsNode, text: string): number {
  return texts(n).filter((t) => t === text).length;
}
