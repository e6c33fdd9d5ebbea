/**
 * Reading standard input for the commands that publish it: all of it as one message, or its
 * lines, in batches as they arrive.
 *
 * @module
 */

import { UsageError } from "../types.ts";

/**
 * Reads standard input to its end.
 *
 * @returns All the bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * // A process whose standard input is "hello": it reads it whole and prints its length.
 * const self = import.meta.resolve("./_input.ts");
 * const code = `import { readStdin } from "${self}"; console.log((await readStdin()).length);`;
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", code],
 *   stdin: "piped",
 *   stdout: "piped",
 * }).spawn();
 * const w = child.stdin.getWriter();
 * await w.write(new TextEncoder().encode("hello"));
 * await w.close();
 * const { stdout } = await child.output();
 * assert.equal(new TextDecoder().decode(stdout), "5\n");
 * ```
 */
export async function readStdin(): Promise<Uint8Array> {
  return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
}

/**
 * The lines of standard input, in batches: every whole line that one read delivered. A last
 * line without a newline is kept as it is.
 *
 * @param options `keepNewline`: end each line with its newline (default: strip it).
 * @returns Batches of lines, each line its own copy.
 *
 * @example Publish each line as it arrives
 * ```ts
 * import assert from "node:assert/strict";
 * // A process that prints each line of its standard input in brackets.
 * const self = import.meta.resolve("./_input.ts");
 * const code = `import { stdinLines } from "${self}";
 * for await (const batch of stdinLines({ keepNewline: false })) {
 *   for (const line of batch) console.log("[" + new TextDecoder().decode(line) + "]");
 * }`;
 * const child = new Deno.Command(Deno.execPath(), {
 *   args: ["eval", code],
 *   stdin: "piped",
 *   stdout: "piped",
 * }).spawn();
 * const w = child.stdin.getWriter();
 * await w.write(new TextEncoder().encode("one\ntwo\nlast without newline"));
 * await w.close();
 * const { stdout } = await child.output();
 * assert.equal(new TextDecoder().decode(stdout), "[one]\n[two]\n[last without newline]\n");
 * ```
 */
export async function* stdinLines(
  options: { keepNewline: boolean },
): AsyncGenerator<Uint8Array[], void, undefined> {
  const keep = options.keepNewline ? 1 : 0;
  let pending = new Uint8Array(0);
  for await (const chunk of Deno.stdin.readable) {
    let buf = chunk;
    if (pending.length > 0) {
      buf = new Uint8Array(pending.length + chunk.length);
      buf.set(pending);
      buf.set(chunk, pending.length);
    }
    const batch: Uint8Array[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
      batch.push(buf.slice(start, nl + keep));
      start = nl + 1;
    }
    pending = buf.slice(start);
    if (batch.length > 0) yield batch;
  }
  if (pending.length > 0) yield [pending];
}

const encoder = new TextEncoder();

/**
 * Says on stderr that standard input is being read, when it is a terminal (so a writer
 * given no MESSAGE does not seem to hang).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { noticeTerminal } from "./_input.ts";
 * // Says nothing here unless standard input is a terminal.
 * if (!Deno.stdin.isTerminal()) assert.equal(noticeTerminal(), undefined);
 * ```
 */
export function noticeTerminal(): void {
  let tty = false;
  try {
    tty = Deno.stdin.isTerminal();
  } catch {
    // no stdin
  }
  if (tty) {
    try {
      Deno.stderr.writeSync(
        encoder.encode("fsbus: reading the message from standard input (end with Ctrl-D)\n"),
      );
    } catch {
      // stderr closed
    }
  }
}

/**
 * What every writer publishes, in batches: MESSAGE alone, all of standard input as one
 * message, or with `lines` each line of standard input (as they arrive).
 *
 * @param message The MESSAGE argument, if given.
 * @param options `lines`: one message per line; `keepNewline`: lines keep their newline;
 *   `command`: the command's name, for the error when MESSAGE and `lines` meet.
 * @returns Batches of messages.
 * @throws {UsageError} When both MESSAGE and `lines` are given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { messagesToWrite } from "./_input.ts";
 * // With a MESSAGE argument; without one, standard input is read (whole, or with --lines).
 * const got: string[] = [];
 * for await (const batch of messagesToWrite("hello", { lines: false, command: "fsbus pub" })) {
 *   for (const m of batch) got.push(new TextDecoder().decode(m));
 * }
 * assert.deepEqual(got, ["hello"]);
 * ```
 */
export async function* messagesToWrite(
  message: string | undefined,
  options: { lines: boolean; keepNewline?: boolean; command: string },
): AsyncGenerator<Uint8Array[], void, undefined> {
  checkMessageSource(message, options);
  if (message !== undefined) {
    yield [encoder.encode(message)];
    return;
  }
  noticeTerminal();
  if (options.lines) {
    yield* stdinLines({ keepNewline: options.keepNewline ?? false });
    return;
  }
  yield [await readStdin()];
}

/**
 * Checks that a writer was not given both MESSAGE and `--lines` (call it before opening
 * anything, so a usage error leaves nothing behind).
 *
 * @param message The MESSAGE argument, if given.
 * @param options `lines`, and the command's name for the error.
 * @throws {UsageError} When both are given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkMessageSource } from "./_input.ts";
 * checkMessageSource("hi", { lines: false, command: "fsbus pub" }); // a message: fine
 * assert.throws(() => checkMessageSource("hi", { lines: true, command: "fsbus pub" }));
 * ```
 */
export function checkMessageSource(
  message: string | undefined,
  options: { lines: boolean; command: string },
): void {
  if (message !== undefined && options.lines) {
    throw new UsageError(
      `Cannot use "--lines" with a MESSAGE in "${options.command}": --lines reads standard input`,
    );
  }
}
