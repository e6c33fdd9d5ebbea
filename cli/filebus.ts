/**
 * `fsbus filebus`: placeholder until the filebus transport lands.
 *
 * @module
 */

import { FsbusError } from "../types.ts";

/**
 * Runs `fsbus filebus`.
 *
 * @param _args The arguments after "filebus".
 * @returns The exit code.
 *
 * @example
 * ```ts ignore
 * await filebus(["--help"]);
 * ```
 */
export function filebus(_args: string[]): Promise<number> {
  return Promise.reject(new FsbusError("unsupported", '"fsbus filebus" is not available yet'));
}
