/**
 * The options `fsbus fanout` and baf's `fsbus pubmsg` / `fsbus submsg` share: where to start
 * reading (`--replay`), how to create a topic (`--size`, `--messages`, `--mode`, `--group`),
 * and the topic root.
 *
 * @module
 */

import { UsageError } from "../types.ts";
import { type CommandSpec, parseSize, stringOption, type Values } from "./_args.ts";
import {
  type CreateOptions,
  DEFAULT_RING_SIZE,
  defaultBafRoot,
  defaultRoot,
} from "../transports/fanout/mod.ts";
import { lookupGroup } from "../sys/users.ts";

/** `--replay off|all`: where a reader starts. */
export const REPLAY_OPTION = {
  type: "string",
  value: "off|all",
  help: 'Where to start: off ("now", the default) or all (the oldest data the ring holds)',
} as const;

/** The options that create a topic: `--size`, `--messages`, `--mode`, `--group`. */
export const CREATE_OPTIONS = {
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

/**
 * The topic creation options given on the command line.
 *
 * @param values The parsed options.
 * @returns What to give `createTopic` (without root and exclusive).
 * @throws {UsageError} For a bad `--size`, `--mode` or `--group`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createOptions } from "./_fanout_args.ts";
 * assert.deepEqual(createOptions({ size: "1K", mode: "640", messages: true }), {
 *   size: 1024,
 *   messages: true,
 *   mode: 0o640,
 * });
 * ```
 */
export function createOptions(values: Values): Omit<CreateOptions, "root" | "exclusive"> {
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

/**
 * The topic root: `--root`, else the default one (baf's default for pubmsg and submsg).
 *
 * @param values The parsed options.
 * @param baf Whether the default is baf's (`/dev/baf` when it exists).
 * @returns The root directory.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rootOf } from "./_fanout_args.ts";
 * assert.equal(rootOf({ root: "/tmp/topics" }), "/tmp/topics");
 * ```
 */
export function rootOf(values: Values, baf = false): string {
  return stringOption(values, "root") ?? (baf ? defaultBafRoot() : defaultRoot());
}

/**
 * Whether a reader starts from the oldest data the ring holds (`--replay all`, or the hidden
 * `--from-oldest`) rather than from "now".
 *
 * @param spec The command, for the error message.
 * @param values The parsed options.
 * @returns True for `all`.
 * @throws {UsageError} For anything but off or all.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import type { CommandSpec } from "./_args.ts";
 * import { replayFrom } from "./_fanout_args.ts";
 * const spec = { name: "fsbus fanout sub" } as CommandSpec;
 * assert.equal(replayFrom(spec, { replay: "all" }), true);
 * assert.equal(replayFrom(spec, {}), false);
 * ```
 */
export function replayFrom(spec: CommandSpec, values: Values): boolean {
  const replay = stringOption(values, "replay");
  if (replay === undefined) return values["from-oldest"] === true;
  if (replay === "all") return true;
  if (replay === "off") return false;
  throw new UsageError(
    `Cannot use "${replay}" for "--replay" of "${spec.name}": expected off or all`,
  );
}
