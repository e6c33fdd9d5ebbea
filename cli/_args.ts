/**
 * Command-line parsing and help text shared by every command: a thin layer over
 * `node:util`'s `parseArgs` that turns its errors into {@linkcode UsageError}s naming the
 * command, and renders help with examples.
 *
 * @module
 */

import { UsageError } from "../types.ts";

/** One option of a command. */
export interface OptionSpec {
  /** "boolean" for a switch, "string" for an option with a value. */
  type: "boolean" | "string";
  /** A one-letter alias. */
  short?: string;
  /** Whether the option may be repeated (values are collected in an array). */
  multiple?: boolean;
  /** The value's name in help text, such as "N" or "DIR". */
  value?: string;
  /** One line of help. */
  help: string;
  /** The default, shown in help text (parsing does not apply it). */
  default?: string;
  /** Accepted but not shown in help (an old spelling kept for scripts). */
  hidden?: boolean;
}

/** What a command looks like from the outside: its usage, options and examples. */
export interface CommandSpec {
  /** The full command, such as "fsbus sub". */
  name: string;
  /** The arguments after the name, such as "DIR [options]". */
  usage: string;
  /** One paragraph on what the command does. */
  summary: string;
  /** The options, by long name. `--help`/`-h` is added to every command. */
  options: Record<string, OptionSpec>;
  /** Example command lines, each with a `# comment` line before it where useful. */
  examples: string[];
  /** How many positional arguments are allowed. */
  positionals: { min: number; max: number; names?: string };
  /**
   * Whether an option given twice keeps its last value, as argparse does (default: an
   * option without `multiple` given twice is a usage error).
   */
  lastWins?: boolean;
}

/** Parsed options: strings, booleans and repeated strings, by long name. */
export type Values = Record<string, string | boolean | string[] | undefined>;

/** The outcome of {@linkcode parse}: the values, or a request for help. */
export type Parsed =
  | { help: true }
  | { help: false; values: Values; positionals: string[] };

/**
 * Parses `args` against `spec`.
 *
 * @param spec The command.
 * @param args The arguments after the command's name.
 * @returns The values and positionals, or `{ help: true }` when `--help` was given.
 * @throws {UsageError} On unknown options, missing values, or a wrong number of arguments.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandSpec, parse } from "./_args.ts";
 * const spec: CommandSpec = {
 *   name: "fsbus sub",
 *   usage: "DIR [options]",
 *   summary: "Print messages as they arrive.",
 *   options: { count: { type: "string", short: "n", value: "N", help: "Exit after N messages" } },
 *   examples: ["fsbus sub /tmp/bus -n 1"],
 *   positionals: { min: 1, max: 1, names: "DIR" },
 * };
 * const parsed = parse(spec, ["--count", "3", "/tmp/bus"]);
 * assert.deepEqual(parsed, { help: false, values: { count: "3" }, positionals: ["/tmp/bus"] });
 * assert.deepEqual(parse(spec, ["-h"]), { help: true });
 * assert.throws(() => parse(spec, ["--size", "1", "/tmp/bus"]), /Unknown option "--size"/);
 * ```
 */
