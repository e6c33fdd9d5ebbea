/**
 * The device backend: a real /dev/fanout character device (or a `/dev/baf/<topic>` symlink
 * to one), driven through FFI with `poll`, `read` and `write` in chunks of at most a quarter
 * ring, EPIPE read as an overrun, and the fork's ioctls where the driver answers them.
 *
 * @module
 */

import { FsbusError, OverrunError, toBytes } from "../../types.ts";
import { Errno, SysError } from "../../sys/errno.ts";
import { closeFd, type FdStat, fstat, O, openFd } from "../../sys/fs.ts";
import { ioctlInt, pollIn, readFd, writeFd } from "../../sys/device_io.ts";
import { Waiter } from "../../sys/poll.ts";
import type { TopicReader, TopicWriter, WaitSource } from "./endpoint.ts";
import { planWrites } from "./_chunks.ts";
import { sameFile, sysToFsbus } from "./ring.ts";

/**
 * The fork's ioctl requests; each takes a pointer to a C int.
 *
 * @example
 * ```ts
 * import { FANOUT_IOCTL } from "./device.ts";
 * console.log(FANOUT_IOCTL.GET_RD.toString(16)); // "80046600"
 * ```
 */
export const FANOUT_IOCTL = {
  /** Number of open readers. */
  GET_RD: 0x80046600,
  /** Number of open writers. */
  GET_WR: 0x80046601,
  /** Non-zero: the next read starts at the oldest data held; zero: at "now". */
  SET_SEEK_SET: 0x40046602,
  /** Non-zero: round that start down to an even byte. */
  SET_SEEK_ALIGNMENT: 0x40046603,
} as const;

/** The module's default `buffersize`. */
export const DEFAULT_DEVICE_BUFFER = 16384;

/**
 * Whether an ioctl's errno means "this driver does not have that request": ENOTTY (upstream
 * fanout, and any other device) or EFAULT (the fork's answer to unknown requests).
 *
 * @param errno The errno of the failed ioctl.
 * @returns True when the request is unsupported rather than failed.
 *
 * @example
 * ```ts
 * import { isUnsupportedIoctl } from "./device.ts";
 * isUnsupportedIoctl(25); // true (ENOTTY)
 * ```
 */
export function isUnsupportedIoctl(errno: number): boolean {
  return errno === Errno.ENOTTY || errno === Errno.EFAULT;
}

/**
 * Calls one of the fork's ioctls on an open device.
 *
 * @param fd The device descriptor.
 * @param request One of {@linkcode FANOUT_IOCTL}.
 * @param value The int passed to "set" requests.
 * @returns The int after the call, or undefined when the driver does not support it.
 * @throws {SysError} For other failures.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FANOUT_IOCTL, fanoutIoctl } from "@x/fsbus/fanout";
 * import { closeFd, O, openFd } from "../../sys/fs.ts";
 * // A device without the fork's requests (upstream fanout, or here /dev/null) answers undefined.
 * const fd = openFd("/dev/null", O.RDONLY);
 * assert.equal(fanoutIoctl(fd, FANOUT_IOCTL.GET_RD), undefined);
 * closeFd(fd);
 * ```
 */
export function fanoutIoctl(fd: number, request: number, value = 0): number | undefined {
  try {
    return ioctlInt(fd, request, value);
  } catch (err) {
    if (err instanceof SysError && isUnsupportedIoctl(err.errno)) return undefined;
    throw err;
  }
}

/**
 * Maps a failed device read to what the reader reports: EPIPE is an overrun.
 *
 * @param err The caught error.
 * @param topic The topic's name.
 * @param path The device's path.
 * @returns The error to throw.
 *
 * @example
 * ```ts
 * import { readError } from "./device.ts";
 * import { SysError } from "../../sys/errno.ts";
 * readError(new SysError("read", 32), "news", "/dev/baf/news").code; // "overrun"
 * ```
 */
export function readError(err: unknown, topic: string, path: string): FsbusError {
  if (err instanceof SysError && err.errno === Errno.EPIPE) {
    return new OverrunError(
      `Reader of topic "${topic}" overrun: the device "${path}" dropped data (EPIPE)`,
    );
  }
  return sysToFsbus(err, `Cannot read topic "${topic}" from`, path);
}

/**
 * The device's largest atomic write: a quarter of the module's `buffersize` (read from
 * /sys/module/fanout/parameters/buffersize when present, else the default 16384).
 *
 * @returns Bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deviceMaxWrite } from "./device.ts";
 * assert.ok(deviceMaxWrite() >= 1); // 4096 with the module's defaults
 * ```
 */
export function deviceMaxWrite(): number {
  let size = DEFAULT_DEVICE_BUFFER;
  try {
    const n = Number(Deno.readTextFileSync("/sys/module/fanout/parameters/buffersize").trim());
    if (Number.isSafeInteger(n) && n >= 4) size = n;
  } catch {
    // module absent or unreadable: the default
  }
  return Math.floor(size / 4);
}

