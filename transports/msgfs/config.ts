/**
 * A bus's settings, kept in the hidden file `.fsbus.json` inside the bus so that every
 * process using the bus agrees on them.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";

/** The name of the settings file inside a bus. */
export const CONFIG_FILE = ".fsbus.json";

/** How long messages live when the bus says nothing else: one hour. */
export const DEFAULT_TTL_MS = 3_600_000;

/**
 * A bus's settings.
 *
 * @example
 * ```ts
 * import type { BusConfig } from "./config.ts";
 * const c: BusConfig = { ttlMs: 60_000 };
 * ```
 */
export interface BusConfig {
  /** How long a message lives before any fsbus process with write access may remove it. */
  ttlMs: number;
}

/**
 * Reads a bus's settings; a bus without a settings file uses the defaults.
 *
 * @param dir The bus directory.
 * @returns The settings.
 * @throws {FsbusError} When the settings file exists but cannot be read or parsed.
 *
 * @example
 * ```ts ignore
 * import { readConfig } from "./config.ts";
 * console.log(readConfig("/dev/shm/bus").ttlMs);
 * ```
 */
export function readConfig(dir: string): BusConfig {
  const path = `${dir}/${CONFIG_FILE}`;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ttlMs: DEFAULT_TTL_MS };
    throw fromFsError(err, "Cannot read the settings of", path);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new FsbusError("invalid", `Cannot read the settings of "${path}": not valid JSON`);
  }
  const ttl = (parsed as { ttl_ms?: unknown })?.ttl_ms;
  if (ttl !== undefined && (typeof ttl !== "number" || !(ttl > 0))) {
    throw new FsbusError(
      "invalid",
      `Cannot read the settings of "${path}": "ttl_ms" must be a positive number`,
    );
  }
  return { ttlMs: ttl ?? DEFAULT_TTL_MS };
}

/**
 * Writes a bus's settings (atomically: a temp file renamed over the old one).
 *
 * @param dir The bus directory.
 * @param config The settings.
 * @param mode The settings file's permission bits.
 *
 * @example
 * ```ts ignore
 * import { writeConfig } from "./config.ts";
 * writeConfig("/dev/shm/bus", { ttlMs: 60_000 }, 0o644);
 * ```
 */
export function writeConfig(dir: string, config: BusConfig, mode: number): void {
  const path = `${dir}/${CONFIG_FILE}`;
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, JSON.stringify({ ttl_ms: config.ttlMs }) + "\n", { mode });
    Deno.chmodSync(tmp, mode);
    Deno.renameSync(tmp, path);
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // never written
    }
    throw fromFsError(err, "Cannot write the settings of", path);
  }
}
