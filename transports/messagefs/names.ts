/**
 * Names in a messagefs network: node names, group paths and network names, checked once
 * where they enter, and the rule that decides who a group broadcast reaches.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";

const SEGMENT = /^[A-Za-z0-9_+=,@~-][A-Za-z0-9_.+=,@~-]*$/;
const MAX_NAME = 64;
const MAX_GROUP = 255;

/**
 * Checks a node name: 1 to 64 characters among letters, digits and `_ . + = , @ ~ -`, not
 * starting with "." (names are file names in the mounted tree).
 *
 * @param name The name.
 * @returns The name.
 * @throws {FsbusError} `invalid` when the name is not allowed.
 *
 * @example
 * ```ts
 * import { checkNodeName } from "./names.ts";
 * checkNodeName("alice"); // "alice"
 * ```
 */
export function checkNodeName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME || !SEGMENT.test(name)) {
    throw new FsbusError(
      "invalid",
      `Cannot use node name "${name}": use 1 to ${MAX_NAME} letters, digits or _.+=,@~- ` +
        `(not starting with ".")`,
    );
  }
  return name;
}

/**
 * Checks a network name (the same rules as a node name).
 *
 * @param name The network's name.
 * @returns The name.
 * @throws {FsbusError} `invalid` when the name is not allowed.
 *
 * @example
 * ```ts
 * import { checkNetworkName } from "./names.ts";
 * checkNetworkName("default"); // "default"
 * ```
 */
export function checkNetworkName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME || !SEGMENT.test(name)) {
    throw new FsbusError(
      "invalid",
      `Cannot use network name "${name}": use 1 to ${MAX_NAME} letters, digits or _.+=,@~- ` +
        `(not starting with ".")`,
    );
  }
  return name;
}

/**
 * Checks and normalises a group path: segments separated by "/", each one allowed as a node
 * name is; leading and trailing slashes are dropped, and "" (or "/") is the root group,
 * which every node is in. Empty segments, "." and ".." are refused.
 *
 * @param group The group path, such as "ops/db".
 * @returns The normalised path ("" for the root).
 * @throws {FsbusError} `invalid` when the path is not allowed.
 *
 * @example
 * ```ts
 * import { checkGroup } from "./names.ts";
 * checkGroup("/ops/db/"); // "ops/db"
 * checkGroup("/"); // ""
 * ```
 */
export function checkGroup(group: string): string {
  const path = group.replace(/^\/+/, "").replace(/\/+$/, "");
  if (path === "") return "";
  const bad = (why: string) => new FsbusError("invalid", `Cannot use group "${group}": ${why}`);
  if (path.length > MAX_GROUP) throw bad(`longer than ${MAX_GROUP} characters`);
  for (const segment of path.split("/")) {
    if (segment === "") throw bad("empty path segment");
    if (segment === "." || segment === "..") throw bad(`"${segment}" is not a group name`);
    if (segment.length > MAX_NAME || !SEGMENT.test(segment)) {
      throw bad(
        `segment "${segment}" must be 1 to ${MAX_NAME} letters, digits or _.+=,@~- ` +
          `(not starting with ".")`,
      );
    }
  }
  return path;
}

/**
 * Whether a broadcast to `target` reaches a member of `group`: the target is the group
 * itself or one of its ancestors ("" is everyone's ancestor).
 *
 * @param target The broadcast's group.
 * @param group A group the node is in.
 * @returns True when the node is reached.
 *
 * @example
 * ```ts
 * import { reaches } from "./names.ts";
 * reaches("ops", "ops/db"); // true
 * reaches("ops/db", "ops"); // false
 * reaches("op", "ops"); // false
 * ```
 */
export function reaches(target: string, group: string): boolean {
  return target === "" || group === target || group.startsWith(target + "/");
}

/**
 * Whether a broadcast to `target` reaches a node that is in `groups` (every node is in the
 * root group).
 *
 * @param target The broadcast's group.
 * @param groups The node's groups.
 * @returns True when the node is reached (once, however many of its groups match).
 *
 * @example
 * ```ts
 * import { reachesAny } from "./names.ts";
 * reachesAny("ops", ["web", "ops/db"]); // true
 * ```
 */
export function reachesAny(target: string, groups: readonly string[]): boolean {
  return target === "" || groups.some((g) => reaches(target, g));
}

/**
 * Every group whose broadcasts reach a member of `groups`: the groups and all their
 * ancestors, the root ("") included, each once.
 *
 * @param groups The node's groups.
 * @returns The set of groups it hears.
 *
 * @example
 * ```ts
 * import { heardGroups } from "./names.ts";
 * [...heardGroups(["ops/db", "ops/web"])]; // ["", "ops", "ops/db", "ops/web"]
 * ```
 */
export function heardGroups(groups: readonly string[]): Set<string> {
  const out = new Set<string>([""]);
  for (const g of groups) {
    const parts = g.split("/");
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join("/"));
  }
  return out;
}

/**
 * The default name of a node: the first 6 hexadecimal characters of its UUID, uppercase (as
 * the original messagefs, after its peer-to-peer library).
 *
 * @param uuid The node's UUID.
 * @returns The name.
 *
 * @example
 * ```ts
 * import { defaultName } from "./names.ts";
 * defaultName("3f2a1b9c-0000-4000-8000-000000000000"); // "3F2A1B"
 * ```
 */
export function defaultName(uuid: string): string {
  return uuid.replace(/-/g, "").slice(0, 6).toUpperCase();
}
