/**
 * fsbus: publish/subscribe through the Linux file system.
 *
 * @example
 * ```ts
 * import { FsbusError } from "./mod.ts";
 * console.log(new FsbusError("not_found", "example").code);
 * ```
 *
 * @module
 */

export * from "./types.ts";