export function parse(spec: CommandSpec, args: string[]): Parsed {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean }
  > = { help: { type: "boolean", short: "h" } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type, multiple: true };
    if (o.short) options[name].short = o.short;
  }
  let result;
  try {
    const normal = normalise(spec, args);
    result = parseSimple(spec, normal) ?? nodeParseArgs()({
      args: normal,
      options,
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(describeParseError(spec, err));
  }
  if (result.values.help) return { help: true };
  const values: Values = {};
  for (const [name, v] of Object.entries(result.values)) {
    const o = spec.options[name];
    if (!Array.isArray(v) || o === undefined) {
      values[name] = v as Values[string];
    } else if (o.multiple) {
      values[name] = v as string[] | undefined;
    } else if (v.length > 1 && !spec.lastWins && !(o.type === "boolean")) {
      throw new UsageError(
        `Cannot use "--${name}" ${v.length} times with "${spec.name}": it takes one value`,
      );
    } else {
      values[name] = v[v.length - 1] as string | boolean;
    }
  }
  const { positionals } = result;
  const { min, max } = spec.positionals;
  if (positionals.length < min) {
    const names = spec.positionals.names ?? spec.usage;
    throw new UsageError(`Missing argument for "${spec.name}": expected ${names}`);
  }
  if (positionals.length > max) {
    throw new UsageError(
      `Too many arguments for "${spec.name}": unexpected "${positionals[max]}"`,
    );
  }
  return { help: false, values, positionals };
}

type ParseArgs = typeof import("node:util").parseArgs;

/**
 * `node:util`'s `parseArgs`, loaded on first use. A static import of `node:util` costs a
 * one-shot command about 93M instructions (38% of fsbus's share of a `fsbus pub`), and
 * {@linkcode parseSimple} answers every command line that cannot be an error, so this is
 * reached only for the forms it leaves to `parseArgs` (mostly errors).
 */
function nodeParseArgs(): ParseArgs {
  const process = (globalThis as unknown as {
    process: { getBuiltinModule(id: "node:util"): { parseArgs: ParseArgs } };
  }).process;
  return process.getBuiltinModule("node:util").parseArgs;
}

/**
 * What `parseArgs` (strict, positionals allowed, every option but help repeated) returns for
 * a command line {@linkcode normalise} made, when every argument has one reading: a
 * positional, `--`, `--NAME=VALUE` for a value-taking option, `--NAME` or `-X` for a switch.
 * Anything else (a switch with a value, a value-taking option with none, grouped short
 * switches) returns undefined, for `parseArgs` itself to take, errors and all.
 */
function parseSimple(
  spec: CommandSpec,
  normal: string[],
): { values: Record<string, unknown>; positionals: string[] } | undefined {
  const values: Record<string, unknown[] | boolean> = {};
  const positionals: string[] = [];
  const add = (name: string, v: string | boolean) => {
    if (name === "help") values.help = true;
    else ((values[name] ??= []) as unknown[]).push(v);
  };
  for (let i = 0; i < normal.length; i++) {
    const a = normal[i]!;
    if (a === "--") {
      positionals.push(...normal.slice(i + 1));
      break;
    }
    if (a === "-" || !a.startsWith("-")) {
      positionals.push(a);
    } else if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const type = name === "help" ? "boolean" : spec.options[name]?.type;
      if (eq >= 0 && type === "string") add(name, a.slice(eq + 1));
      else if (eq < 0 && type === "boolean") add(name, true);
      else return undefined;
    } else if (a.length === 2) {
      const name = a[1] === "h" ? "help" : longOf(spec, a[1]!);
      if (name !== "help" && spec.options[name]?.type !== "boolean") return undefined;
      add(name, true);
    } else {
      return undefined;
    }
  }
  return { values, positionals };
}

/**
 * Checks option names before `parseArgs` sees them (unknown ones get a suggestion), and
 * joins each value-taking option with its value, so `--count -1` is a bad count rather than
 * a missing one, as getopt reads it. Everything after `--` is left as it is.
 */
function normalise(spec: CommandSpec, args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    if (a === "-" || !a.startsWith("-")) {
      out.push(a);
      continue;
    }
    let name: string;
    let inline = false;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      name = a.slice(2, eq < 0 ? undefined : eq);
      inline = eq >= 0;
      if (name !== "help" && !Object.hasOwn(spec.options, name)) {
        throw new UsageError(unknownOption(spec, a.slice(0, eq < 0 ? undefined : eq)));
      }
    } else {
      const short = a[1]!;
      const long = short === "h" ? "help" : longOf(spec, short);
      if (long === short) throw new UsageError(unknownOption(spec, a));
      name = long;
      inline = a.length > 2;
      if (inline && spec.options[name]?.type === "string") {
        out.push(`--${name}=${a.slice(2)}`);
        continue;
      }
    }
    const o = spec.options[name];
    if (o?.type === "string" && !inline && i + 1 < args.length) {
      out.push(`--${name}=${args[++i]}`);
      continue;
    }
    out.push(a);
  }
  return out;
}

