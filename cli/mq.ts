/**
 * `fsbus mq`: placeholder until the mq transport lands.
 *
 * @module
 */

import { FsbusError } from "../types.ts";

/**
 * Runs `fsbus mq`.
 *
 * @param _args The arguments after "mq".
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await mq(["--help"]);
 * ```
 */
export function mq(_args: string[]): Promise<number> {
  return Promise.reject(new FsbusError("unsupported", '"fsbus mq" is not available yet'));
}
