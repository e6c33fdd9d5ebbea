/**
 * What a subscription remembers of the files it delivered or skipped: by path below its base,
 * oldest first, forgotten from the oldest on. The states sit in typed-array columns of a ring,
 * so that the thousands of files a busy subscription remembers cost the garbage collector
 * nothing but their names.
 *
 * @module
 */

/** A file's identity and content version: what tells a rewrite or a replacement apart. */
export interface FileVersion {
  /** Inode number. */
  ino: number;
  /** Size in bytes. */
  size: number;
  /** Modification time: whole seconds. */
  mtimeSec: number;
  /** Modification time: nanoseconds within the second. */
  mtimeNsec: number;
}

const FIRST_CAPACITY = 1024;

/**
 * Remembered files. Each `add` takes a new place at the end (a file remembered again moves
 * there); `forget` drops from the start while the entries there last changed before a time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeenFiles } from "./_seen.ts";
 * const seen = new SeenFiles();
 * seen.add("a", { ino: 7, size: 5, mtimeSec: 1, mtimeNsec: 0 }, 1000);
 * seen.add("b", undefined, 3000, "a symbolic link");
 * const a = seen.find("a");
 * assert.ok(a >= 0 && seen.same(a, { ino: 7, size: 5, mtimeSec: 1, mtimeNsec: 0 }));
 * assert.equal(seen.skipOf(seen.find("b")), "a symbolic link");
 * seen.forget(2000); // "a" last changed before: gone; "b" stays
 * assert.equal(seen.find("a"), -1);
 * assert.equal(seen.size, 1);
 * ```
 */
export class SeenFiles {
  /** Path → its entry's sequence number (its place in the ring is seq & mask). */
  readonly #index = new Map<string, number>();
  /** Why a file was skipped, by sequence number (skipped files only). */
  readonly #skips = new Map<number, string>();
  #names: (string | undefined)[] = new Array(FIRST_CAPACITY);
  #ino = new Float64Array(FIRST_CAPACITY);
  #size = new Float64Array(FIRST_CAPACITY);
  #mtimeSec = new Float64Array(FIRST_CAPACITY);
  #mtimeNsec = new Float64Array(FIRST_CAPACITY);
  #ctimeMs = new Float64Array(FIRST_CAPACITY);
  #mask = FIRST_CAPACITY - 1;
  /** Sequence numbers of the oldest entry and of the next one. */
  #head = 0;
  #tail = 0;

  /** How many files are remembered. */
  get size(): number {
    return this.#index.size;
  }

  /**
   * The entry of a path.
   *
   * @param rel The path below the base.
   * @returns Its entry's number, or -1 when not remembered.
   */
  find(rel: string): number {
    return this.#index.get(rel) ?? -1;
  }

  /**
   * Whether an entry is of this version of the file (same inode, size and modification time).
   *
   * @param entry A number from {@linkcode SeenFiles.find}.
   * @param v The file's version now.
   * @returns False for a file skipped without a state.
   */
  same(entry: number, v: FileVersion): boolean {
    const i = entry & this.#mask;
    return this.#ino[i] === v.ino && this.#size[i] === v.size &&
      this.#mtimeSec[i] === v.mtimeSec && this.#mtimeNsec[i] === v.mtimeNsec;
  }

  /**
   * The version an entry remembers.
   *
   * @param entry A number from {@linkcode SeenFiles.find}.
   * @returns Its version (inode -1 for a file skipped without a state).
   */
  version(entry: number): FileVersion {
    const i = entry & this.#mask;
    return {
      ino: this.#ino[i]!,
      size: this.#size[i]!,
      mtimeSec: this.#mtimeSec[i]!,
      mtimeNsec: this.#mtimeNsec[i]!,
    };
  }

  /**
   * Why an entry's file was skipped.
   *
   * @param entry A number from {@linkcode SeenFiles.find}.
   * @returns The reason, or undefined for a delivered file.
   */
  skipOf(entry: number): string | undefined {
    return this.#skips.size === 0 ? undefined : this.#skips.get(entry);
  }