function unknownOption(spec: CommandSpec, flag: string): string {
  const names = Object.entries(spec.options).filter(([, o]) => !o.hidden).map(([n]) => `--${n}`);
  const near = flag.startsWith("--") ? closest(flag, [...names, "--help"]) : undefined;
  const hint = near
    ? ` (did you mean "${near}"?)`
    : `; to give an argument that starts with "-", put "--" before it`;
  return `Unknown option "${flag}" for "${spec.name}"${hint} (see "${spec.name} --help")`;
}

/**
 * The candidate closest to a misspelt word: an unambiguous prefix, or one within a small
 * edit distance.
 *
 * @param word What was typed.
 * @param candidates The words that exist.
 * @returns The suggestion, or undefined when nothing is close.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { closest } from "./_args.ts";
 * assert.equal(closest("sbu", ["pub", "sub", "init"]), "sub");
 * assert.equal(closest("xyzzy", ["pub", "sub", "init"]), undefined);
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const prefixed = candidates.filter((c) => c.startsWith(word) && word.length >= 2);
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.floor(word.replace(/^-+/, "").length / 3));
  return bestDistance <= limit ? best : undefined;
}

/** Damerau-Levenshtein distance (adjacent swaps count as one edit). */
function editDistance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The usage error for a command or subcommand that does not exist, with the closest one.
 *
 * @param parent The command it was given to, such as "fsbus" or "fsbus mq".
 * @param word What was typed.
 * @param candidates The commands that exist.
 * @returns The error, to throw.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unknownCommand } from "./_args.ts";
 * assert.equal(
 *   unknownCommand("fsbus", "sbu", ["pub", "sub"]).message,
 *   'Unknown command "sbu" for "fsbus" (did you mean "sub"?)',
 * );
 * ```
 */
export function unknownCommand(
  parent: string,
  word: string,
  candidates: readonly string[],
): UsageError {
  const near = closest(word, candidates);
  const hint = near ? ` (did you mean "${near}"?)` : ` (see "${parent} --help")`;
  return new UsageError(`Unknown command "${word}" for "${parent}"${hint}`);
}

function describeParseError(spec: CommandSpec, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  // parseArgs quotes the option as "--raw", "-n, --count <value>" or an unknown "--jsn".
  const named = message.match(/'(-[^']*)'/)?.[1];
  const quoted = named?.split(" ")[0];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted) {
    return unknownOption(spec, quoted);
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && named) {
    const long = named.match(/--([\w-]+)/)?.[1] ?? longOf(spec, named.replace(/^-+/, ""));
    const o = spec.options[long];
    if (o?.type === "string") return `Option "--${long}" of "${spec.name}" needs a value`;
    return `Option "--${long}" of "${spec.name}" takes no value`;
  }
  return `${message.split(". ")[0]} (see "${spec.name} --help")`;
}

function longOf(spec: CommandSpec, short: string): string {
  for (const [name, o] of Object.entries(spec.options)) if (o.short === short) return name;
  return short;
}

/**
 * Renders a command's help text: usage, summary, options and examples.
 *
 * @param spec The command.
 * @returns The text, ending in a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandSpec, helpText } from "./_args.ts";
 * const spec: CommandSpec = {
 *   name: "fsbus sub",
 *   usage: "DIR [options]",
 *   summary: "Print messages as they arrive.",
 *   options: { count: { type: "string", short: "n", value: "N", help: "Exit after N messages" } },
 *   examples: ["fsbus sub /tmp/bus -n 1"],
 *   positionals: { min: 1, max: 1, names: "DIR" },
 * };
 * const text = helpText(spec);
 * assert.match(text, /fsbus sub DIR \[options\]/);
 * assert.match(text, /-n, --count N +Exit after N messages/);
 * ```
 */
