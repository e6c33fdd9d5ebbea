/**
 * `fsbus mq mount` and `fsbus mq umount`: the groups under a directory as a FUSE file tree
 * for unmodified programs (`cat`, `echo`, shell redirections), as mq(4) on Plan 9.
 *
 * @module
 */

import { backingPath, mountGroups, MQ_SUBTYPE } from "../transports/mq/mount.ts";
import { mountAt, unmountPath } from "../sys/fuse/mod.ts";
import { FsbusError, UsageError } from "../types.ts";
import { type CommandSpec, intOption, stringOption, type Values } from "./_args.ts";
import { warn } from "./_output.ts";
import { letGo } from "./_detach.ts";

/** The longest spin `--spin-us` takes (µs): longer is no longer a short wait. */
const MAX_SPIN_US = 1000;

/** `fsbus mq mount`. */
export const MOUNT: CommandSpec = {
  name: "fsbus mq mount",
  usage: "DIR MOUNTPOINT [options]",
  summary: "Serve the mq groups under DIR (or the group DIR) on MOUNTPOINT, an empty " +
    "directory, through FUSE: each write(2) to a stream is a message, reads block for the " +
    "next one, ctl and order work as on Plan 9. Runs in the foreground until Ctrl-C or " +
    '"fsbus mq umount MOUNTPOINT". Needs /dev/fuse, and root or fusermount3 (fuse3).',
  options: {
    daemon: { type: "boolean", help: "Run in the background once mounted" },
    "write-behind": {
      type: "boolean",
      help: "Answer each write(2) to a stream once checked and commit it right after (faster " +
        "for one writer); a failed commit is logged and returned by that file's next " +
        "write(2), close(2) or fsync(2)",
    },
    "spin-us": {
      type: "string",
      value: "N",
      help: "While writes come back to back, keep polling for up to N µs after a request " +
        "before sleeping, so the server is awake for the next one (CPU only while busy; " +
        "default 50; 0: sleep at once)",
    },
    "pid-file": { type: "string", value: "FILE", help: "Write the server's process id to FILE" },
    "status-file": { type: "string", value: "FILE", help: "(internal) report for --daemon" },
  },
  examples: [
    "fsbus mq mount /dev/shm/mq /mnt/mq &",
    "mkdir /mnt/mq/chat            # a group, with ctl and order",
    "cat /mnt/mq/chat/alice &      # blocks, prints each message",
    "echo hi > /mnt/mq/chat/alice  # one message",
    "echo replay all > /mnt/mq/chat/ctl",
    ": > /mnt/mq/chat/alice        # end of file for alice's readers",
    "fsbus mq umount /mnt/mq",
    "# Writes acknowledged before their commit (faster; see --write-behind)",
    "fsbus mq mount /dev/shm/mq /mnt/mq --write-behind &",
  ],
  positionals: { min: 2, max: 2, names: "DIR MOUNTPOINT" },
};

/** `fsbus mq umount`. */
export const UMOUNT: CommandSpec = {
  name: "fsbus mq umount",
  usage: "MOUNTPOINT",
  summary: "Unmount an mq tree mounted by fsbus mq mount: blocked readers get end of file " +
    "and the server exits.",
  options: {},
  examples: ["fsbus mq umount /mnt/mq"],
  positionals: { min: 1, max: 1, names: "MOUNTPOINT" },
};

function selfCommand(): string[] {
  const exec = Deno.execPath();
  const base = exec.slice(exec.lastIndexOf("/") + 1);
  if (/^deno(\.exe)?$/.test(base)) {
    return [exec, "run", "-A", "--quiet", new URL("../cli.ts", import.meta.url).href];
  }
  return [exec];
}

