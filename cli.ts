/**
 * The `fsbus` command: publish/subscribe through the Linux file system.
 *
 * Run it with `deno run -A jsr:@x/fsbus COMMAND ...`, as a compiled executable, or from a
 * checkout with `deno run -A cli.ts COMMAND ...`. Each command family lives in `cli/` and is
 * loaded only when used, so a one-shot `fsbus pub` starts fast.
 *
 * @example Run the CLI from a program
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "@x/fsbus/cli";
 * const bus = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const code = await main(["pub", bus, "hello"]); // as `fsbus pub BUS hello`
 * assert.equal(code, 0);
 * assert.equal([...Deno.readDirSync(bus)].filter((e) => !e.name.startsWith(".")).length, 1);
 * Deno.removeSync(bus, { recursive: true });
 * ```
 *
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import { FsbusError } from "./types.ts";
import { isBrokenPipe, out, warn } from "./cli/_output.ts";
import { unknownCommand } from "./cli/_args.ts";

/**
 * Imports a command's module. The specifier is made at run time on purpose: Deno walks the
 * module graph of every literal `import("...")` at start-up, whether it runs or not, and the
 * command modules reach every transport (about 100 modules, a quarter of a one-shot `pub`'s
 * instructions). `compile.sh` names them with `--include` for the executable.
 */
function importCommand<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href);
}

/** The directory bus's commands (pub, sub, init, gc). */
const msgfsCommands = () => importCommand<typeof import("./cli/msgfs.ts")>("./cli/msgfs.ts");
/** baf's commands (pubmsg, submsg). */
const bafCommands = () => importCommand<typeof import("./cli/baf.ts")>("./cli/baf.ts");

/** `fsbus completions`. */
const completionsCommand = () =>
  importCommand<typeof import("./cli/completions.ts")>("./cli/completions.ts");

/** A command's entry point: takes the arguments after its name, returns the exit code. */
type Entry = (args: string[]) => Promise<number>;

interface CommandInfo {
  summary: string;
  load: () => Promise<Entry>;
}

const COMMANDS: Record<string, CommandInfo> = {
  pub: {
    summary: "Publish a message to a directory bus (msgfs)",
    load: async () => (await msgfsCommands()).pub,
  },
  sub: {
    summary: "Subscribe to a directory bus (msgfs) and print its messages",
    load: async () => (await msgfsCommands()).sub,
  },
  init: {
    summary: "Create a directory bus with its access mode and retention",
    load: async () => (await msgfsCommands()).init,
  },
  gc: {
    summary: "Remove expired messages from a directory bus now",
    load: async () => (await msgfsCommands()).gc,
  },
  filebus: {
    summary: "A regular file as a multicast named pipe (filebus-compatible)",
    load: async () =>
      (await importCommand<typeof import("./cli/filebus.ts")>("./cli/filebus.ts")).filebus,
  },
  mq: {
    summary: "Buffered message stream groups: ctl, order, replay (mq(4))",
    load: async () => (await importCommand<typeof import("./cli/mq.ts")>("./cli/mq.ts")).mq,
  },
  pin: {
    summary: "Detachable sessions over mq stream groups (pin(1))",
    load: async () => (await importCommand<typeof import("./cli/pin.ts")>("./cli/pin.ts")).pin,
  },
  fanout: {
    summary: "One-to-many ring buffers (/dev/fanout semantics)",
    load: async () =>
      (await importCommand<typeof import("./cli/fanout.ts")>("./cli/fanout.ts")).fanout,
  },
  messagefs: {
    summary: "Nodes and groups: messages and .all broadcasts, local or NATS",
    load: async () =>
      (await importCommand<typeof import("./cli/messagefs.ts")>("./cli/messagefs.ts")).messagefs,
  },
  pubmsg: {
    summary: "Publish stdin lines to a topic (baf)",
    load: async () => (await bafCommands()).pubmsg,
  },
  submsg: {
    summary: "Print the lines of several topics (baf)",
    load: async () => (await bafCommands()).submsg,
  },
  bridge: {
    summary: "Carry messages between any two buses, across machines over NATS",
    load: async () =>
      (await importCommand<typeof import("./cli/bridge.ts")>("./cli/bridge.ts")).bridgeCommand,
  },
  status: {
    summary: "Say what a path is (bus, group, file, topic) and what it holds",
    load: async () =>
      (await importCommand<typeof import("./cli/status.ts")>("./cli/status.ts")).status,
  },
  completions: {
    summary: "Print a shell completion script (bash, zsh, fish)",
    load: async () => {
      const { completions } = await completionsCommand();
      const summaries = Object.fromEntries(
        Object.entries(COMMANDS).map(([n, c]) => [n, c.summary]),
      );
      return (args) => completions(args, summaries);
    },
  },
};