export function helpText(spec: CommandSpec): string {
  const lines = [`Usage: ${spec.name} ${spec.usage}`, "", ...wrap(spec.summary, 78), ""];
  const rows: [string, string][] = [];
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.hidden) continue;
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${name}${
      o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""
    }`;
    rows.push([flag, o.help + (o.default !== undefined ? ` (default: ${o.default})` : "")]);
  }
  rows.push(["-h, --help", "Show this help"]);
  const width = Math.min(30, Math.max(...rows.map(([f]) => f.length)) + 2);
  lines.push("Options:");
  for (const [flag, help] of rows) {
    const wrapped = wrap(help, 78 - width - 2);
    const pad = flag.length + 2 > width
      ? `\n  ${" ".repeat(width)}`
      : " ".repeat(width - flag.length);
    lines.push(`  ${flag}${pad}${wrapped[0] ?? ""}`);
    for (const more of wrapped.slice(1)) lines.push(`  ${" ".repeat(width)}${more}`);
  }
  if (spec.examples.length > 0) {
    lines.push("", "Examples:");
    for (const ex of spec.examples) lines.push(`  ${ex}`);
  }
  return lines.join("\n") + "\n";
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        out.push(line);
        line = word;
      } else {
        line = line ? `${line} ${word}` : word;
      }
    }
    out.push(line);
  }
  return out;
}

/**
 * Reads a string option.
 *
 * @param values The parsed values.
 * @param name The option's long name.
 * @returns The value, or undefined when absent.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stringOption } from "./_args.ts";
 * assert.equal(stringOption({ topic: "news" }, "topic"), "news");
 * assert.equal(stringOption({}, "topic"), undefined);
 * ```
 */
export function stringOption(values: Values, name: string): string | undefined {
  const v = values[name];
  if (Array.isArray(v)) return v[v.length - 1];
  return typeof v === "string" ? v : undefined;
}

/**
 * Reads a whole-number option, checking its range.
 *
 * @param values The parsed values.
 * @param name The option's long name.
 * @param min The smallest value allowed.
 * @returns The number, or undefined when absent.
 * @throws {UsageError} When the value is not a whole number of at least `min`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { intOption } from "./_args.ts";
 * assert.equal(intOption({ count: "3" }, "count", 1), 3);
 * assert.equal(intOption({}, "count", 1), undefined);
 * assert.throws(() => intOption({ count: "0" }, "count", 1), /Cannot use "0" for "--count"/);
 * ```
 */
export function intOption(values: Values, name: string, min = 0): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `Cannot use "${raw}" for "--${name}": expected a whole number ≥ ${min}`,
    );
  }
  return n;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration: a number with a unit (ms, s, m, h, d), several of them together
 * ("1h30m", "2m30s"), or a bare number, which is seconds ("1.5" is 1500 ms).
 *
 * @param raw The text.
 * @param what What the duration is for, used in the error message.
 * @returns Milliseconds.
 * @throws {UsageError} When the text is not a duration (negative ones included).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDuration } from "./_args.ts";
 * assert.equal(parseDuration("5m", "--ttl"), 300_000);
 * assert.equal(parseDuration("1h30m", "--ttl"), 5_400_000);
 * assert.equal(parseDuration("2", "--ttl"), 2000);
 * assert.throws(() => parseDuration("soon", "--ttl"), /Cannot use "soon" for "--ttl"/);
 * ```
 */
export function parseDuration(raw: string, what: string): number {
  const text = raw.trim();
  const bad = () =>
    new UsageError(
      `Cannot use "${raw}" for "${what}": expected a number of seconds, or numbers ` +
        "with units such as 500ms, 30s, 5m, 1h30m, 2d",
    );
  if (/^\d+(?:\.\d+)?$/.test(text)) return Number(text) * 1000;
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text)) throw bad();
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
    ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  }
  return ms;
}

const SIZE_UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a byte size such as "4096", "64K", "16M" or "1G" (binary units).
 *
 * @param raw The text.
 * @param what What the size is for, used in the error message.
 * @returns Bytes.
 * @throws {UsageError} When the text is not a size.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSize } from "./_args.ts";
 * assert.equal(parseSize("64K", "--size"), 65536);
 * assert.throws(() => parseSize("lots", "--size"), /Cannot use "lots" for "--size"/);
 * ```
 */
export function parseSize(raw: string, what: string): number {
  const m = raw.trim().match(/^(\d+)\s*([KMG]?)(?:i?B)?$/i);
  if (!m) {
    throw new UsageError(
      `Cannot use "${raw}" for "${what}": expected bytes, or a number with K, M or G`,
    );
  }
  return Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]!;
}

/** How a reader prints messages: one per line, exact bytes, or JSON. */
export type Format = "lines" | "raw" | "json";