/**
 * Runs `fsbus mq mount DIR MOUNTPOINT`.
 *
 * @param values The options.
 * @param positionals DIR and MOUNTPOINT.
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mountCommand, umountCommand } from "./mq_mount.ts";
 * import { mountAt } from "../sys/fuse/mod.ts";
 * import { mq } from "./mq.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * Deno.mkdirSync(`${dir}/mnt`);
 * await mq(["mkgroup", `${dir}/g`]);
 * const serving = mountCommand({}, [`${dir}/g`, `${dir}/mnt`]); // serves until unmounted
 * for (const end = Date.now() + 10_000; mountAt(`${dir}/mnt`) === undefined;) {
 *   if (Date.now() > end) throw new Error("not mounted");
 *   await new Promise((r) => setTimeout(r, 10));
 * }
 * assert.equal(await umountCommand({}, [`${dir}/mnt`]), 0);
 * assert.equal(await serving, 0);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export async function mountCommand(values: Values, [dir, mp]: string[]): Promise<number> {
  const pidFile = stringOption(values, "pid-file");
  const statusFile = stringOption(values, "status-file");
  const writeBehind = values["write-behind"] === true;
  const spinUs = intOption(values, "spin-us", 0);
  if (spinUs !== undefined && spinUs > MAX_SPIN_US) {
    throw new UsageError(`Cannot use "${spinUs}" for "--spin-us": at most ${MAX_SPIN_US}`);
  }
  const extra = [
    ...(writeBehind ? ["--write-behind"] : []),
    ...(spinUs !== undefined ? ["--spin-us", String(spinUs)] : []),
  ];
  if (values.daemon) return await daemonize(dir!, mp!, pidFile, extra);
  let m;
  try {
    m = await mountGroups(dir!, mp!, {
      onLog: (line) => warn(line),
      blockMs: 250,
      handleSignals: true,
      writeBehind,
      ...(spinUs !== undefined ? { spinUs } : {}),
    });
  } catch (err) {
    if (statusFile) Deno.writeTextFileSync(statusFile, (err as Error).message);
    throw err;
  }
  if (pidFile) Deno.writeTextFileSync(pidFile, `${Deno.pid}\n`);
  if (statusFile) Deno.writeTextFileSync(statusFile, "ok");
  try {
    await m.done;
  } finally {
    if (pidFile) {
      try {
        Deno.removeSync(pidFile);
      } catch {
        // gone already
      }
    }
  }
  return 0;
}

async function daemonize(
  dir: string,
  mp: string,
  pidFile: string | undefined,
  extra: string[],
): Promise<number> {
  const status = Deno.makeTempFileSync({ prefix: "fsbus-mount-" });
  try {
    const [exec, ...pre] = selfCommand();
    const child = new Deno.Command(exec!, {
      args: [
        ...pre,
        "mq",
        "mount",
        dir,
        mp,
        "--status-file",
        status,
        ...(pidFile ? ["--pid-file", pidFile] : []),
        ...extra,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
    let exited = false;
    child.status.then(() => exited = true);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const text = Deno.readTextFileSync(status);
      if (text === "ok") break;
      if (text !== "") throw new FsbusError("io", text);
      if (exited) throw new FsbusError("io", `Cannot mount on "${mp}": the server exited`);
      if (Date.now() > deadline) {
        throw new FsbusError("io", `Cannot mount on "${mp}": the server did not start in 30 s`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    letGo(child);
    return 0;
  } finally {
    Deno.removeSync(status);
  }
}

/**
 * Runs `fsbus mq umount MOUNTPOINT`.
 *
 * @param _values No options.
 * @param positionals MOUNTPOINT.
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { umountCommand } from "./mq_mount.ts";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * assert.throws(() => umountCommand({}, [dir]), /nothing is mounted there/);
 * Deno.removeSync(dir);
 * ```
 */
export function umountCommand(_values: Values, [mp]: string[]): Promise<number> {
  const abs = (mp!.startsWith("/") ? mp! : `${Deno.cwd()}/${mp}`).replace(/(.)\/+$/, "$1");
  const m = mountAt(abs);
  if (m === undefined) {
    throw new FsbusError("not_found", `Cannot unmount "${mp}": nothing is mounted there`);
  }
  if (m.fstype !== `fuse.${MQ_SUBTYPE}`) {
    throw new UsageError(`Cannot unmount "${mp}": not an fsbus mq mount (it is ${m.fstype})`);
  }
  unmountPath(abs, Deno.uid() === 0 ? "mount" : "fusermount3", true);
  return Promise.resolve(0);
}

/**
 * The directory behind a path inside an mq mount (for `pin -m`), or the path itself.
 *
 * @param path A path.
 * @returns Where to work on disk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveMounted } from "./mq_mount.ts";
 * // A path in an mq mount resolves to the group directory behind it; others stay as they are.
 * assert.equal(resolveMounted("/dev/shm/not-a-mount"), "/dev/shm/not-a-mount");
 * ```
 */
export function resolveMounted(path: string): string {
  return backingPath(path) ?? path;
}
