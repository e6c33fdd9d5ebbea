/**
 * Writing to stdout and stderr from the CLI: whole writes, diagnostics as `fsbus: ...`,
 * and one-line JSON for messages.
 *
 * @module
 */

import type { Message } from "../types.ts";
import type { ReaderChoice } from "./_args.ts";

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
 * Every field is filled in: a missing id or topic is "", a missing time is now.
 *
 * @param m The message.
 * @param extra More fields to include, such as a stream name.
 * @returns The JSON text followed by a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { jsonLine } from "./_output.ts";
 * const line = jsonLine({ data: new TextEncoder().encode("hi"), id: "1", topic: "" });
 * assert.ok(line.endsWith("}\n"));
 * const { time, ...rest } = JSON.parse(line);
 * assert.deepEqual(rest, { id: "1", topic: "", size: 2, data: "hi", encoding: "utf-8" });
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
    id: m.id ?? "",
    topic: m.topic ?? "",
    time: (m.time ?? new Date()).toISOString(),
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
 * import assert from "node:assert/strict";
 * import { isBrokenPipe } from "./_output.ts";
 * assert.equal(isBrokenPipe(new Deno.errors.BrokenPipe()), true);
 * assert.equal(isBrokenPipe(new Error("boom")), false);
 * ```
 */
export function isBrokenPipe(err: unknown): boolean {
  return err instanceof Deno.errors.BrokenPipe ||
    (err instanceof Error && /broken pipe|os error 32/i.test(err.message));
}

const NEWLINE = new Uint8Array([10]);

/** What a reader knows about a message beyond {@linkcode Message}, for JSON and `--exec`. */
export interface MessageExtras {
  /** More JSON fields, such as `stream` and `seq`. */
  json?: Record<string, unknown>;
  /** More environment variables for `--exec`, such as `FSBUS_PATH`. */
  env?: Record<string, string>;
}

/**
 * Where every reader sends its messages: formats them as the shared reader options ask (one
 * per line, exact bytes, or JSON), counts them for `--count`, or runs `--exec` per message.
 * Output is gathered per batch and written in one call.
 *
 * @example Print a batch, one message per line
 * ```ts
 * import { MessageOutput } from "./_output.ts";
 * const o = new MessageOutput({ format: "lines" });
 * await o.deliver([{ data: new TextEncoder().encode("hi") }]); // prints "hi\n"
 * ```
 */
export class MessageOutput {
  readonly #choice: ReaderChoice;
  readonly #extras: ((m: Message) => MessageExtras) | undefined;
  #left: number;
  #seq = 0;
  #parts: Uint8Array[] = [];
  #size = 0;

  /**
   * Makes an output.
   *
   * @param choice Format, count and command, from `readerChoice`.
   * @param extras Per-message JSON fields and `--exec` environment.
   */
  constructor(choice: ReaderChoice, extras?: (m: Message) => MessageExtras) {
    this.#choice = choice;
    this.#extras = extras;
    this.#left = choice.count ?? Infinity;
  }

  /** Whether more messages are wanted (the count is not reached). */
  get wanted(): boolean {
    return this.#left > 0;
  }

  /** Whether each message runs a command (then use {@linkcode deliver}, not `add`). */
  get runs(): boolean {
    return this.#choice.exec !== undefined;
  }

  /**
   * Formats one message into the pending output (not for `--exec`); call
   * {@linkcode flush} after a batch.
   *
   * @param m The message.
   * @returns Whether more messages are wanted.
   */
  add(m: Message): boolean {
    if (this.#left <= 0) return false;
    this.#left--;
    this.#seq++;
    const data = m.data;
    if (this.#choice.format === "json") {
      this.#push(encoder.encode(jsonLine(this.#filled(m), this.#extras?.(m).json)));
    } else {
      this.#push(data);
      if (this.#choice.format === "lines" && data[data.length - 1] !== 10) this.#push(NEWLINE);
    }
    return this.#left > 0;
  }

  /**
   * Adds bytes of a byte stream whose messages are lines: passed on exactly, and counted
   * by their newlines (cut after the line that reaches the count). Not for `--exec`.
   *
   * @param data The bytes.
   * @returns Whether more messages are wanted.
   */
  addStream(data: Uint8Array): boolean {
    if (this.#left <= 0) return false;
    if (this.#left !== Infinity) {
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, nl + 1)) {
        this.#seq++;
        if (--this.#left === 0) {
          data = data.subarray(0, nl + 1);
          break;
        }
      }
    }
    this.#push(data);
    return this.#left > 0;
  }

  /** Writes the pending output to stdout in one call. */
  flush(): void {
    if (this.#size === 0) return;
    let all = this.#parts[0]!;
    if (this.#parts.length > 1) {
      all = new Uint8Array(this.#size);
      let off = 0;
      for (const p of this.#parts) {
        all.set(p, off);
        off += p.length;
      }
    }
    this.#parts = [];
    this.#size = 0;
    writeAll(Deno.stdout, all);
  }

  /**
   * Delivers a batch: prints it, or runs the command once per message.
   *
   * @param batch The messages.
   * @returns Whether more messages are wanted.
   */
  async deliver(batch: readonly Message[]): Promise<boolean> {
    const exec = this.#choice.exec;
    if (exec === undefined) {
      for (const m of batch) if (!this.add(m)) break;
      this.flush();
      return this.wanted;
    }
    for (const m of batch) {
      if (this.#left <= 0) break;
      this.#left--;
      this.#seq++;
      await runCommand(exec, this.#filled(m), this.#extras?.(m).env ?? {});
    }
    return this.wanted;
  }

  #filled(m: Message): Message {
    return {
      data: m.data,
      id: m.id ?? String(this.#seq),
      topic: m.topic ?? "",
      time: m.time ?? new Date(),
    };
  }

  #push(data: Uint8Array): void {
    this.#parts.push(data);
    this.#size += data.length;
  }
}

async function runCommand(cmd: string, m: Message, env: Record<string, string>): Promise<void> {
  const child = new Deno.Command("sh", {
    args: ["-c", cmd],
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
    env: {
      FSBUS_ID: m.id ?? "",
      FSBUS_TOPIC: m.topic ?? "",
      FSBUS_TIME: (m.time ?? new Date()).toISOString(),
      ...env,
    },
  }).spawn();
  const writer = child.stdin.getWriter();
  try {
    await writer.write(m.data);
    await writer.close();
  } catch {
    // the command did not read its input: that is its choice
  }
  const status = await child.status;
  if (!status.success) warn(`Command for message "${m.id}" exited with status ${status.code}`);
}
