/**
 * The shared vocabulary of fsbus: messages, subscriptions and the error family.
 *
 * @example Catch an fsbus error and read its code
 * ```ts
 * import { FsbusError } from "./types.ts";
 *
 * try {
 *   throw new FsbusError("not_found", 'Cannot subscribe to "/nope": no such directory');
 * } catch (err) {
 *   if (err instanceof FsbusError) console.log(err.code, err.exitCode);
 * }
 * ```
 *
 * @module
 */

/**
 * What every transport delivers: the bytes, plus what the transport knows about them.
 *
 * @example Read a message as text
 * ```ts
 * import type { Message } from "./types.ts";
 *
 * function show(m: Message): string {
 *   return new TextDecoder().decode(m.data);
 * }
 * show({ data: new TextEncoder().encode("hi") });
 * ```
 */
export interface Message {
  /** The payload, exactly as published. */
  readonly data: Uint8Array;
  /** An identifier unique within the bus, when the transport has one. */
  readonly id?: string;
  /** The topic or stream the message belongs to ("" for a bus's root). */
  readonly topic?: string;
  /** When the message was published, as far as the transport knows. */
  readonly time?: Date;
}

/**
 * A running subscription: iterate it for messages; break, abort or dispose to stop.
 *
 * Breaking out of a `for await` loop, aborting the signal given at subscribe time, or
 * disposing the subscription releases every file descriptor, watch and timer it holds.
 *
 * @example Take one message and stop
 * ```ts
 * import assert from "node:assert/strict";
 * import { fanout, type Message, type Subscription } from "@x/fsbus";
 *
 * async function first(sub: Subscription<Message>): Promise<Message | undefined> {
 *   await using s = sub;
 *   for await (const m of s) return m;
 * }
 *
 * const root = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const sub = fanout.subscribe("news", { root, create: true });
 * fanout.publish("news", "hello", { root });
 * assert.equal(new TextDecoder().decode((await first(sub))?.data), "hello");
 * Deno.removeSync(root, { recursive: true });
 * ```
 */
export interface Subscription<T> extends AsyncIterable<T>, AsyncDisposable {
  /** Stops the subscription and releases its resources; safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Stable codes carried by {@linkcode FsbusError}.
 *
 * @example
 * ```ts
 * import type { FsbusErrorCode } from "./types.ts";
 * const code: FsbusErrorCode = "not_found";
 * ```
 */
export type FsbusErrorCode =
  | "usage"
  | "not_found"
  | "not_a_directory"
  | "is_a_directory"
  | "permission_denied"
  | "already_exists"
  | "too_large"
  | "invalid"
  | "busy"
  | "overrun"
  | "closed"
  | "unsupported"
  | "damaged"
  | "io";

/**
 * The root of fsbus errors: a stable `code` and the exit code the CLI maps it to.
 *
 * Messages follow the Deno standard library's style: sentence case, no trailing period,
 * quoted values, saying what failed and why.
 *
 * @example
 * ```ts
 * import { FsbusError } from "./types.ts";
 *
 * const err = new FsbusError("not_a_directory", 'Cannot subscribe to "/etc/hosts": not a directory');
 * console.log(err.code); // "not_a_directory"
 * ```
 */
export class FsbusError extends Error {
  /** A stable, machine-readable code. */
  readonly code: FsbusErrorCode;
  /** The process exit code the CLI uses for this error (1, or 2 for usage errors). */
  readonly exitCode: number;

  /**
   * Makes an error with a code, a message, and optionally its cause.
   *
   * @param code The stable code.
   * @param message The human-readable message.
   * @param options The underlying cause, if any.
   */
  constructor(code: FsbusErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FsbusError";
    this.code = code;
    this.exitCode = code === "usage" ? 2 : 1;
  }
}

/**
 * A command line that cannot be understood: unknown flag, missing argument, bad value.
 *
 * @example
 * ```ts
 * import { UsageError } from "./types.ts";
 * const err = new UsageError("Unknown option \"--nope\" for \"sub\"");
 * console.log(err.exitCode); // 2
 * ```
 */
export class UsageError extends FsbusError {
  /**
   * Makes a usage error.
   *
   * @param message What was wrong with the command line.
   */
  constructor(message: string) {
    super("usage", message);
    this.name = "UsageError";
  }
}

/**
 * A reader fell further behind than the buffer holds: data was lost and it must
 * resynchronise (the fanout ring's EPIPE, the mq depth cutoff).
 *
 * @example
 * ```ts
 * import { OverrunError } from "./types.ts";
 * const err = new OverrunError('Reader of "news" overrun: 20480 bytes lost', 20480);
 * console.log(err.lost); // 20480
 * ```
 */
export class OverrunError extends FsbusError {
  /** How much was lost, in the transport's unit (bytes or messages), when known. */
  readonly lost: number | undefined;

