/**
 * What readers reach inside an open group, and users of the public API need not see: its
 * index and its table of stream incarnations.
 *
 * @module
 */

import type { GroupIndex } from "./_index.ts";
import type { StreamTable } from "./_streams.ts";

/** The engine parts of one open group. */
export interface GroupInternals {
  /** The index: records, intent, cutoff. */
  readonly index: GroupIndex;
  /** The stream incarnations. */
  readonly streams: StreamTable;
}

const internals = new WeakMap<object, GroupInternals>();

/**
 * Attaches a group's engine parts to it (done once, by its constructor).
 *
 * @param group The group.
 * @param parts Its index and stream table.
 */
export function attachInternals(group: object, parts: GroupInternals): void {
  internals.set(group, parts);
}

/**
 * The engine parts of an open group.
 *
 * @param group The group.
 * @returns Its index and stream table.
 */
export function internalsOf(group: object): GroupInternals {
  const parts = internals.get(group);
  if (parts === undefined) throw new TypeError("Not an mq group");
  return parts;
}
