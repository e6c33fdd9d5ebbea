/**
 * fsbus: publish/subscribe through the Linux file system.
 *
 * Each protocol is a namespace:
 * - `msgfs`: a directory is a bus, a message is a new file, subscribers use inotify.
 * - `filebus`: one regular file is a multicast named pipe (filebus 0.3.5 compatible).
 * - `mq`: groups of buffered message streams with `ctl`, `order` and replay (Plan 9's mq(4)).
 * - `fanout`: one-to-many ring buffers with topics (/dev/fanout semantics, baf's topics).
 * - `bridge`: carries messages between any two buses, and across machines over NATS/JetStream.
 *
 * @example A directory bus
 * ```ts
 * import { msgfs } from "./mod.ts";
 *
 * const bus = Deno.makeTempDirSync();
 * msgfs.publish(bus, "hello");
 * for await (const m of msgfs.subscribe(bus, { since: "all" })) {
 *   console.log(m.id, new TextDecoder().decode(m.data));
 *   break;
 * }
 * Deno.removeSync(bus, { recursive: true });
 * ```
 *
 * @module
 */

export * from "./types.ts";
export * as msgfs from "./transports/msgfs/mod.ts";
export * as filebus from "./transports/filebus/mod.ts";
export * as mq from "./transports/mq/mod.ts";
export * as fanout from "./transports/fanout/mod.ts";
export * as bridge from "./transports/bridge/mod.ts";

// `deno run -A jsr:@x/fsbus sub DIR` runs the command; importing the library loads no CLI code.
if (import.meta.main) {
  const { main } = await import("./cli.ts");
  Deno.exit(await main(Deno.args));
}
