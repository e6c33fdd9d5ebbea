/**
 * Helpers shared by the tests: temp dirs, running the CLI as a subprocess, and waiting on
 * conditions with a deadline (never fixed sleeps).
 *
 * @module
 */

/** The repository root. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The CLI entry point. */
export const CLI: string = `${ROOT}/cli.ts`;

/** Whether this machine has `/dev/fuse` (the FUSE tests need it, and most need root too). */
export const HAVE_FUSE: boolean = (() => {
  try {
    Deno.statSync("/dev/fuse");
    return true;
  } catch {
    return false;
  }
})();

/**
 * Waits until process `pid` holds `path` open (a reader's replay position is then fixed).
 *
 * @param pid The process.
 * @param path The path as /proc/PID/fd shows it.
 */
export async function waitOpened(pid: number, path: string): Promise<void> {
  await waitFor(() => {
    try {
      for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
        try {
          if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`) === path) return true;
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      return false;
    }
    return false;
  }, `process ${pid} to open ${path}`);
}

/**
 * Makes a temporary directory (on tmpfs unless `base` says otherwise) that is removed when
 * disposed.
 *
 * @param base The parent directory.
 * @returns The path, disposable with `using`.
 */
export function tempDir(base = "/dev/shm"): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ dir: base, prefix: "fsbus-test-" });
  return {
    path,
    [Symbol.dispose]() {
      try {
        Deno.removeSync(path, { recursive: true });
      } catch {
        // already gone
      }
    },
  };
}

/** What a finished subprocess left. */
export interface RunResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
  /** stdout decoded as UTF-8. */
  text: string;
}

/**
 * Runs `fsbus ARGS...` (as `deno run -A cli.ts`) to completion.
 *
 * @param args The command line.
 * @param options Standard input bytes or text, extra environment.
 * @returns Exit code, stdout and stderr.
 */
export async function fsbus(
  args: string[],
  options: { stdin?: Uint8Array | string; env?: Record<string, string>; cwd?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, ...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await w.close();
  }
  const { code, stdout, stderr } = await child.output();
  return {
    code,
    stdout,
    stderr: new TextDecoder().decode(stderr),
    text: new TextDecoder().decode(stdout),
  };
}

/**
 * Starts `fsbus ARGS...` in the background with piped stdio.
 *
 * @param args The command line.
 * @param env Extra environment.
 * @returns The child process.
 */
export function spawnFsbus(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CLI, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
}

/**
 * Whether something (of any kind, a dangling symlink included) is at `path`.
 *
 * @param path The path.
 * @returns True when `lstat` finds it.
 */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until `cond()` returns true (it may be async), checking every few milliseconds;
 * throws after `timeoutMs`.
 *
 * @param cond The condition.
 * @param what What is awaited, for the error message.
 * @param timeoutMs The deadline.
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Collects a child's stdout as it arrives, so tests can wait on its contents.
 *
 * @param stream The readable stream.
 * @returns An object whose `bytes()`/`text()` return everything read so far, and `done`,
 *   which resolves when the stream ends.
 */
export function collect(stream: ReadableStream<Uint8Array>): {
  bytes(): Uint8Array;
  text(): string;
  done: Promise<void>;
} {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const done = (async () => {
    for await (const c of stream) {
      chunks.push(c);
      total += c.length;
    }
  })();
  const bytes = () => {
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  };
  return { bytes, text: () => new TextDecoder().decode(bytes()), done };
}

/**
 * Runs a shell command line with bash and returns its exit code and output.
 *
 * @param script The script.
 * @param options Standard input, environment.
 * @returns Exit code, stdout and stderr.
 */
export async function sh(
  script: string,
  options: { stdin?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  const child = new Deno.Command("bash", {
    args: ["-c", script],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const { code, stdout, stderr } = await child.output();
  return {
    code,
    stdout,
    stderr: new TextDecoder().decode(stderr),
    text: new TextDecoder().decode(stdout),
  };
}

/**
 * How many inotify watches a process holds, from /proc/PID/fdinfo: lets a test wait until a
 * subscriber is really watching before it publishes.
 *
 * @param pid The process.
 * @returns The number of watches (0 when the process is gone).
 */
export function inotifyWatches(pid: number): number {
  let n = 0;
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let target = "";
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
      } catch {
        continue;
      }
      if (target !== "anon_inode:inotify") continue;
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
      n += info.split("\n").filter((l) => l.startsWith("inotify wd:")).length;
    }
  } catch {
    return 0;
  }
  return n;
}

/**
 * The targets of this process's open file descriptors that are inotify instances or
 * eventfds: what a subscription must give back when it ends.
 *
 * @returns The count of such descriptors.
 */
export function openWatchFds(): number {
  let n = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      const t = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
      if (t === "anon_inode:inotify" || t === "anon_inode:[eventfd]") n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

/**
 * Stops a child process (SIGTERM, then SIGKILL) and waits for it, ignoring errors.
 *
 * @param child The process.
 */
export async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, 2000);
  await child.status;
  clearTimeout(timer);
  for (const name of ["stdout", "stderr"] as const) {
    try {
      await child[name].cancel();
    } catch {
      // not piped, already consumed, or locked by a reader
    }
  }
}

function reachableByOthers(path: string, fileBits: number): boolean {
  try {
    if ((Deno.statSync(path).mode! & fileBits) !== fileBits) return false;
    for (
      let dir = path.slice(0, path.lastIndexOf("/"));
      dir;
      dir = dir.slice(0, dir.lastIndexOf("/"))
    ) {
      if ((Deno.statSync(dir).mode! & 0o001) === 0) return false;
    }
    return true;
  } catch {
    return false;
  }
}

let forOthers: { deno: string; cli: string } | undefined;

/**
 * A Deno executable and a `cli.ts` that another user (uid 65534) can run: the real ones when
 * their directories let others in, else copies in a world-readable temp directory (removed
 * when the test process ends). Lets permission tests run from a checkout under /root.
 *
 * @returns Paths to the executable and the entry point.
 */
export function runnableByOthers(): { deno: string; cli: string } {
  if (forOthers) return forOthers;
  let deno = Deno.execPath();
  let cli = CLI;
  const okDeno = reachableByOthers(deno, 0o005);
  const okCli = reachableByOthers(CLI, 0o004);
  if (!okDeno || !okCli) {
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "fsbus-others-" });
    Deno.chmodSync(dir, 0o755);
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // already gone
      }
    });
    if (!okDeno) {
      deno = `${dir}/deno`;
      Deno.copyFileSync(Deno.execPath(), deno);
      Deno.chmodSync(deno, 0o755);
    }
    if (!okCli) {
      const copy = (from: string, to: string) => {
        const info = Deno.statSync(from);
        if (info.isDirectory) {
          Deno.mkdirSync(to, { mode: 0o755 });
          Deno.chmodSync(to, 0o755);
          for (const e of Deno.readDirSync(from)) copy(`${from}/${e.name}`, `${to}/${e.name}`);
        } else {
          Deno.copyFileSync(from, to);
          Deno.chmodSync(to, 0o644);
        }
      };
      for (const part of ["cli.ts", "types.ts", "deno.json", "cli", "transports", "sys"]) {
        copy(`${ROOT}/${part}`, `${dir}/${part}`);
      }
      cli = `${dir}/cli.ts`;
    }
  }
  return (forOthers = { deno, cli });
}
