/**
 * A bus's settings, kept in the hidden file `.fsbus.json` inside the bus so that every
 * process using the bus agrees on them.
 *
 * @module
 */

import { fromFsError, FsbusError } from "../../types.ts";
import { ffiAvailable } from "../../sys/libc.ts";
import { closeFd, fstat, O, readAllFd, writeAllFd } from "../../sys/fs.ts";
import { fchmod, openAt, openDir, renameAt, unlinkAt } from "../../sys/dirfd.ts";
import { SysError } from "../../sys/errno.ts";

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

/** The largest settings file read (a bus's settings are a few bytes). */
const MAX_CONFIG_SIZE = 64 * 1024;

/**
 * Reads a bus's settings; a bus without a settings file uses the defaults. The file is opened
 * with `O_NOFOLLOW|O_NONBLOCK` from the bus's descriptor and must be a regular file of at most
 * 64 KiB: a symlink, FIFO or device planted there gives a clear error at once, never a hang
 * or unbounded memory.
 *
 * @param dir The bus directory.
 * @returns The settings.
 * @throws {FsbusError} When the settings file exists but cannot be read or parsed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_TTL_MS, readConfig } from "@x/fsbus/msgfs";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.equal(readConfig(dir).ttlMs, DEFAULT_TTL_MS); // no settings file: the defaults
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function readConfig(dir: string): BusConfig {
  const path = `${dir}/${CONFIG_FILE}`;
  const text = ffiAvailable() ? readFfi(dir, path) : readByPath(path);
  if (text === undefined) return { ttlMs: DEFAULT_TTL_MS };
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

function refuse(path: string, why: string): FsbusError {
  return new FsbusError("invalid", `Cannot read the settings of "${path}": ${why}`);
}

function readFfi(dir: string, path: string): string | undefined {
  let bus = -1;
  let fd = -1;
  try {
    bus = openDir(dir);
    fd = openAt(bus, CONFIG_FILE, O.RDONLY | O.NONBLOCK | O.NOCTTY);
    const st = fstat(fd);
    if (st.kind !== "file") throw refuse(path, "not a regular file");
    const data = readAllFd(fd, st.size, MAX_CONFIG_SIZE);
    if (data === undefined) throw refuse(path, `larger than ${MAX_CONFIG_SIZE} bytes`);
    return new TextDecoder().decode(data);
  } catch (err) {
    if (err instanceof SysError && err.code === "ENOENT" && bus >= 0) return undefined;
    if (err instanceof SysError && err.code === "ELOOP") throw refuse(path, "a symbolic link");
    throw fromFsError(err, "Cannot read the settings of", path);
  } finally {
    if (fd >= 0) closeFd(fd);
    if (bus >= 0) closeFd(bus);
  }
}

function readByPath(path: string): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw fromFsError(err, "Cannot read the settings of", path);
  }
  if (info.isSymlink) throw refuse(path, "a symbolic link");
  if (!info.isFile) throw refuse(path, "not a regular file");
  if (info.size > MAX_CONFIG_SIZE) throw refuse(path, `larger than ${MAX_CONFIG_SIZE} bytes`);
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw fromFsError(err, "Cannot read the settings of", path);
  }
}

/**
 * Writes a bus's settings atomically: a temp file made with `O_CREAT|O_EXCL|O_NOFOLLOW` in the
 * bus, renamed over the old one (a symlink planted under either name is replaced, never
 * followed).
 *
 * @param dir The bus directory.
 * @param config The settings.
 * @param mode The settings file's permission bits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readConfig, writeConfig } from "./config.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * writeConfig(dir, { ttlMs: 60_000 }, 0o644);
 * assert.equal(readConfig(dir).ttlMs, 60_000);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function writeConfig(dir: string, config: BusConfig, mode: number): void {
  const path = `${dir}/${CONFIG_FILE}`;
  const text = JSON.stringify({ ttl_ms: config.ttlMs }) + "\n";
  if (!ffiAvailable()) {
    writeByPath(path, text, mode);
    return;
  }
  const tmp = `${CONFIG_FILE}.${Deno.pid}.tmp`;
  let bus = -1;
  let fd = -1;
  try {
    bus = openDir(dir);
    const flags = O.WRONLY | O.CREAT | O.EXCL;
    try {
      fd = openAt(bus, tmp, flags, mode);
    } catch (err) {
      if (!(err instanceof SysError && err.code === "EEXIST")) throw err;
      unlinkAt(bus, tmp); // a stale one (or one planted): never written through
      fd = openAt(bus, tmp, flags, mode);
    }
    fchmod(fd, mode);
    writeAllFd(fd, new TextEncoder().encode(text));
    closeFd(fd);
    fd = -1;
    renameAt(bus, tmp, bus, CONFIG_FILE);
  } catch (err) {
    if (fd >= 0) closeFd(fd);
    if (bus >= 0) {
      try {
        unlinkAt(bus, tmp);
      } catch {
        // never made
      }
    }
    throw fromFsError(err, "Cannot write the settings of", path);
  } finally {
    if (bus >= 0) closeFd(bus);
  }
}

function writeByPath(path: string, text: string, mode: number): void {
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeTextFileSync(tmp, text, { mode, createNew: true });
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
