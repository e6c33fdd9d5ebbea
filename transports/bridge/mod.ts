/**
 * bridge: carries messages between any two buses — a directory bus (or one topic), an mq
 * group (or one stream), a fanout topic, a filebus file, a NATS subject, a JetStream stream —
 * on one machine or across machines through NATS.
 *
 * Endpoints: `dir:PATH`, `dir:PATH#TOPIC`, `mq:GROUP`, `mq:GROUP/STREAM`, `fanout:TOPIC`,
 * `filebus:FILE`, `nats://HOST:PORT[,...]/SUBJECT` (core NATS: live and lossy) and
 * `jetstream://HOST:PORT[,...]/STREAM/SUBJECT` (the stream is made when missing).
 *
 * @example Carry a directory bus to JetStream and back
 * ```ts
 * import assert from "node:assert/strict";
 * import { bridge, statusLine } from "@x/fsbus/bridge";
 * import { publish } from "@x/fsbus/msgfs";
 *
 * // A JetStream server on a free loopback port (Debian's nats-server), and a bus.
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${dir}/bus`);
 * const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const port = free.addr.port;
 * free.close();
 * const server = new Deno.Command("/usr/sbin/nats-server", {
 *   args: ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", `${dir}/js`],
 *   stdout: "null",
 *   stderr: "null",
 * }).spawn();
 *
 * {
 *   // Resolves once the server answers (it is retried until then).
 *   await using b = await bridge(`dir:${dir}/bus`, `jetstream://127.0.0.1:${port}/APP/app`, {
 *     both: true,
 *     stateDir: false,
 *   });
 *   publish(`${dir}/bus`, "to the stream");
 *   const out = b.status.directions[0]!;
 *   for (const end = Date.now() + 10_000; out.delivered < 1 && Date.now() < end;) {
 *     await new Promise((r) => setTimeout(r, 10));
 *   }
 *   assert.equal(out.delivered, 1);
 *   assert.equal(b.status.directions.length, 2); // and back, with "both"
 *   assert.match(statusLine(b.status), /^connected 127\.0\.0\.1:/);
 * } // leaving the block stops the bridge
 *
 * server.kill();
 * await server.status;
 * Deno.removeSync(dir, { recursive: true });
 * ```
 *
 * @module
 */

export {
  Bridge,
  bridge,
  type BridgeOptions,
  type BridgeStatus,
  type DirectionStatus,
  statusLine,
} from "./bridge.ts";
export {
  type Endpoint,
  type EndpointOptions,
  isRemote,
  isWide,
  parseEndpoint,
} from "./endpoint.ts";
export { type BridgeSpec, parseConfig } from "./config.ts";
export type { NatsState } from "../_nats.ts";
