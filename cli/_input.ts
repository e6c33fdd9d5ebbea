/**
 * Reading standard input for the commands that publish it: all of it as one message, or its
 * lines, in batches as they arrive.
 *
 * @module
 */

/**
 * Reads standard input to its end.
 *
 * @returns All the bytes.
 *
 * @example
 * ```ts ignore
 * import { readStdin } from "./_input.ts";
 * const message = await readStdin();
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
 * ```ts ignore
 * import { stdinLines } from "./_input.ts";
 * for await (const batch of stdinLines({ keepNewline: false })) {
 *   for (const line of batch) console.log(new TextDecoder().decode(line));
 * }
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
