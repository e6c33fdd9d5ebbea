/**
 * The bridge's config file: one bridge per line, `FROM TO` followed by options, `#` comments.
 *
 * ```
 * # this machine's buses on the cluster
 * dir:/dev/shm/bus  jetstream://a:4222,b:4222/APP/app.events  --both
 * mq:/dev/shm/chat  jetstream://a:4222,b:4222/CHAT/chat       --history
 * fanout:news       dir:/dev/shm/bus#news
 * ```
 *
 * @module
 */

import { FsbusError } from "../../types.ts";

/**
 * One line of a config file.
 *
 * @example
 * ```ts
 * import type { BridgeSpec } from "./config.ts";
 * const spec: BridgeSpec = { from: "dir:/a", to: "nats://h:4222/x", both: false, history: false };
 * ```
 */
export interface BridgeSpec {
  /** The source endpoint. */
  from: string;
  /** The sink endpoint. */
  to: string;
  /** Both directions. */
  both: boolean;
  /** Carry existing history on a first run. */
  history: boolean;
  /** An explicit identity. */
  name?: string;
}

/**
 * Parses a config file's text.
 *
 * @param text The file's content.
 * @param path Its path, for error messages.
 * @returns One spec per bridge line.
 * @throws {FsbusError} `usage` naming the line for anything not understood.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * const specs = parseConfig("dir:/a nats://127.0.0.1:4222/x --both # comment\n", "b.conf");
 * console.log(specs[0]!.both); // true
 * ```
 */
export function parseConfig(text: string, path: string): BridgeSpec[] {
  const specs: BridgeSpec[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/(^|\s)#.*$/, "").trim();
    if (line === "") continue;
    const words = line.split(/\s+/);
    const where = `${path}:${i + 1}`;
    const [from, to, ...rest] = words;
    if (from === undefined || to === undefined || from.startsWith("-") || to.startsWith("-")) {
      throw new FsbusError("usage", `Cannot read "${where}": expected FROM TO [options]`);
    }
    const spec: BridgeSpec = { from, to, both: false, history: false };
    for (let j = 0; j < rest.length; j++) {
      const w = rest[j]!;
      if (w === "--both") spec.both = true;
      else if (w === "--history") spec.history = true;
      else if (w === "--name" && rest[j + 1] !== undefined) spec.name = rest[++j]!;
      else throw new FsbusError("usage", `Cannot read "${where}": unknown option "${w}"`);
    }
    specs.push(spec);
  }
  if (specs.length === 0) throw new FsbusError("usage", `Cannot read "${path}": no bridges in it`);
  return specs;
}