function openDevice(
  path: string,
  flags: number,
  topic: string,
  expect?: FdStat,
): { fd: number; stat: FdStat } {
  let fd: number;
  try {
    fd = openFd(path, flags | O.NOFOLLOW);
  } catch (err) {
    throw sysToFsbus(err, `Cannot open topic "${topic}" at`, path);
  }
  try {
    const stat = fstat(fd);
    if (stat.kind !== "char") {
      throw new FsbusError("invalid", `Cannot open topic "${topic}" at "${path}": not a device`);
    }
    if (
      expect && (!sameFile(stat, expect) || stat.rdev[0] !== expect.rdev[0] ||
        stat.rdev[1] !== expect.rdev[1])
    ) {
      throw new FsbusError(
        "invalid",
        `Cannot open topic "${topic}" at "${path}": it was replaced by another device`,
      );
    }
    return { fd, stat };
  } catch (err) {
    closeFd(fd);
    throw sysToFsbus(err, `Cannot open topic "${topic}" at`, path);
  }
}

/**
 * Reader and writer counts of a fanout device, from the fork's ioctls.
 *
 * The probe opens the device for reading, so it counts itself as one reader; that one is
 * subtracted.
 *
 * @param path The device.
 * @returns The counts, or undefined when the driver does not answer.
 *
 * The example needs a /dev/fanout device (the kernel module), so `deno test --doc` skips it.
 *
 * @example
 * ```ts ignore
 * import { deviceCounts } from "./device.ts";
 * deviceCounts("/dev/fanout"); // undefined on upstream fanout
 * ```
 */
export function deviceCounts(path: string): { readers: number; writers: number } | undefined {
  const { fd } = openDevice(path, O.RDONLY | O.NONBLOCK, path);
  try {
    const rd = fanoutIoctl(fd, FANOUT_IOCTL.GET_RD);
    const wr = fanoutIoctl(fd, FANOUT_IOCTL.GET_WR);
    if (rd === undefined || wr === undefined) return undefined;
    return { readers: Math.max(0, rd - 1), writers: wr };
  } finally {
    closeFd(fd);
  }
}

/**
 * A reader of a fanout device.
 *
 * The example needs a /dev/fanout device (the kernel module), so `deno test --doc` skips it.
 *
 * @example
 * ```ts ignore
 * import { DeviceReader } from "./device.ts";
 * using r = new DeviceReader("news", "/dev/baf/news");
 * r.waitSync(1000);
 * console.log(r.take());
 * ```
 */
export class DeviceReader implements TopicReader {
  /** The topic's name. */
  readonly topic: string;
  /** The device. */
  readonly path: string;
  /** Always "device". */
  readonly backend = "device" as const;
  /** Devices carry byte streams. */
  readonly messages = false;
  readonly #fromOldest: boolean;
  #fd: number;
  #buf = new Uint8Array(64 * 1024);
  #overrun: FsbusError | undefined;
  #waiter: Waiter | undefined;
  #closed = false;

  /**
   * Opens the device for reading.
   *
   * @param topic The topic's name.
   * @param path The device.
   * @param options `fromOldest`: start at the oldest data held (needs the fork's
   *   FANOUT_SET_SEEK_SET; an "unsupported" error otherwise); `expect`: the device must be
   *   this one (same inode and device number), now and at every reopen.
   */
  constructor(
    topic: string,
    path: string,
    options: { fromOldest?: boolean; expect?: FdStat } = {},
  ) {
    const { fromOldest = false, expect } = options;
    this.topic = topic;
    this.path = path;
    this.#fromOldest = fromOldest;
    this.#stat = expect;
    this.#fd = this.#open(this.#fromOldest);
  }

  #stat: FdStat | undefined;

  #open(fromOldest: boolean): number {
    // A reopen (resync) must find the same device: the name may have been swapped since.
    const { fd, stat } = openDevice(this.path, O.RDONLY, this.topic, this.#stat);
    this.#stat = stat;
    if (fromOldest) {
      let ok: number | undefined;
      try {
        ok = fanoutIoctl(fd, FANOUT_IOCTL.SET_SEEK_SET, 1);
      } catch (err) {
        closeFd(fd);
        throw sysToFsbus(err, `Cannot seek topic "${this.topic}" at`, this.path);
      }
      if (ok === undefined) {
        closeFd(fd);
        throw new FsbusError(
          "unsupported",
          `Cannot start topic "${this.topic}" at the oldest data: the driver of "${this.path}" ` +
            `has no FANOUT_SET_SEEK_SET ioctl`,
        );
      }
    }
    return fd;
  }

