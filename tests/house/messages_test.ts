/**
 * One voice for error messages: a test over the sources (cli.ts, cli/, transports/, sys/,
 * types.ts) that reads every message literal given to `new FsbusError(...)` and
 * `new UsageError(...)`, and every action given to `fromFsError(...)`/`sysToFsbus(...)`,
 * and holds it to the house style (DESIGN.md, "The shared vocabulary"; the Deno standard
 * library's error-message guide).
 *
 * (sys/ throws `SysError`, whose message is libc's own `<call> "<path>": <errno text>`; the
 * transports turn it into this voice with `fromFsError`.)
 *
 * The voice: `Cannot <action> "<what>": <why>`, as in `Cannot subscribe to "/tmp/x": not a
 * directory`.
 * - It starts with "Cannot " and a lower-case verb: what failed.
 * - It says why after `: ` (a colon and a space), in lower case.
 * - Sentence case (a capital first letter and nothing else forced), no trailing period,
 *   no trailing space.
 *
 * Accepted other shapes, for command-line (usage) errors only, because they name the thing
 * the user must change rather than an action that failed (the wording of `node:util`
 * parseArgs and of most command lines):
 * - `Unknown <thing> "<what>" ...`: an option, command or argument fsbus does not know.
 * - `Missing <thing> ...`: something the command line must give.
 * - `Too many <things> ...`: more arguments than the command takes.
 *
 * A bad value on the command line is a failed action like any other: `Cannot use "x" for
 * "--replay": expected off, last or all` (not "Invalid value ...").
 *
 * What is checked: string and template literals, concatenations of them (`${...}` stands
 * for "a value"), and each branch of a conditional (`ok ? "..." : "..."`). A message built elsewhere (a variable, a call) is not checked here; a
 * message that starts with a value (`${action} "${path}": ...`) is checked only for its end.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT } from "../_helpers.ts";

/** A message (or action) found in the sources. */
interface Found {
  /** Path relative to the repository root. */
  file: string;
  line: number;
  /** The call: FsbusError, UsageError, fromFsError or sysToFsbus. */
  call: string;
  /** Whether it is a usage error (a UsageError, or an FsbusError with code "usage"). */
  usage: boolean;
  /** The literal text, with "${}" for each interpolated value. */
  text: string;
}

const VALUE = "${}";

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}/${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) walk(rel);
      else if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(rel);
    }
  };
  for (const dir of ["cli", "transports", "sys"]) walk(dir);
  return [...out.sort(), "cli.ts", "types.ts"];
}

/** Skips a string or template literal starting at `i`; returns the index after it. */
function skipLiteral(src: string, i: number): number {
  const q = src[i]!;
  i++;
  while (i < src.length && src[i] !== q) {
    if (src[i] === "\\") i += 2;
    else if (q === "`" && src.startsWith("${", i)) i = skipBalanced(src, i + 1);
    else i++;
  }
  return i + 1;
}

/** Skips a bracketed expression starting at an opening bracket; returns the index after it. */
function skipBalanced(src: string, i: number): number {
  const open = src[i]!;
  const close = open === "(" ? ")" : open === "[" ? "]" : "}";
  i++;
  while (i < src.length && src[i] !== close) {
    const c = src[i]!;
    if (c === '"' || c === "'" || c === "`") i = skipLiteral(src, i);
    else if (c === "(" || c === "[" || c === "{") i = skipBalanced(src, i);
    else i++;
  }
  return i + 1;
}

/** Skips one argument (to the top-level "," or ")"); returns the index of that character. */
function skipArgument(src: string, i: number): number {
  while (i < src.length && src[i] !== "," && src[i] !== ")") {
    const c = src[i]!;
    if (c === '"' || c === "'" || c === "`") i = skipLiteral(src, i);
    else if (c === "(" || c === "[" || c === "{") i = skipBalanced(src, i);
    else i++;
  }
  return i;
}

function skipSpace(src: string, i: number): number {
  for (;;) {
    const m = /^(\s+|\/\/[^\n]*|\/\*[\s\S]*?\*\/)/.exec(src.slice(i, i + 2000));
    if (!m) return i;
    i += m[0].length;
  }
}

/** The text of a literal starting at `i` (values as "${}"), and the index after it. */
function readLiteral(src: string, i: number): [string, number] {
  const q = src[i]!;
  let text = "";
  i++;
  while (i < src.length && src[i] !== q) {
    if (src[i] === "\\") {
      const next = src[i + 1]!;
      text += next === "n" ? "\n" : next;
      i += 2;
    } else if (q === "`" && src.startsWith("${", i)) {
      text += VALUE;
      i = skipBalanced(src, i + 1);
    } else {
      text += src[i]!;
      i++;
    }
  }
  return [text, i + 1];
}

/**
 * The literal text of the expression starting at `i`: literals joined with "+", any other
 * operand as "${}". Undefined when the expression does not start with a literal.
 */
function readMessage(src: string, i: number): string | undefined {
  i = skipSpace(src, i);
  if (!`"'\``.includes(src[i]!)) return undefined;
  let text = "";
  for (;;) {
    i = skipSpace(src, i);
    if (`"'\``.includes(src[i]!)) {
      const [t, next] = readLiteral(src, i);
      text += t;
      i = skipSpace(src, next);
    } else {
      text += VALUE;
      i = skipSpace(src, skipArgument(src, i));
      return text;
    }
    if (src[i] !== "+") return text;
    i++;
  }
}

/**
 * The literal branches of a conditional argument starting at `i` (`a ? "x" : "y"`), read as
 * {@linkcode readMessage} reads a message; none when the argument is not a conditional.
 */
