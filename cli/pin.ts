/**
 * `fsbus pin`: placeholder until the pin transport lands.
 *
 * @module
 */

import { FsbusError } from "../types.ts";

/**
 * Runs `fsbus pin`.
 *
 * @param _args The arguments after "pin".
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await pin(["--help"]);
 * ```
 */
export function pin(_args: string[]): Promise<number> {
  return Promise.reject(new FsbusError("unsupported", '"fsbus pin" is not available yet'));
}