/** What a reader was asked for by the shared reader options. */
export interface ReaderChoice {
  /** One message per line (the default), exact bytes, or one JSON object per message. */
  format: Format;
  /** Exit after this many messages. */
  count?: number;
  /** Run this shell command once per message, the message on its standard input. */
  exec?: string;
}

/**
 * The options every reader takes, in the order help shows them: `--raw`, `--json`,
 * `-n/--count`, then `history` (such as `--since` or `--replay`) where the protocol keeps
 * history, then `--exec`. A command adds its own options after these.
 *
 * @param history The command's history options, if any.
 * @param more Extra JSON fields (`json`) and `--exec` variables (`env`) this reader adds,
 *   named in the help text.
 * @returns Option specs to spread into a {@linkcode CommandSpec}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readerOptions } from "./_args.ts";
 * const SINCE = { type: "string", value: "WHEN", help: "Replay messages since WHEN" } as const;
 * const options = { ...readerOptions({ since: SINCE }) };
 * assert.deepEqual(Object.keys(options), ["raw", "json", "count", "since", "exec"]); // help order
 * ```
 */
export function readerOptions(
  history: Record<string, OptionSpec> = {},
  more: { json?: string; env?: string } = {},
): Record<string, OptionSpec> {
  return {
    raw: {
      type: "boolean",
      help: "Write each message's bytes exactly, with nothing added between them",
    },
    json: {
      type: "boolean",
      help:
        `One JSON object per line: id, topic, time, size${
          more.json ? `, ${more.json}` : ""
        }, data ` +
        'and encoding ("utf-8", or "base64" for binary)',
    },
    count: { type: "string", short: "n", value: "N", help: "Exit after N messages" },
    ...history,
    exec: {
      type: "string",
      value: "CMD",
      help: "Run CMD with sh once per message, the message on its standard input and " +
        `FSBUS_ID, FSBUS_TOPIC, FSBUS_TIME${more.env ? `, ${more.env}` : ""} in its environment`,
    },
  };
}

/** The sentence every reader's help starts its output description with. */
export const READER_OUTPUT =
  "Each message is written on its own line (a newline is added when it has none); " +
  "--raw writes the bytes exactly, --json one object per message.";

/**
 * Reads the shared reader options from parsed values.
 *
 * @param spec The command, for error messages.
 * @param values The parsed values.
 * @returns The format, count and command.
 * @throws {UsageError} When `--raw` and `--json` are both given, or a count is not ≥ 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandSpec, readerChoice, readerOptions } from "./_args.ts";
 * const SUB: CommandSpec = {
 *   name: "fsbus sub",
 *   usage: "DIR [options]",
 *   summary: "Print messages as they arrive.",
 *   options: readerOptions(),
 *   examples: [],
 *   positionals: { min: 1, max: 1 },
 * };
 * assert.deepEqual(readerChoice(SUB, { json: true, count: "2" }), { format: "json", count: 2 });
 * assert.throws(() => readerChoice(SUB, { raw: true, json: true }), /choose one format/);
 * ```
 */
export function readerChoice(spec: CommandSpec, values: Values): ReaderChoice {
  if (values.raw && values.json) {
    throw new UsageError(
      `Cannot use "--raw" and "--json" together with "${spec.name}": choose one format`,
    );
  }
  const choice: ReaderChoice = { format: values.json ? "json" : values.raw ? "raw" : "lines" };
  const count = intOption(values, "count", 1);
  if (count !== undefined) choice.count = count;
  const exec = stringOption(values, "exec");
  if (exec !== undefined) choice.exec = exec;
  return choice;
}

/**
 * The option every writer takes besides its message argument and standard input.
 *
 * @param help What a line becomes, when it is not "its own message".
 * @returns Option specs to spread into a {@linkcode CommandSpec}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writerOptions } from "./_args.ts";
 * const options = { ...writerOptions() };
 * assert.equal(options.lines?.type, "boolean");
 * ```
 */
export function writerOptions(
  help = "Read standard input line by line: each line is its own message",
): Record<string, OptionSpec> {
  return { lines: { type: "boolean", help } };
}

/** The sentence every writer's help uses for where the message comes from. */
export const WRITER_INPUT = "The message is MESSAGE, or all of standard input, or with --lines " +
  "each line of standard input (use -- before a MESSAGE that starts with -).";
