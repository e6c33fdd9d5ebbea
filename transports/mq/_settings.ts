/**
 * The settings a group keeps in three files: `ctl` (what users read and a shell may
 * rewrite), `.mq/settings` (the canonical text, so a shell's partial rewrite of `ctl` can be
 * applied on top of it) and `.mq/rejected` (the last `ctl` text mq would reject, and why).
 *
 * Every change is made under the group lock, by the caller.
 *
 * @module
 */

import { preadFd, pwriteAll, truncateTo } from "../../sys/fd_io.ts";
import { applyCommands, DEFAULT_SETTINGS, renderCtl, type Settings } from "./_ctl.ts";
import type { GroupDir } from "./_files.ts";

/** The most bytes `.mq/settings` and `.mq/rejected` may hold. */
const MAX_TEXT = 64 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A group's settings and its `ctl` file. */
export class GroupSettings {
  readonly #dir: GroupDir;
  readonly #ctlFd: number;
  #settings: Settings = DEFAULT_SETTINGS;
  #ctlBytes: Uint8Array = encoder.encode(renderCtl(DEFAULT_SETTINGS));
  readonly #ctlBuf = new Uint8Array(4096);

  /**
   * @param dir The group's directory.
   * @param ctlFd `ctl`, open (for reading and writing, unless the group is read only).
   */
  constructor(dir: GroupDir, ctlFd: number) {
    this.#dir = dir;
    this.#ctlFd = ctlFd;
  }

  /** The settings as last loaded (see {@linkcode GroupSettings.checkLocked}). */
  get current(): Settings {
    return this.#settings;
  }

  /** Whether `ctl` holds something other than the canonical text of the settings. */
  changed(): boolean {
    const n = preadFd(this.#ctlFd, this.#ctlBuf, 0);
    if (n === 0) return false; // truncated by a shell that has not written yet
    if (n !== this.#ctlBytes.length) return true;
    for (let i = 0; i < n; i++) if (this.#ctlBuf[i] !== this.#ctlBytes[i]) return true;
    return false;
  }

  /** Under the lock: loads `.mq/settings`, then applies what a shell wrote to `ctl`. */
  loadLocked(): void {
    let s: Settings;
    try {
      s = applyCommands(this.#readStored(), DEFAULT_SETTINGS);
    } catch {
      s = DEFAULT_SETTINGS;
    }
    this.#set(s);
    this.checkLocked();
  }

  /**
   * Without the lock (a group opened for reading only): loads `.mq/settings`, and applies
   * what a shell wrote to `ctl` here only, when it is valid.
   */
  loadReadOnly(): void {
    let s = DEFAULT_SETTINGS;
    try {
      s = applyCommands(this.#readStored(), DEFAULT_SETTINGS);
    } catch {
      // the defaults
    }
    this.#set(s);
    if (!this.changed()) return;
    const n = preadFd(this.#ctlFd, this.#ctlBuf, 0);
    try {
      this.#set(applyCommands(decoder.decode(this.#ctlBuf.subarray(0, n)), s));
    } catch {
      // rejected: the stored settings hold
    }
  }

  #readStored(): string {
    try {
      return this.#dir.readText("meta", "settings", MAX_TEXT) ?? "";
    } catch {
      return "";
    }
  }

  #set(s: Settings): void {
    this.#settings = s;
    this.#ctlBytes = encoder.encode(renderCtl(s));
  }

  /**
   * Under the lock: if `ctl` was rewritten by a shell, applies it, or rejects it (noting why
   * in `.mq/rejected`) and restores `ctl`.
   */
  checkLocked(): void {
    if (!this.changed()) return;
    // Another process may have changed the settings properly: look there first.
    let stored = this.#settings;
    try {
      stored = applyCommands(this.#readStored(), DEFAULT_SETTINGS);
    } catch {
      // keep ours
    }
    this.#set(stored);
    if (!this.changed()) return;
    const n = preadFd(this.#ctlFd, this.#ctlBuf, 0);
    if (n === 0) return;
    const text = decoder.decode(this.#ctlBuf.subarray(0, n));
    try {
      this.store(applyCommands(text, stored));
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.#dir.writeText("meta", "rejected", `${JSON.stringify(text.trimEnd())}: ${why}\n`);
      this.store(stored);
    }
  }

  /**
   * Under the lock: makes `s` the settings, in `.mq/settings` and `ctl`.
   *
   * @param s The settings.
   */
  store(s: Settings): void {
    this.#set(s);
    this.#dir.writeText("meta", "settings", renderCtl(s));
    pwriteAll(this.#ctlFd, this.#ctlBytes, 0);
    truncateTo(this.#ctlFd, this.#ctlBytes.length);
  }

  /**
   * Takes (and clears) the last rejected `ctl` text, with mq's reason.
   *
   * @returns The message, or undefined when nothing was rejected.
   */
  takeRejected(): string | undefined {
    try {
      const text = this.#dir.readText("meta", "rejected", MAX_TEXT)?.trim();
      if (text === undefined) return undefined;
      this.#dir.remove("meta", "rejected");
      return text || undefined;
    } catch {
      return undefined;
    }
  }
}
