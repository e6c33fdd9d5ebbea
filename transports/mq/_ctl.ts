/**
 * A group's settings and the text of its `ctl` file: parsing mq(4) control messages
 * (`data`, `replay`, `depth`) and rendering the canonical `ctl` content.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";

/** How a stream's messages are read: one message per read, or as a byte stream. */
export type DataMode = "message" | "coalesce";

/** Where a new reader starts: new messages only, the most recent one, or the first ever. */
export type ReplayMode = "off" | "last" | "all";

/** How much history a group keeps: unlimited, a number of messages, or a number of bytes. */
export type Depth =
  | { readonly kind: "none" }
  | { readonly kind: "count"; readonly count: number }
  | { readonly kind: "size"; readonly bytes: number; readonly text: string };

/** The settings a group's `ctl` file holds. */
export interface Settings {
  /** How readers see messages. */
  readonly data: DataMode;
  /** Where readers start unless they choose. */
  readonly replay: ReplayMode;
  /** How much history is kept. */
  readonly depth: Depth;
}

/** The settings of a new group, as in mq(4). */
export const DEFAULT_SETTINGS: Settings = {
  data: "message",
  replay: "off",
  depth: { kind: "none" },
};

/** mq's usage messages, one per command. */
export const USAGE = {
  data: "usage: data message|coalesce",
  replay: "usage: replay off|last|all",
  depth: "usage: depth count|size[K|M|G]",
} as const;

const UNITS: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a depth: a count of messages (`1000`), a size with K, M or G (`64K`), 0 = none.
 *
 * @param text The text.
 * @returns The depth.
 * @throws {FsbusError} With mq's usage message.
 */
export function parseDepth(text: string): Depth {
  const m = text.trim().match(/^(\d+)([KMGkmg]?)$/);
  if (!m) throw new FsbusError("invalid", USAGE.depth);
  const n = Number(m[1]);
  if (!Number.isSafeInteger(n)) throw new FsbusError("invalid", USAGE.depth);
  if (n === 0) return { kind: "none" };
  const unit = (m[2] ?? "").toUpperCase();
  if (unit === "") return { kind: "count", count: n };
  return { kind: "size", bytes: n * UNITS[unit]!, text: `${n}${unit}` };
}

/**
 * Applies control messages (one per line, two words each) to some settings.
 *
 * @param text The messages, such as "replay all\n".
 * @param base The settings they change.
 * @returns The new settings.
 * @throws {FsbusError} With mq's usage message for the first bad line; nothing is applied.
 */
export function applyCommands(text: string, base: Settings): Settings {
  let s = base;
  for (const raw of text.split(/[\n;]/)) {
    const words = raw.trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) continue;
    const [cmd, arg, extra] = words;
    switch (cmd) {
      case "data":
        if ((arg !== "message" && arg !== "coalesce") || extra !== undefined) {
          throw new FsbusError("invalid", USAGE.data);
        }
        s = { ...s, data: arg };
        break;
      case "replay": {
        const mode = arg === "on" ? "all" : arg;
        if ((mode !== "off" && mode !== "last" && mode !== "all") || extra !== undefined) {
          throw new FsbusError("invalid", USAGE.replay);
        }
        s = { ...s, replay: mode };
        break;
      }
      case "depth":
        if (arg === undefined || extra !== undefined) throw new FsbusError("invalid", USAGE.depth);
        s = { ...s, depth: parseDepth(arg) };
        break;
      default:
        throw new FsbusError(
          "invalid",
          `Cannot apply control message "${raw.trim()}": unknown, expected data, replay or depth`,
        );
    }
  }
  return s;
}

/**
 * Renders settings as `ctl` reads: `data ...\n`, `replay ...\n`, then `depth ...\n` if set.
 *
 * @param s The settings.
 * @returns The text.
 */
export function renderCtl(s: Settings): string {
  let text = `data ${s.data}\nreplay ${s.replay}\n`;
  if (s.depth.kind === "count") text += `depth ${s.depth.count}\n`;
  else if (s.depth.kind === "size") text += `depth ${s.depth.text}\n`;
  return text;
}