function conditionalBranches(src: string, i: number): string[] {
  const end = skipArgument(src, i);
  const branches: string[] = [];
  let depth = 0;
  for (let j = i; j < end; j++) {
    const c = src[j]!;
    if (c === '"' || c === "'" || c === "`") j = skipLiteral(src, j) - 1;
    else if (c === "(" || c === "[" || c === "{") depth++;
    else if (c === ")" || c === "]" || c === "}") depth--;
    else if (depth === 0 && (c === "?" || c === ":") && src[j + 1] !== "." && src[j + 1] !== "?") {
      const text = readMessage(src, j + 1);
      if (text !== undefined) branches.push(text);
    }
  }
  return branches;
}

function lineOf(src: string, i: number): number {
  return src.slice(0, i).split("\n").length;
}

function findMessages(): Found[] {
  const found: Found[] = [];
  for (const file of sourceFiles()) {
    const src = Deno.readTextFileSync(`${ROOT}/${file}`);
    const calls = /\bnew\s+(FsbusError|UsageError)\s*\(|\b(fromFsError|sysToFsbus)\s*\(/g;
    for (const m of src.matchAll(calls)) {
      const call = m[1] ?? m[2]!;
      let i = m.index + m[0].length;
      // FsbusError(code, message), fromFsError(err, action, ...): the text is the 2nd argument.
      let usage = call === "UsageError";
      if (call !== "UsageError") {
        const end = skipArgument(src, i);
        usage = call === "FsbusError" && src.slice(i, end).trim() === '"usage"';
        i = end + 1;
      }
      const line = lineOf(src, m.index);
      const text = readMessage(src, i);
      if (text !== undefined) found.push({ file, line, call, usage, text });
      else {
        // `cond ? "one message" : "another"`: each branch is a message.
        for (const branch of conditionalBranches(src, i)) {
          found.push({ file, line, call, usage, text: branch });
        }
      }
    }
  }
  return found;
}

/**
 * What is wrong with a message, or undefined when it is in voice.
 *
 * @param call The call it was given to.
 * @param text The literal text ("${}" for values).
 * @param usage Whether it is a usage error.
 */
function problem(call: string, text: string, usage = call === "UsageError"): string | undefined {
  if (/[.\s]$/.test(text) && !text.endsWith("...")) return "ends with a period or a space";
  if (call === "fromFsError" || call === "sysToFsbus") {
    // An action: the mapper adds ` "<path>": <why>`.
    return /^Cannot [a-z]/.test(text) ? undefined : 'the action does not start with "Cannot "';
  }
  if (text.startsWith(VALUE)) return undefined;
  if (/^Cannot [a-z]/.test(text)) {
    return /: \S/.test(text) ? undefined : 'says what failed but not why (no ": <why>")';
  }
  if (usage && /^(Unknown|Missing|Too many) /.test(text)) return undefined;
  return 'does not start with "Cannot <action>"';
}

const messages = findMessages();

Deno.test("error messages: the scan finds the messages of every layer", () => {
  // sys/ throws SysError, whose text is libc's ("open "/x": no such file or directory").
  for (const dir of ["cli/", "transports/"]) {
    assert.ok(messages.some((f) => f.file.startsWith(dir)), `no message found in ${dir}`);
  }
  assert.ok(messages.length > 100, `only ${messages.length} messages found`);
});

Deno.test('error messages: each says "Cannot <action> ...: <why>" or an accepted usage shape', () => {
  const bad = messages
    .filter((f) => problem(f.call, f.text, f.usage) !== undefined)
    .map((f) =>
      `${f.file}:${f.line} ${f.call} ${JSON.stringify(f.text)}: ${problem(f.call, f.text, f.usage)}`
    );
  assert.deepEqual(bad, [], `messages out of voice:\n${bad.join("\n")}`);
});

Deno.test("error messages: the voice check itself", async (t) => {
  await t.step("accepts an action, a value and a reason", () => {
    assert.equal(problem("FsbusError", 'Cannot subscribe to "${}": not a directory'), undefined);
  });
  await t.step("refuses a message without a reason", () => {
    assert.ok(problem("FsbusError", 'Cannot subscribe to "${}"'));
  });
  await t.step("refuses a trailing period", () => {
    assert.ok(problem("FsbusError", 'Cannot subscribe to "${}": not a directory.'));
  });
  await t.step('refuses "Invalid ..." and "... is closed"', () => {
    assert.ok(problem("UsageError", 'Invalid value "${}" for "--replay"'));
    assert.ok(problem("FsbusError", 'Group "${}" is closed'));
  });
  await t.step("accepts the usage shapes for usage errors only", () => {
    assert.equal(problem("UsageError", 'Unknown option "${}" for "sub"'), undefined);
    assert.equal(problem("UsageError", 'Missing argument for "pub": expected BUS'), undefined);
    assert.equal(problem("FsbusError", 'Missing action for "${}"', true), undefined);
    assert.ok(problem("FsbusError", 'Unknown group "${}"'));
  });
  await t.step("reads both branches of a conditional message", () => {
    const src = 'new FsbusError("io", ok ? `Cannot x "${a}": why` : "Topic gone")';
    const i = src.indexOf("(") + 1;
    assert.deepEqual(conditionalBranches(src, skipArgument(src, i) + 1), [
      'Cannot x "${}": why',
      "Topic gone",
    ]);
  });
  await t.step("reads concatenated literals, values and escapes", () => {
    const src = 'new FsbusError("io", `Cannot x "${a}": ` +\n  "why \\"q\\"" + b)';
    const i = src.indexOf("(") + 1;
    assert.equal(readMessage(src, skipArgument(src, i) + 1), 'Cannot x "${}": why "q"${}');
  });
});
