/**
 * `fsbus status PATH`: what PATH is (a directory bus, an mq group, a filebus file, a fanout
 * topic), its settings, counts and size, from each transport's `status()`.
 *
 * @module
 */

import { FsbusError, type Status } from "../types.ts";
import { type CommandSpec, helpText, parse } from "./_args.ts";
import { out } from "./_output.ts";

const SPEC: CommandSpec = {
  name: "fsbus status",
  usage: "PATH [options]",
  summary: "Say what PATH is and what it holds: a directory bus (TTL, access, messages, " +
    "topics, bytes), an mq group (ctl settings, streams, messages, bytes), a filebus file " +
    "(the current chunk, the lock file, a write in progress) or a fanout topic (backend, ring " +
    "size, bytes or messages, live readers and writers). A directory holding ctl and order " +
    "is an mq group; a file starting with the ring magic, or a character device, is a fanout " +
    "topic; any other file, or a path with a .lock beside it, is a filebus file.",
  options: {
    json: { type: "boolean", help: "One JSON object: kind, path, what, settings, counts, bytes" },
  },
  examples: [
    "fsbus status /dev/shm/bus",
    "fsbus status /dev/shm/chat --json",
    "fsbus status /dev/shm/fsbus/news",
  ],
  positionals: { min: 1, max: 1, names: "PATH" },
};

/**
 * Works out what `path` is and describes it.
 *
 * @param path The path.
 * @returns Its status.
 * @throws {FsbusError} When nothing fsbus knows is there.
 */
async function describe(path: string): Promise<Status> {
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (info === undefined || info.isFile) {
    if (info?.isFile && info.size >= 8 && isRing(path)) {
      return (await import("../transports/fanout/mod.ts")).status(path);
    }
    if (info === undefined && !exists(`${path}.lock`)) {
      throw new FsbusError("not_found", `Cannot describe "${path}": no such file or directory`);
    }
    return (await import("../transports/filebus/mod.ts")).status(path);
  }
  if (info.isDirectory) {
    if (exists(`${path}/ctl`) && exists(`${path}/order`)) {
      return (await import("../transports/mq/mod.ts")).status(path);
    }
    return (await import("../transports/msgfs/mod.ts")).status(path);
  }
  if (info.isSymlink || (info.mode !== null && (info.mode & 0o170000) === 0o020000)) {
    // A /dev/baf symlink, or a /dev/fanout device.
    return (await import("../transports/fanout/mod.ts")).status(path);
  }
  throw new FsbusError("invalid", `Cannot describe "${path}": not a bus fsbus knows`);
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function isRing(path: string): boolean {
  let f: Deno.FsFile | undefined;
  try {
    f = Deno.openSync(path, { read: true });
    const head = new Uint8Array(8);
    const n = f.readSync(head);
    return n === 8 && new TextDecoder().decode(head) === "fsbusrng";
  } catch {
    return false;
  } finally {
    f?.close();
  }
}

function text(s: Status): string {
  const rows: [string, string][] = [];
  for (const [k, v] of Object.entries(s.settings)) rows.push([k, String(v)]);
  for (const [k, v] of Object.entries(s.counts)) rows.push([k, String(v)]);
  rows.push(["bytes", String(s.bytes)]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return `${s.path}: ${s.what} (${s.kind})\n` +
    rows.map(([k, v]) => `  ${k.padEnd(width)}${v}\n`).join("");
}

/**
 * Runs `fsbus status PATH [--json]`.
 *
 * @param args The arguments after "status".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { status } from "./status.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(await status([dir, "--json"]), 0); // prints what the bus holds, as JSON
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function status(args: string[]): Promise<number> {
  const parsed = parse(SPEC, args);
  if (parsed.help) {
    out(helpText(SPEC));
    return 0;
  }
  const s = await describe(parsed.positionals[0]!);
  out(parsed.values.json ? JSON.stringify(s) + "\n" : text(s));
  return 0;
}

/** The commands of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = { status: { "": SPEC } };
