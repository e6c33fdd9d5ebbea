/**
 * A pin session's state across a bridge. A pin session is an mq group with a state file,
 * `.pin.json`, beside its streams (the command, running or exited and how); an attach reads
 * it to know whether the session lives and how it ended. A bridge that carries a whole group
 * also carries that file, as a message of its own (`Fsbus-Pin-State`), sent when it changes
 * and always before a stream's EOF (the session's end is recorded before its EOFs). The
 * receiving bridge makes the group's streams and writes the file as a mirror: the same state
 * plus `mirror` (the host the session runs on), which tells pin that the session's
 * supervisor is on another machine. A mirror is never sent on.
 *
 * @module
 */

import { sha256Hex } from "./_sha256.ts";
import { closeFd, O, openFd, readJsonFile, writeAllFd } from "../../sys/fs.ts";
import { FsbusError } from "../../types.ts";
import type * as mq from "../mq/mod.ts";

const STATE_FILE = ".pin.json";
const LIMIT = 1 << 20;

/** The state file's JSON, when it is a regular file holding an object; else undefined. */
function readStateFile(group: string): Record<string, unknown> | undefined {
  const v = readJsonFile(`${group}/${STATE_FILE}`, LIMIT);
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? v as Record<string, unknown>
    : undefined;
}

function isSessionState(v: unknown): v is Record<string, unknown> {
  const o = v as Record<string, unknown> | null;
  return typeof o === "object" && o !== null && typeof o.id === "string" &&
    Array.isArray(o.command) && typeof o.state === "string" && typeof o.created === "string";
}

/** Watches a group's pin state on the sending side. */
export class PinWatch {
  readonly #group: string;
  readonly #g: mq.MqGroup;
  #last = "";

  private constructor(group: string, g: mq.MqGroup) {
    this.#group = group;
    this.#g = g;
  }

  /** A watch of group `g` at `group`, or undefined when the group is no pin session. */
  static open(group: string, g: mq.MqGroup): PinWatch | undefined {
    const state = readStateFile(group);
    return isSessionState(state) ? new PinWatch(group, g) : undefined;
  }

  /**
   * The state to send when it changed since the last call: the payload (the state and the
   * group's stream names, JSON) and an id made from it. Undefined when unchanged, when the
   * group is no pin session, or when its state is itself a mirror.
   */
  changed(): { data: Uint8Array; id: string } | undefined {
    const state = readStateFile(this.#group);
    if (!isSessionState(state) || state.mirror !== undefined) return undefined;
    let streams: string[] = [];
    try {
      this.#g.refresh();
      streams = this.#g.streamNames();
    } catch {
      // the group is going away: the state alone
    }
    const text = JSON.stringify({ state, streams });
    if (text === this.#last) return undefined;
    this.#last = text;
    const id = `pin-${sha256Hex(text).slice(0, 20)}`;
    return { data: new TextEncoder().encode(text), id };
  }
}

/**
 * Writes a received pin state into group `g` at `group`: makes the streams the session has,
 * and replaces `.pin.json` atomically with the state marked as a mirror of `host`'s.
 *
 * @param group The group's path.
 * @param g The open group.
 * @param data The payload sent by {@linkcode PinWatch.changed}.
 * @param host The host the session runs on.
 * @throws {FsbusError} `invalid` when the payload is not a pin state, or when the group is
 *   a pin session of this machine (its state is not a mirror).
 */
export function writeMirror(group: string, g: mq.MqGroup, data: Uint8Array, host: string): void {
  const fail = (why: string) =>
    new FsbusError("invalid", `Cannot mirror the pin session state of "${group}": ${why}`);
  let v: { state?: unknown; streams?: unknown };
  try {
    v = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw fail("not a pin state");
  }
  if (
    !isSessionState(v?.state) || !Array.isArray(v.streams) ||
    !v.streams.every((s) => typeof s === "string")
  ) {
    throw fail("not a pin state");
  }
  const here = readStateFile(group);
  if (here !== undefined && here.mirror === undefined) {
    throw fail("the group is a pin session of this machine");
  }
  for (const s of v.streams as string[]) {
    try {
      if (g.stream(s) === undefined) g.createStream(s);
    } catch {
      // a name this group refuses: the stream's messages will say so
    }
  }
  const text = JSON.stringify({ ...v.state, mirror: host || "another machine" }) + "\n";
  const tmp = `${group}/${STATE_FILE}.bridge.tmp`;
  try {
    try {
      Deno.removeSync(tmp);
    } catch {
      // not there
    }
    const fd = openFd(tmp, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600);
    try {
      writeAllFd(fd, new TextEncoder().encode(text));
    } finally {
      closeFd(fd);
    }
    Deno.renameSync(tmp, `${group}/${STATE_FILE}`);
  } catch (err) {
    throw fail(err instanceof Error ? err.message : String(err));
  }
}