  /**
   * Takes what the device has now (one read of up to 64 KiB).
   *
   * @param maxBytes The most bytes to read.
   * @returns One chunk, or nothing.
   */
  take(maxBytes: number = this.#buf.length): Uint8Array[] {
    if (this.#overrun) throw this.#overrun;
    if (this.#closed) {
      throw new FsbusError("closed", `Cannot read topic "${this.topic}": the reader is closed`);
    }
    // read() blocks on fanout whatever O_NONBLOCK says: ask poll first.
    if (pollIn(this.#fd, 0) === 0) return [];
    const buf = maxBytes < this.#buf.length ? this.#buf.subarray(0, maxBytes) : this.#buf;
    let n: number;
    try {
      n = readFd(this.#fd, buf);
    } catch (err) {
      this.#overrun = readError(err, this.topic, this.path);
      throw this.#overrun;
    }
    if (n === 0) {
      throw new FsbusError(
        "io",
        `Cannot read topic "${this.topic}": "${this.path}" reported end of file, ` +
          `which a fanout device never does`,
      );
    }
    return [buf.slice(0, n)];
  }

  /**
   * Blocks the thread until the device is readable or the timeout passes.
   *
   * @param timeoutMs The longest wait; negative means none.
   * @returns True when readable.
   */
  waitSync(timeoutMs = -1): boolean {
    return pollIn(this.#fd, timeoutMs < 0 ? -1 : Math.ceil(timeoutMs)) !== 0;
  }

  /** Waits on a worker thread until the device is readable or wake() is called. */
  async wait(): Promise<void> {
    if (this.#closed) return;
    this.#waiter ??= new Waiter([this.#fd]);
    await this.#waiter.wait(-1);
  }

  /** Ends a pending wait. */
  wake(): void {
    this.#waiter?.wake();
  }

  /**
   * The descriptor to poll together with other readers.
   *
   * @returns The fd source, or undefined when it is readable already.
   */
  waitSource(): WaitSource | undefined {
    return pollIn(this.#fd, 0) !== 0 ? undefined : { kind: "fd", fd: this.#fd };
  }

  /**
   * Closes and reopens the device, which resynchronises the reader to "now".
   *
   * @returns undefined: the device does not say how much was lost.
   */
  resync(): undefined {
    const old = this.#fd;
    this.#fd = this.#open(false);
    closeFd(old);
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      void w.close();
    }
    this.#overrun = undefined;
    return undefined;
  }

  /** Closes the device. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const fd = this.#fd;
    if (this.#waiter) {
      void this.#waiter.close().finally(() => closeFd(fd));
    } else {
      closeFd(fd);
    }
  }

  /** Same as {@linkcode DeviceReader.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * A writer of a fanout device: every write call carries at most a quarter ring, which the
 * device applies atomically; longer data is split, as the device itself would.
 *
 * The example needs a /dev/fanout device (the kernel module), so `deno test --doc` skips it.
 *
 * @example
 * ```ts ignore
 * import { DeviceWriter } from "./device.ts";
 * using w = new DeviceWriter("news", "/dev/baf/news");
 * w.write("hello\n");
 * ```
 */
export class DeviceWriter implements TopicWriter {
  /** The topic's name. */
  readonly topic: string;
  /** The device. */
  readonly path: string;
  /** Always "device". */
  readonly backend = "device" as const;
  /** Devices carry byte streams. */
  readonly messages = false;
  /** The largest atomic write. */
  readonly maxWrite: number;
  #fd: number;
  #closed = false;

  /**
   * Opens the device for writing.
   *
   * @param topic The topic's name.
   * @param path The device.
   * @param maxWrite The largest write (default: a quarter of the module's buffersize).
   * @param expect The device must be this one (same inode and device number).
   */
  constructor(
    topic: string,
    path: string,
    maxWrite: number = deviceMaxWrite(),
    expect?: FdStat,
  ) {
    this.topic = topic;
    this.path = path;
    this.maxWrite = maxWrite;
    this.#fd = openDevice(path, O.WRONLY, topic, expect).fd;
  }

  #writeAll(data: Uint8Array): void {
    if (this.#closed) {
      throw new FsbusError("closed", `Cannot write to topic "${this.topic}": the writer is closed`);
    }
    let off = 0;
    while (off < data.length) {
      try {
        off += writeFd(this.#fd, data.subarray(off));
      } catch (err) {
        throw sysToFsbus(err, `Cannot write topic "${this.topic}" to`, this.path);
      }
    }
  }

  /**
   * Writes bytes in pieces of at most `maxWrite`.
   *
   * @param data The bytes or text.
   */
  write(data: Uint8Array | string): void {
    const bytes = toBytes(data);
    for (let off = 0; off < bytes.length; off += this.maxWrite) {
      this.#writeAll(bytes.subarray(off, off + this.maxWrite));
    }
  }

  /**
   * Writes items grouped into as few write calls as fit, each item whole.
   *
   * @param items The items.
   */
  writeBatch(items: readonly Uint8Array[]): void {
    const pieces = planWrites(items.map((it) => it.length), this.maxWrite);
    if (pieces.length === 0) return;
    const total = pieces[pieces.length - 1]!.end;
    const all = new Uint8Array(total);
    let off = 0;
    for (const it of items) {
      all.set(it, off);
      off += it.length;
    }
    for (const p of pieces) this.#writeAll(all.subarray(p.start, p.end));
  }

  /** Closes the device. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeFd(this.#fd);
  }

  /** Same as {@linkcode DeviceWriter.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