  /**
   * Remembers a file (again), at the end.
   *
   * @param rel The path below the base.
   * @param v Its version, or undefined when skipped without one.
   * @param ctimeMs When it last changed (its ctime, or now without a state).
   * @param skip Why it was skipped; undefined when delivered.
   * @param found What {@linkcode SeenFiles.find} gave for `rel` just before, when the caller
   *   has it (saves a second look-up in the index: one per delivered message).
   */
  add(
    rel: string,
    v: FileVersion | undefined,
    ctimeMs: number,
    skip?: string,
    found?: number,
  ): void {
    if (this.#tail - this.#head > this.#mask) this.#grow();
    const entry = this.#tail++;
    const i = entry & this.#mask;
    if (this.#skips.size > 0) {
      const before = found === undefined ? this.#index.get(rel) : found;
      if (before !== undefined && before >= 0) this.#skips.delete(before);
    }
    this.#index.set(rel, entry);
    this.#names[i] = rel;
    this.#ino[i] = v ? v.ino : -1;
    this.#size[i] = v ? v.size : -1;
    this.#mtimeSec[i] = v ? v.mtimeSec : 0;
    this.#mtimeNsec[i] = v ? v.mtimeNsec : 0;
    this.#ctimeMs[i] = ctimeMs;
    if (skip !== undefined) this.#skips.set(entry, skip);
  }

  /**
   * Forgets a path.
   *
   * @param rel The path below the base.
   * @returns Whether it was remembered.
   */
  delete(rel: string): boolean {
    const entry = this.#index.get(rel);
    if (entry === undefined) return false;
    this.#index.delete(rel);
    if (this.#skips.size > 0) this.#skips.delete(entry);
    return true;
  }

  /**
   * Whether the oldest entry last changed before a time (then {@linkcode SeenFiles.forget}
   * has something to do).
   *
   * @param before Wall-clock milliseconds.
   * @returns True when the oldest entry is older.
   */
  oldestBefore(before: number): boolean {
    return this.#tail > this.#head && this.#ctimeMs[this.#head & this.#mask]! < before;
  }

  /**
   * Forgets entries from the oldest on while they last changed before a time (and entries of
   * files remembered again since).
   *
   * @param before Wall-clock milliseconds.
   */
  forget(before: number): void {
    while (this.#head < this.#tail) {
      const entry = this.#head;
      const i = entry & this.#mask;
      const rel = this.#names[i]!;
      const live = this.#index.get(rel) === entry;
      if (live && !(this.#ctimeMs[i]! < before)) break;
      if (live) {
        this.#index.delete(rel);
        if (this.#skips.size > 0) this.#skips.delete(entry);
      }
      this.#names[i] = undefined;
      this.#head++;
    }
  }

  /** Twice the room; entries keep their numbers. */
  #grow(): void {
    const cap = (this.#mask + 1) * 2;
    const names: (string | undefined)[] = new Array(cap);
    for (let entry = this.#head; entry < this.#tail; entry++) {
      names[entry & (cap - 1)] = this.#names[entry & this.#mask];
    }
    this.#names = names;
    this.#ino = this.#widen(this.#ino, cap);
    this.#size = this.#widen(this.#size, cap);
    this.#mtimeSec = this.#widen(this.#mtimeSec, cap);
    this.#mtimeNsec = this.#widen(this.#mtimeNsec, cap);
    this.#ctimeMs = this.#widen(this.#ctimeMs, cap);
    this.#mask = cap - 1;
  }

  #widen(col: Float64Array, cap: number): Float64Array<ArrayBuffer> {
    const out = new Float64Array(cap);
    for (let entry = this.#head; entry < this.#tail; entry++) {
      out[entry & (cap - 1)] = col[entry & this.#mask]!;
    }
    return out;
  }
}
