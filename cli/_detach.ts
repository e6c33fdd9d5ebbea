/**
 * Letting a child process run on by itself: the background mount server, a pin session's
 * supervisor.
 *
 * @module
 */

/**
 * Stops this process from holding `child` (its status no longer keeps the event loop alive).
 * A child that has already exited (a session whose command was `true`, a mount unmounted at
 * once) has no resource left, and `unref()` would throw BadResource for it: nothing is held
 * then, so that is not an error.
 *
 * @param child The child, spawned with `detached: true` to outlive this process.
 *
 * @example
 * ```ts
 * import { letGo } from "./_detach.ts";
 * const child = new Deno.Command("true", { stdout: "null", stderr: "null" }).spawn();
 * await child.status; // exited already
 * letGo(child); // no error
 * ```
 */
export function letGo(child: Deno.ChildProcess): void {
  try {
    child.unref();
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}
