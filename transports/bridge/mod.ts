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
 * ```ts ignore
 * import { bridge, statusLine } from "./mod.ts";
 *
 * await using b = await bridge("dir:/dev/shm/bus", "jetstream://127.0.0.1:4222/APP/app", {
 *   both: true,
 *   onNotice: (text) => console.error(text),
 * });
 * setInterval(() => console.error(statusLine(b.status)), 10_000);
 * await b.done;
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
