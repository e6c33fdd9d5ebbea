/**
 * Command-line parsing and help text shared by every command: a thin layer over
 * `node:util`'s `parseArgs` that turns its errors into {@linkcode UsageError}s naming the
 * command, and renders help with examples.
 *
 * @module
 */

import { parseArgs } from "node:util";
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
 * ```ts ignore
 * import { parse } from "./_args.ts";
 * const parsed = parse(spec, ["--count", "3", "/tmp/bus"]);
 * ```
 */
export function parse(spec: CommandSpec, args: string[]): Parsed {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean }
  > = { help: { type: "boolean", short: "h" } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type };
    if (o.short) options[name].short = o.short;
    if (o.multiple) options[name].multiple = true;
  }
  let result;
  try {
    result = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(describeParseError(spec, err));
  }
  if (result.values.help) return { help: true };
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
  return { help: false, values: result.values as Values, positionals };
}

function describeParseError(spec: CommandSpec, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  const quoted = message.match(/'(-[^']*)'/)?.[1]?.split(" ")[0];
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && quoted) {
    return `Unknown option "${quoted}" for "${spec.name}" (see "${spec.name} --help")`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && quoted) {
    const long = quoted.replace(/^-+/, "").replace(/^(\w)$/, (s) => longOf(spec, s));
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
 * ```ts ignore
 * import { helpText } from "./_args.ts";
 * console.log(helpText(spec));
 * ```
 */
export function helpText(spec: CommandSpec): string {
  const lines = [`Usage: ${spec.name} ${spec.usage}`, "", ...wrap(spec.summary, 78), ""];
  const rows: [string, string][] = [];
  for (const [name, o] of Object.entries(spec.options)) {
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
 * ```ts ignore
 * const topic = stringOption(values, "topic");
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
 * ```ts ignore
 * const count = intOption(values, "count", 1);
 * ```
 */
export function intOption(values: Values, name: string, min = 0): number | undefined {
  const raw = stringOption(values, name);
  if (raw === undefined) return undefined;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `Invalid value "${raw}" for "--${name}": expected a whole number ≥ ${min}`,
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
 * Parses a duration such as "500ms", "30s", "5m", "1h", "2d" or "1.5" (seconds).
 *
 * @param raw The text.
 * @param what What the duration is for, used in the error message.
 * @returns Milliseconds.
 * @throws {UsageError} When the text is not a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./_args.ts";
 * parseDuration("5m", "--ttl"); // 300000
 * ```
 */
export function parseDuration(raw: string, what: string): number {
  const m = raw.trim().match(/^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/);
  if (!m) {
    throw new UsageError(
      `Invalid duration "${raw}" for "${what}": expected a number with ms, s, m, h or d`,
    );
  }
  return Number(m[1]) * DURATION_UNITS[m[2] ?? "s"]!;
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
 * import { parseSize } from "./_args.ts";
 * parseSize("64K", "--size"); // 65536
 * ```
 */
export function parseSize(raw: string, what: string): number {
  const m = raw.trim().match(/^(\d+)\s*([KMG]?)(?:i?B)?$/i);
  if (!m) {
    throw new UsageError(
      `Invalid size "${raw}" for "${what}": expected bytes, or a number with K, M or G`,
    );
  }
  return Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]!;
}
