/**
 * Who holds a ring's writer lock or a client slot: a process id plus its start time, so that
 * a dead holder is recognised even after its pid has been reused.
 *
 * @module
 */

/** Process start times are compared on 31 bits (they are clock ticks since boot). */
const START_MASK = 0x7fffffff;

let self: { pid: number; start: number } | undefined;

function readStat(pid: number | "self"): { state: string; start: number } | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "?", start: Number(fields[19]) & START_MASK };
}

/**
 * This process's identity: its pid and its start time (31 bits).
 *
 * @returns The identity, read once.
 */
export function selfIdentity(): { pid: number; start: number } {
  if (self === undefined) {
    let start = 0;
    try {
      start = readStat("self")?.start ?? 0;
    } catch {
      // /proc unreadable: start time 0 means "unknown", never compared
    }
    self = { pid: Deno.pid, start };
  }
  return self;
}

/**
 * Whether the process `pid` that started at `start` still runs. Zombies count as dead.
 * When /proc cannot be read, the answer is "alive": a lock is never stolen on a guess.
 *
 * @param pid The process id.
 * @param start Its start time as recorded (0 when unknown: only the pid is checked).
 * @returns False only when the process is known to be gone.
 */
export function isAlive(pid: number, start: number): boolean {
  if (pid <= 0) return false;
  let st;
  try {
    st = readStat(pid);
  } catch {
    return true;
  }
  if (st === undefined) return false;
  if (st.state === "Z" || st.state === "X" || st.state === "x") return false;
  return start === 0 || st.start === 0 || st.start === (start & START_MASK);
}