  /**
   * Makes an overrun error.
   *
   * @param message What overran and by how much.
   * @param lost How much was lost, when known.
   */
  constructor(message: string, lost?: number) {
    super("overrun", message);
    this.name = "OverrunError";
    this.lost = lost;
  }
}

/**
 * Turns an error thrown by a Deno file API (or a failed libc call) into an
 * {@linkcode FsbusError} whose message says what was being done, on which path, and why it
 * failed.
 *
 * @param err The caught error.
 * @param action What was being attempted, in the form "Cannot subscribe to".
 * @param path The path involved.
 * @returns An FsbusError (the same error if it already was one).
 *
 * @example
 * ```ts
 * import { fromFsError } from "./types.ts";
 * try {
 *   Deno.statSync("/no/such/path");
 * } catch (err) {
 *   console.log(fromFsError(err, "Cannot open", "/no/such/path").message);
 *   // Cannot open "/no/such/path": no such file or directory
 * }
 * ```
 */
export function fromFsError(err: unknown, action: string, path: string): FsbusError {
  if (err instanceof FsbusError) return err;
  const where = `${action} "${path}"`;
  const options = { cause: err };
  // A failed libc call (sys/errno.ts's SysError): its symbolic code and its reason.
  const sys = err as { name?: unknown; code?: unknown; reason?: unknown };
  if (sys?.name === "SysError" && typeof sys.code === "string" && typeof sys.reason === "string") {
    const code: FsbusErrorCode = ERRNO_CODES[sys.code] ?? "io";
    const why = sys.code === "ELOOP" ? "is a symbolic link (not followed)" : sys.reason;
    return new FsbusError(code, `${where}: ${why}`, options);
  }
  if (err instanceof Deno.errors.NotFound) {
    return new FsbusError("not_found", `${where}: no such file or directory`, options);
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new FsbusError("permission_denied", `${where}: permission denied`, options);
  }
  if (err instanceof Deno.errors.NotCapable) {
    return new FsbusError(
      "permission_denied",
      `${where}: not allowed by Deno's permissions (run with -A)`,
      options,
    );
  }
  if (err instanceof Deno.errors.AlreadyExists) {
    return new FsbusError("already_exists", `${where}: already exists`, options);
  }
  if (err instanceof Deno.errors.NotADirectory) {
    return new FsbusError("not_a_directory", `${where}: not a directory`, options);
  }
  if (err instanceof Deno.errors.IsADirectory) {
    return new FsbusError("is_a_directory", `${where}: is a directory`, options);
  }
  const detail = err instanceof Error ? err.message.replace(/ \(os error \d+\).*$/, "") : `${err}`;
  return new FsbusError("io", `${where}: ${lowerFirst(detail)}`, options);
}

const ERRNO_CODES: Record<string, FsbusErrorCode> = {
  ENOENT: "not_found",
  EACCES: "permission_denied",
  EPERM: "permission_denied",
  ENOTDIR: "not_a_directory",
  EISDIR: "is_a_directory",
  EEXIST: "already_exists",
  EFBIG: "too_large",
  ELOOP: "invalid",
  EROFS: "permission_denied",
};

function lowerFirst(s: string): string {
  return s.length > 1 && s[1] === s[1]?.toLowerCase() ? s[0]!.toLowerCase() + s.slice(1) : s;
}

const encoder = new TextEncoder();

/**
 * Converts a payload given as text or bytes to bytes (text is encoded as UTF-8).
 *
 * @param data The payload.
 * @returns The bytes (the same array when bytes were given).
 *
 * @example
 * ```ts
 * import { toBytes } from "./types.ts";
 * toBytes("hi"); // Uint8Array [104, 105]
 * ```
 */
export function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

/**
 * What `status()` of a transport says about one bus: what it is, its settings, its counts
 * and its size. `fsbus status PATH` prints it.
 *
 * @example
 * ```ts
 * import type { Status } from "./types.ts";
 * const s: Status = {
 *   kind: "msgfs",
 *   path: "/dev/shm/bus",
 *   what: "directory bus",
 *   settings: { ttl: "1h" },
 *   counts: { messages: 3, topics: 0 },
 *   bytes: 15,
 * };
 * ```
 */
export interface Status {
  /** The protocol. */
  kind: "msgfs" | "mq" | "filebus" | "fanout";
  /** The path asked about. */
  path: string;
  /** What it is, in words: "directory bus", "mq group", "filebus file", "fanout topic". */
  what: string;
  /** Its settings (TTL, access, replay, ring size, ...), as the protocol names them. */
  settings: Record<string, string | number | boolean>;
  /** What it holds and who uses it, where known (messages, streams, topics, readers, ...). */
  counts: Record<string, number>;
  /** The bytes its messages take. */
  bytes: number;
}
