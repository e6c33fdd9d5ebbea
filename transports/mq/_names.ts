/**
 * Stream names: what a group accepts as the name of a stream, and the check that says why
 * a name is refused.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";

/**
 * Checks a stream name: not empty, no "/", NUL, tab or newline, not starting with ".",
 * and not one of the group's own files.
 *
 * @param group The group's path, for the message.
 * @param name The name.
 * @param forWrite Whether the stream is to be written (then `order` is refused too).
 * @throws {FsbusError} With what is wrong.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkStreamName } from "./_names.ts";
 * checkStreamName("/dev/shm/g", "0", true);
 * assert.throws(() => checkStreamName("/dev/shm/g", "a/b", true), /cannot contain "\/"/);
 * assert.throws(() => checkStreamName("/dev/shm/g", "order", true), /written by the group/);
 * checkStreamName("/dev/shm/g", "order", false); // "order" may be read
 * ```
 */
export function checkStreamName(group: string, name: string, forWrite: boolean): void {
  if (name === "" || name === "." || name === "..") {
    throw new FsbusError(
      "invalid",
      `Cannot use "${name}" as a stream name in "${group}": a stream needs a file name`,
    );
  }
  if (name.includes("/")) {
    throw new FsbusError(
      "invalid",
      `Cannot use "${name}" as a stream name in "${group}": a stream name cannot contain "/"`,
    );
  }
  if (/[\0\n\t]/.test(name)) {
    throw new FsbusError(
      "invalid",
      `Cannot use ${
        JSON.stringify(name)
      } as a stream name in "${group}": a stream name cannot contain a NUL, tab or newline`,
    );
  }
  if (name.startsWith(".")) {
    throw new FsbusError(
      "invalid",
      `Cannot use "${name}" as a stream name in "${group}": names starting with "." are reserved`,
    );
  }
  if (name === "ctl") {
    throw new FsbusError(
      "invalid",
      `Cannot use "ctl" of "${group}" as a stream: it is the control file (use "fsbus mq ctl")`,
    );
  }
  if (name === "order" && forWrite) {
    throw new FsbusError(
      "invalid",
      `Cannot write to "order" of "${group}": order is written by the group itself`,
    );
  }
}

/**
 * Whether a directory entry's name can be a stream (not a group file, not hidden).
 *
 * @param name The name.
 * @returns True for a stream name.
 */
export function isStreamName(name: string): boolean {
  return name !== "" && !name.startsWith(".") && name !== "ctl" && name !== "order" &&
    !/[\0\n\t/]/.test(name);
}
