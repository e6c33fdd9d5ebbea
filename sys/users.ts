/**
 * The system's group database, for commands that give a bus or topic to a group by name.
 *
 * @module
 */

/**
 * Looks a group up by name (or number) in /etc/group.
 *
 * @param group A group name, or a number as text.
 * @returns The group id, or undefined when there is no such group.
 *
 * @example
 * ```ts
 * import { lookupGroup } from "./users.ts";
 * lookupGroup("0"); // 0
 * ```
 */
export function lookupGroup(group: string): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  let text = "";
  try {
    text = Deno.readTextFileSync("/etc/group");
  } catch {
    return undefined; // no group database
  }
  for (const line of text.split("\n")) {
    const [name, , gid] = line.split(":");
    if (name === group && gid !== undefined) return Number(gid);
  }
  return undefined;
}
