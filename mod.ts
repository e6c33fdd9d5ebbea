/**
 * fsbus: publish/subscribe through the Linux file system.
 *
 * Each protocol is a namespace:
 * - `msgfs`: a directory is a bus, a message is a new file, subscribers use inotify.
 * - `filebus`: one regular file is a multicast named pipe (filebus 0.3.5 compatible).
 * - `mq`: groups of buffered message streams with `ctl`, `order` and replay (Plan 9's mq(4)).
 * - `fanout`: one-to-many ring buffers with topics (/dev/fanout semantics, baf's topics).
 * - `messagefs`: nodes and groups: direct messages and broadcasts to a group's subtree, on one
 *   machine with no server, or across machines over NATS.
 * - `bridge`: carries messages between any two buses, and across machines over NATS/JetStream.
 *
 * @example A directory bus
 * ```ts
 * import assert from "node:assert/strict";
 * import { msgfs } from "@x/fsbus";
 *
 * const bus = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * msgfs.publish(bus, "hello");
 * for await (const m of msgfs.subscribe(bus, { since: "all" })) {
 *   assert.equal(new TextDecoder().decode(m.data), "hello");
 *   break;
 * }
 * Deno.removeSync(bus, { recursive: true });
 * ```
 *
 * @example A file as a multicast pipe
 * ```ts
 * import assert from "node:assert/strict";
 * import { filebus } from "@x/fsbus";
 *
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * await using out = filebus.producer(`${dir}/temperature`);
 * await out.write("21.5");
 * for await (const chunk of filebus.consumer(`${dir}/temperature`)) {
 *   assert.equal(new TextDecoder().decode(chunk), "21.5"); // the chunk present now, first
 *   break;
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @example A ring with topics
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanout } from "@x/fsbus";
 *
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" }); // default: /dev/shm/fsbus
 * using reader = fanout.openReader("news", { root, create: true });
 * fanout.publish("news", "hello", { root });
 * assert.equal(new TextDecoder().decode(reader.take()[0]), "hello");
 * Deno.removeSync(root, { recursive: true });
 * ```
 *
 * @module
 */

export * from "./types.ts";
export * as msgfs from "./transports/msgfs/mod.ts";
export * as filebus from "./transports/filebus/mod.ts";
export * as mq from "./transports/mq/mod.ts";
export * as fanout from "./transports/fanout/mod.ts";
export * as messagefs from "./transports/messagefs/mod.ts";
export * as bridge from "./transports/bridge/mod.ts";

// `deno run -A jsr:@x/fsbus sub DIR` runs the command; importing the library loads no CLI code.
if (import.meta.main) {
  const { main } = await import("./cli.ts");
  Deno.exit(await main(Deno.args));
}