/** The package version, from deno.json. */
export const VERSION: string = denoJson.version;

function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  const rows = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`);
  return [
    `fsbus ${VERSION}: publish/subscribe through the Linux file system`,
    "",
    "Usage: fsbus COMMAND [ARGS...]",
    "       fsbus COMMAND --help",
    "",
    "Commands:",
    ...rows,
    "",
    "Options:",
    "  -h, --help     Show this help",
    "  -V, --version  Show the version",
    "",
    "Readers (sub, mq read, mq cat, fanout sub, submsg, messagefs join) print one",
    "message per line; --raw writes exact bytes, --json one object per message;",
    "-n N stops after N messages; --exec CMD runs a command per message. filebus",
    "consumer takes the same but writes chunks exactly by default, as the original",
    "filebus. Writers (pub, mq write, fanout pub, pubmsg, messagefs send) take a",
    "MESSAGE argument, standard input, or --lines.",
    "Durations: 500ms, 30s, 5m, 1h30m, 2d; a bare number is seconds. Put -- before",
    "an argument that starts with -.",
    "",
    "Examples:",
    "  # Watch a directory bus and print each message as it arrives",
    "  fsbus sub /dev/shm/bus",
    "  # Publish from another terminal, or with plain shell",
    "  fsbus pub /dev/shm/bus 'hello'",
    "  echo hello > /dev/shm/bus/greeting",
    "  # Help on one command",
    "  fsbus help mq write",
    "",
  ].join("\n");
}

/**
 * Runs the CLI with `args` and returns the exit code: 0 ok, 1 failure, 2 usage.
 * Errors are reported on stderr as one line, `fsbus: ...`.
 *
 * @param args The command line, without the program name.
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./cli.ts";
 * assert.equal(await main(["--version"]), 0); // prints the version; a program would Deno.exit it
 * assert.equal(await main(["no-such-command"]), 2); // a usage error, said on stderr
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    if (command === "help" && rest.length > 0) {
      // "fsbus help mq write" is "fsbus mq write --help".
      return await main([...rest, "--help"]);
    }
    if (command === undefined || command === "-h" || command === "--help" || command === "help") {
      out(topHelp());
      return command === undefined ? 2 : 0;
    }
    if (command === "-V" || command === "--version" || command === "version") {
      out(`fsbus ${VERSION}\n`);
      return 0;
    }
    const info = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!info) throw unknownCommand("fsbus", command, Object.keys(COMMANDS));
    return await (await info.load())(rest);
  } catch (err) {
    return report(err);
  }
}

/**
 * Reports an error the way every command does, and returns its exit code.
 *
 * @param err The caught error.
 * @returns The exit code: the error's own for an FsbusError, 0 for a closed stdout, else 1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { report } from "./cli.ts";
 * import { UsageError } from "./types.ts";
 * assert.equal(report(new Error("boom")), 1); // prints "fsbus: boom"
 * assert.equal(report(new UsageError('Missing argument for "fsbus pub": expected BUS')), 2);
 * ```
 */
export function report(err: unknown): number {
  if (isBrokenPipe(err)) return 0;
  if (err instanceof FsbusError) {
    warn(err.message);
    return err.exitCode;
  }
  if (err instanceof Deno.errors.NotCapable) {
    warn(`${err.message.split("\n")[0]} (run with -A)`);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  warn(message.split("\n")[0]!);
  if (Deno.env.get("FSBUS_DEBUG") && err instanceof Error && err.stack) {
    console.error(err.stack);
  }
  return 1;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
