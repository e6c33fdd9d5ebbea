/**
 * Writing to stdout and stderr from the CLI: whole writes, diagnostics as `fsbus: ...`,
 * and one-line JSON for messages.
 *
 * @module
 */

import type { Message } from "../types.ts";

const encoder = new TextEncoder();

/**
 * Writes all of `data` to a synchronous writer such as `Deno.stdout`.
 *
 * @param writer The destination.
 * @param data The bytes.
 *
 * @example
 * ```ts
 * import { writeAll } from "./_output.ts";
 * writeAll(Deno.stdout, new TextEncoder().encode("hi\n"));
 * ```
 */
export function writeAll(writer: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += writer.writeSync(data.subarray(off));
}

/**
 * Writes text to stdout.
 *
 * @param text The text, written as given (add the newline yourself).
 *
 * @example
 * ```ts
 * import { out } from "./_output.ts";
 * out("ready\n");
 * ```
 */
export function out(text: string): void {
  writeAll(Deno.stdout, encoder.encode(text));
}

/**
 * Writes one diagnostic line to stderr, prefixed with `fsbus: `.
 *
 * @param text The line, without the prefix or newline.
 *
 * @example
 * ```ts
 * import { warn } from "./_output.ts";
 * warn('skipped "big": 300 MiB exceeds the 256 MiB limit');
 * ```
 */
export function warn(text: string): void {
  try {
    writeAll(Deno.stderr, encoder.encode(`fsbus: ${text}\n`));
  } catch {
    // stderr closed: nothing else to tell
  }
}

const strictDecoder = new TextDecoder("utf-8", { fatal: true });

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000) as unknown as number[]);
  }
  return btoa(s);
}

/**
 * Formats a message as one line of JSON: `id`, `topic`, `time`, `size`, `data` and
 * `encoding` ("utf-8", or "base64" when the bytes are not valid UTF-8), plus any extra fields.
 *
 * @param m The message.
 * @param extra More fields to include, such as a stream name.
 * @returns The JSON text followed by a newline.
 *
 * @example
 * ```ts
 * import { jsonLine } from "./_output.ts";
 * jsonLine({ data: new TextEncoder().encode("hi"), id: "1", topic: "" });
 * // {"id":"1","topic":"","time":null,"size":2,"data":"hi","encoding":"utf-8"}\n
 * ```
 */
export function jsonLine(m: Message, extra: Record<string, unknown> = {}): string {
  let data: string;
  let encoding: string;
  try {
    data = strictDecoder.decode(m.data);
    encoding = "utf-8";
  } catch {
    data = base64(m.data);
    encoding = "base64";
  }
  return JSON.stringify({
    id: m.id ?? null,
    topic: m.topic ?? null,
    time: m.time?.toISOString() ?? null,
    size: m.data.length,
    ...extra,
    data,
    encoding,
  }) + "\n";
}

/**
 * Whether an error means the reader of our stdout went away (`fsbus sub | head -1`).
 *
 * @param err The caught error.
 * @returns True for a broken pipe.
 *
 * @example
 * ```ts
 * import { isBrokenPipe } from "./_output.ts";
 * isBrokenPipe(new Deno.errors.BrokenPipe()); // true
 * ```
 */
export function isBrokenPipe(err: unknown): boolean {
  return err instanceof Deno.errors.BrokenPipe ||
    (err instanceof Error && /broken pipe|os error 32/i.test(err.message));
}
