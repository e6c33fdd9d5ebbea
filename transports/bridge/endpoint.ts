/**
 * Bridge endpoints: one syntax for every kind of bus fsbus can carry messages between.
 *
 * @module
 */

import { FsbusError } from "../../types.ts";
import { checkSubject, parseServers } from "../_nats.ts";

/**
 * One side of a bridge, parsed.
 *
 * @example
 * ```ts
 * import type { Endpoint } from "./endpoint.ts";
 * const e: Endpoint = { kind: "dir", path: "/dev/shm/bus", text: "dir:/dev/shm/bus" };
 * ```
 */
export type Endpoint =
  | { kind: "dir"; path: string; topic?: string; text: string }
  | { kind: "mq"; group: string; stream?: string; text: string }
  | { kind: "fanout"; topic: string; root?: string; text: string }
  | { kind: "filebus"; path: string; text: string }
  | { kind: "nats"; servers: string[]; subject: string; text: string }
  | { kind: "jetstream"; servers: string[]; stream: string; subject: string; text: string };

/**
 * Options of {@linkcode parseEndpoint}.
 *
 * @example
 * ```ts
 * import type { EndpointOptions } from "./endpoint.ts";
 * const options: EndpointOptions = { root: "/dev/shm/topics" };
 * ```
 */
export interface EndpointOptions {
  /** The topic root for `fanout:` endpoints (default: the fanout module's). */
  root?: string;
}

function bad(text: string, why: string): FsbusError {
  return new FsbusError("usage", `Cannot use endpoint "${text}": ${why}`);
}

/**
 * Parses an endpoint: `dir:PATH`, `dir:PATH#TOPIC`, `mq:GROUP`, `mq:GROUP/STREAM`,
 * `fanout:TOPIC`, `filebus:FILE`, `nats://HOST:PORT[,...]/SUBJECT` or
 * `jetstream://HOST:PORT[,...]/STREAM/SUBJECT`.
 *
 * For `mq:` a path that is an existing group is the whole group; otherwise its last element
 * names a stream of the group above it.
 *
 * @param text The endpoint.
 * @param options The fanout topic root.
 * @returns The parsed endpoint.
 * @throws {FsbusError} `usage` for an unknown kind or a malformed endpoint.
 *
 * @example
 * ```ts
 * import { parseEndpoint } from "./endpoint.ts";
 * const e = parseEndpoint("jetstream://a:4222,b:4222/APP/app.events");
 * console.log(e.kind); // "jetstream"
 * ```
 */
export function parseEndpoint(text: string, options: EndpointOptions = {}): Endpoint {
  try {
    return parse(text, options);
  } catch (err) {
    // A bad server list or subject is a bad argument.
    if (err instanceof FsbusError && err.code === "invalid") {
      throw new FsbusError("usage", err.message, { cause: err });
    }
    throw err;
  }
}

function parse(text: string, options: EndpointOptions): Endpoint {
  const colon = text.indexOf(":");
  const scheme = colon < 0 ? "" : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  switch (scheme) {
    case "dir": {
      const hash = rest.lastIndexOf("#");
      const path = hash < 0 ? rest : rest.slice(0, hash);
      const topic = hash < 0 ? undefined : rest.slice(hash + 1);
      if (path === "") throw bad(text, "no directory given");
      if (topic === "") throw bad(text, 'empty topic after "#"');
      return topic === undefined ? { kind: "dir", path, text } : { kind: "dir", path, topic, text };
    }
    case "mq": {
      if (rest === "") throw bad(text, "no group given");
      const path = rest.replace(/\/+$/, "");
      let isGroup = false;
      try {
        isGroup = Deno.statSync(`${path}/ctl`).isFile;
      } catch {
        isGroup = false;
      }
      if (isGroup) return { kind: "mq", group: path, text };
      const slash = path.lastIndexOf("/");
      if (slash <= 0) return { kind: "mq", group: path, text };
      return { kind: "mq", group: path.slice(0, slash), stream: path.slice(slash + 1), text };
    }
    case "fanout":
      if (rest === "") throw bad(text, "no topic given");
      return options.root === undefined
        ? { kind: "fanout", topic: rest, text }
        : { kind: "fanout", topic: rest, root: options.root, text };
    case "filebus":
      if (rest === "") throw bad(text, "no file given");
      return { kind: "filebus", path: rest, text };
    case "nats":
    case "jetstream": {
      if (!rest.startsWith("//")) throw bad(text, `expected ${scheme}://HOST:PORT[,...]/...`);
      const body = rest.slice(2);
      const slash = body.indexOf("/");
      if (slash < 0) throw bad(text, "no subject given");
      const servers = parseServers(body.slice(0, slash));
      const path = decodeURIComponent(body.slice(slash + 1));
      if (scheme === "nats") {
        checkSubject(path, false);
        return { kind: "nats", servers, subject: path, text };
      }
      const s2 = path.indexOf("/");
      if (s2 < 0) throw bad(text, "expected jetstream://HOST:PORT[,...]/STREAM/SUBJECT");
      const stream = path.slice(0, s2);
      const subject = path.slice(s2 + 1);
      if (!/^[^\s.*>/\\]+$/.test(stream)) {
        throw bad(text, `"${stream}" is not a valid stream name`);
      }
      checkSubject(subject, false);
      return { kind: "jetstream", servers, stream, subject, text };
    }
    default:
      throw bad(
        text,
        "expected dir:, mq:, fanout:, filebus:, nats:// or jetstream://",
      );
  }
}

/**
 * Whether an endpoint reaches over the network (NATS or JetStream) rather than a local bus.
 *
 * @param e The endpoint.
 * @returns True for `nats://` and `jetstream://`.
 *
 * @example
 * ```ts
 * import { isRemote, parseEndpoint } from "./endpoint.ts";
 * console.log(isRemote(parseEndpoint("dir:/tmp/bus"))); // false
 * ```
 */
export function isRemote(e: Endpoint): e is Extract<Endpoint, { kind: "nats" | "jetstream" }> {
  return e.kind === "nats" || e.kind === "jetstream";
}

/**
 * Whether an endpoint carries many topics or streams (a whole directory bus or mq group):
 * then each maps to its own subject below the bridge's subject.
 *
 * @param e The endpoint.
 * @returns True for `dir:PATH` without a topic and `mq:GROUP` without a stream.
 *
 * @example
 * ```ts
 * import { isWide, parseEndpoint } from "./endpoint.ts";
 * console.log(isWide(parseEndpoint("dir:/tmp/bus#news"))); // false
 * ```
 */
export function isWide(e: Endpoint): boolean {
  return (e.kind === "dir" && e.topic === undefined) || (e.kind === "mq" && e.stream === undefined);
}
