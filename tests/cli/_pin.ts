/**
 * Helpers shared by the pin tests: a session's state file, and finding and ending the
 * processes a session left behind.
 *
 * @module
 */

import { waitFor } from "../_helpers.ts";

/** A session's `.pin.json`, or undefined while it cannot be read. */
export function readState(root: string, id: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${root}/${id}/.pin.json`));
  } catch {
    return undefined;
  }
}

/** Whether `pid` runs (a zombie does not count). */
export function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

/** Processes whose session id is `sid` (the pin command's session), with their commands. */
export function sessionProcesses(sid: number): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[3]) !== sid || fields[0] === "Z") continue;
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0").join(" ").trim();
      found.push({ pid: Number(e.name), cmd });
    } catch {
      // gone
    }
  }
  return found;
}

/** Kills whatever a session left running (supervisor, command and its session), by PID. */
export async function ensureGone(root: string, id: string): Promise<void> {
  const st = readState(root, id);
  const pids = [st?.supervisor, st?.pid].filter((p): p is number => typeof p === "number");
  if (typeof st?.pid === "number") pids.push(...sessionProcesses(st.pid).map((p) => p.pid));
  try {
    await waitFor(() => pids.every((p) => !alive(p)), "the session's processes to exit", 5000);
  } catch {
    for (const p of pids) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}
