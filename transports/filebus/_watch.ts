/**
 * What wakes a filebus producer or consumer: inotify on FILE's directory (a chunk renamed
 * in, FILE deleted, the lock file replaced), with the sleep interval as the longest wait;
 * or a plain sleep when file monitoring is off or unavailable.
 *
 * @module
 */

import { IN, Inotify } from "../../sys/inotify.ts";
import { yieldTurn } from "../../sys/poll.ts";

/** What happened since the last {@linkcode Watch.drain}. */
export interface Changes {
  /** FILE was (re)placed: a chunk renamed in. */
  arrived: boolean;
  /** FILE was removed or renamed away. */
  removed: boolean;
  /** FILE.lock was removed or replaced. */
  lockReplaced: boolean;
  /** Events may have been lost (queue overflow, or the watch ended): check by identity. */
  unsure: boolean;
}

/**
 * The events that matter. Not IN_CLOSE_WRITE: every chunk is written to FILE.__new__ and
 * renamed in (IN_MOVED_TO), so closing FILE.__new__ would wake every consumer a second time
 * per chunk for nothing. FILE written in place (not the protocol) is seen within the sleep
 * interval, by its changed identity.
 */
const MASK = IN.MOVED_TO | IN.DELETE | IN.MOVED_FROM | IN.DELETE_SELF | IN.MOVE_SELF |
  IN.ONLYDIR;

/**
 * Event-driven waits on FILE's directory, or timed sleeps.
 */
export class Watch {
  readonly #ino: Inotify | undefined;
  readonly #base: string;
  readonly #lockBase: string;
  #sleepMs: number;
  readonly #blockMs: number;
  #active: boolean;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #resolveSleep: (() => void) | undefined;

  /**
   * Starts watching (when `monitor` is true and inotify is usable).
   *
   * @param dir FILE's directory.
   * @param base FILE's name.
   * @param monitor Whether to use inotify at all.
   * @param sleepMs The longest wait.
   * @param blockMs When more than 0, waits block this thread in poll(2) for up to this long.
   */
  constructor(dir: string, base: string, monitor: boolean, sleepMs: number, blockMs = 0) {
    this.#blockMs = blockMs;
    this.#base = base;
    this.#lockBase = `${base}.lock`;
    let ino: Inotify | undefined;
    if (monitor) {
      try {
        ino = new Inotify();
        ino.add(dir, MASK);
      } catch {
        void ino?.close();
        ino = undefined;
      }
    }
    this.#ino = ino;
    this.#active = ino !== undefined;
    // A zero interval would spin: with events, wait for them alone; polling, once a ms.
    this.#sleepMs = sleepMs > 0 ? sleepMs : this.#active ? -1 : 1;
  }

  /** "inotify" while events wake waits, "polling" otherwise. */
  get mode(): "inotify" | "polling" {
    return this.#active ? "inotify" : "polling";
  }

  /**
   * Reads every queued event and sums up what happened to FILE and FILE.lock.
   *
   * @returns The changes; with polling, `unsure` is always true.
   */
  drain(): Changes {
    const changes = { arrived: false, removed: false, lockReplaced: false, unsure: !this.#active };
    if (!this.#active) return changes;
    for (const e of this.#ino!.read()) {
      if (e.mask & (IN.Q_OVERFLOW)) {
        changes.unsure = true;
      } else if (e.mask & (IN.DELETE_SELF | IN.MOVE_SELF | IN.IGNORED)) {
        // The directory went away or moved: nothing more will be reported.
        this.#active = false;
        changes.unsure = true;
      } else if (e.name === this.#base) {
        if (e.mask & IN.MOVED_TO) changes.arrived = true;
        if (e.mask & (IN.DELETE | IN.MOVED_FROM)) changes.removed = true;
      } else if (e.name === this.#lockBase) {
        if (e.mask & (IN.DELETE | IN.MOVED_FROM | IN.MOVED_TO)) changes.lockReplaced = true;
      }
    }
    return changes;
  }

  /**
   * Waits for an event, {@linkcode Watch.wake}, or the sleep interval.
   *
   * @returns True when the wait ended by timeout (nothing happened).
   */
  async wait(): Promise<boolean> {
    if (this.#closed) return false;
    if (this.#active && this.#blockMs > 0) {
      const slice = this.#sleepMs > 0 ? Math.min(this.#sleepMs, this.#blockMs) : this.#blockMs;
      const r = this.#ino!.waitSync(slice);
      if (r === "timeout") await yieldTurn();
      return r === "timeout";
    }
    if (this.#active) return (await this.#ino!.wait(this.#sleepMs)) === "timeout";
    let timedOut = false;
    await new Promise<void>((resolve) => {
      this.#resolveSleep = resolve;
      this.#timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, Math.max(1, this.#sleepMs));
    });
    this.#timer = undefined;
    this.#resolveSleep = undefined;
    return timedOut;
  }

  /** Ends a pending wait at once. */
  wake(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#resolveSleep?.();
    if (this.#ino && !this.#closed) this.#ino.wake();
  }

  /** Ends any wait and releases the inotify instance. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.wake();
    this.#closed = true;
    await this.#ino?.close();
  }
}
