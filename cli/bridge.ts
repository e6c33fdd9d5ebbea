/**
 * `fsbus bridge FROM TO [--both]`: carries messages between any two buses, on one machine or
 * across machines through NATS and JetStream; `--config FILE` runs many bridges at once.
 *
 * @module
 */

import { type Bridge, bridge, parseConfig, statusLine } from "../transports/bridge/mod.ts";
import type { BridgeOptions, BridgeSpec } from "../transports/bridge/mod.ts";
import { FsbusError, UsageError } from "../types.ts";
import { type CommandSpec, helpText, parse, parseDuration, stringOption } from "./_args.ts";
import { out, warn } from "./_output.ts";

const SPEC: CommandSpec = {
  name: "fsbus bridge",
  usage: "FROM TO [options]\n       fsbus bridge --config FILE [options]",
  summary: [
    "Carries every message of FROM to TO (and back with --both), exactly once, on",
    "one machine or across machines. Endpoints: dir:PATH, dir:PATH#TOPIC, mq:GROUP,",
    "mq:GROUP/STREAM, fanout:TOPIC, filebus:FILE, nats://HOST:PORT[,...]/SUBJECT",
    "(core NATS, live and lossy) and jetstream://HOST:PORT[,...]/STREAM/SUBJECT",
    "(stream made when missing). A whole bus or group maps each topic or stream to",
    "SUBJECT.NAME (the root to SUBJECT._). Unreachable servers are retried until",
    "one answers. Stops on SIGINT/SIGTERM after delivering what it took.",
  ].join("\n"),
  options: {
    both: { type: "boolean", help: "Carry messages both ways" },
    config: {
      type: "string",
      value: "FILE",
      help: "Run the bridges listed in FILE (FROM TO [--both] per line)",
    },
    root: { type: "string", value: "DIR", help: "Topic root of fanout: endpoints" },
    state: {
      type: "string",
      value: "DIR",
      help: "Where positions and sent ids persist",
      default: "~/.local/state/fsbus/bridge",
    },
    "no-state": { type: "boolean", help: "Keep no state (a restart may repeat or miss messages)" },
    name: {
      type: "string",
      value: "NAME",
      help: "The bridge's identity (default: from host and buses)",
    },
    history: { type: "boolean", help: "On a first run, also carry what a local bus already holds" },
    lossless: { type: "boolean", help: "filebus: endpoints in back-pressure mode" },
    status: {
      type: "string",
      value: "DURATION",
      help: "Print a one-line status on stderr this often (and on exit)",
    },
    quiet: { type: "boolean", short: "q", help: "No connection notices" },
  },
  examples: [
    "# This machine's directory bus on a JetStream cluster, both ways",
    "fsbus bridge dir:/dev/shm/bus jetstream://a:4222,b:4222/APP/app.events --both",
    "# On another machine, the same stream into its bus",
    "fsbus bridge jetstream://c:4222/APP/app.events dir:/dev/shm/bus --both",
    "# An mq session group across machines",
    "fsbus bridge mq:/dev/shm/session jetstream://a:4222/PIN/pin.s1 --history",
    "# On one machine: a fanout topic into a directory bus topic",
    "fsbus bridge fanout:news dir:/dev/shm/bus#news --root /dev/shm/topics",
    "# Many bridges, a status line every 10 seconds",
    "fsbus bridge --config /etc/fsbus/bridges.conf --status 10s",
  ],
  positionals: { min: 0, max: 2, names: "FROM TO" },
};

/**
 * Runs `fsbus bridge ...`.
 *
 * @param args The arguments after "bridge".
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bridgeCommand } from "./bridge.ts";
 * // It runs until stopped (SIGINT or SIGTERM); bad input fails at once.
 * await assert.rejects(bridgeCommand(["dir:/dev/shm/a"]), /Missing/);
 * assert.equal(await bridgeCommand(["--help"]), 0);
 * ```
 */
export async function bridgeCommand(args: string[]): Promise<number> {
  const parsed = parse(SPEC, args);
  if (parsed.help) {
    out(helpText(SPEC));
    return 0;
  }
  const { values, positionals } = parsed;
  const config = stringOption(values, "config");
  let specs: BridgeSpec[];
  if (config !== undefined) {
    if (positionals.length > 0) {
      throw new UsageError(
        'Cannot use FROM TO together with "--config FILE" in "fsbus bridge": give one or the other',
      );
    }
    let text: string;
    try {
      text = Deno.readTextFileSync(config);
    } catch (err) {
      throw new FsbusError("not_found", `Cannot read "${config}": ${(err as Error).message}`);
    }
    specs = parseConfig(text, config);
  } else {
    if (positionals.length !== 2) {
      throw new UsageError('Missing argument for "fsbus bridge": expected FROM TO');
    }
    const name = stringOption(values, "name");
    specs = [{
      from: positionals[0]!,
      to: positionals[1]!,
      both: values.both === true,
      history: values.history === true,
      ...(name === undefined ? {} : { name }),
    }];
  }
  const every = stringOption(values, "status");
  const everyMs = every === undefined ? undefined : parseDuration(every, "--status");
  const root = stringOption(values, "root");
  const state = stringOption(values, "state");
  const quiet = values.quiet === true;
  const abort = new AbortController();
  const stop = () => abort.abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const bridges: Bridge[] = [];
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    for (const spec of specs) {
      const label = specs.length > 1 ? `${spec.from} -> ${spec.to}: ` : "";
      const options: BridgeOptions = {
        both: spec.both || values.both === true,
        history: spec.history || values.history === true,
        lossless: values.lossless === true,
        // One bridge, one way: its directory-bus source may block this process's thread.
        ...(specs.length === 1 && !spec.both && values.both !== true ? { blockMs: 20 } : {}),
        signal: abort.signal,
        onError: (err) => warn(`${label}${err.message} (skipped)`),
        ...(quiet ? {} : { onNotice: (text: string) => warn(`${label}${text}`) }),
        ...(spec.name === undefined ? {} : { name: spec.name }),
        ...(root === undefined ? {} : { root }),
        ...(values["no-state"] === true ? { stateDir: false as const } : {}),
        ...(state === undefined ? {} : { stateDir: state }),
      };
      try {
        bridges.push(await bridge(spec.from, spec.to, options));
      } catch (err) {
        if (abort.signal.aborted) return 0;
        throw err;
      }
    }
    if (!quiet) warn(`bridging: ${bridges.map((b) => statusLine(b.status)).join(" | ")}`);
    if (everyMs !== undefined) {
      timer = setInterval(() => {
        for (const b of bridges) warn(`status: ${statusLine(b.status)}`);
      }, everyMs);
    }
    const aborted = new Promise<void>((r) => abort.signal.addEventListener("abort", () => r()));
    await Promise.race([Promise.all(bridges.map((b) => b.done)), aborted]);
    return 0;
  } finally {
    if (timer !== undefined) clearInterval(timer);
    for (const b of bridges) await b.close();
    if (everyMs !== undefined) { for (const b of bridges) warn(`status: ${statusLine(b.status)}`); }
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
}

/** The command of this file, for shell completion: command → subcommand ("" for none) → spec. */
export const SPECS: Record<string, Record<string, CommandSpec>> = { bridge: { "": SPEC } };
