/**
 * `fsbus fanout`, `pubmsg`, `submsg`: placeholders until the fanout transport lands.
 *
 * @module
 */

import { FsbusError } from "../types.ts";

function unavailable(name: string): Promise<number> {
  return Promise.reject(new FsbusError("unsupported", `"fsbus ${name}" is not available yet`));
}

/**
 * Runs `fsbus fanout`.
 *
 * @param _args The arguments after the command.
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await fanout(["--help"]);
 * ```
 */
export function fanout(_args: string[]): Promise<number> {
  return unavailable("fanout");
}

/**
 * Runs `fsbus pubmsg`.
 *
 * @param _args The arguments after the command.
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await pubmsg(["--help"]);
 * ```
 */
export function pubmsg(_args: string[]): Promise<number> {
  return unavailable("pubmsg");
}

/**
 * Runs `fsbus submsg`.
 *
 * @param _args The arguments after the command.
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await submsg(["--help"]);
 * ```
 */
export function submsg(_args: string[]): Promise<number> {
  return unavailable("submsg");
}
