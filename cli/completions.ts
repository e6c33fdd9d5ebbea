/**
 * `fsbus completions bash|zsh|fish`: a completion script for the shell, built from the
 * commands' own specs (so it lists exactly the options help shows).
 *
 * @module
 */

import { type CommandSpec, helpText, parse, unknownCommand } from "./_args.ts";
import { out } from "./_output.ts";

/** Command → subcommand ("" for a command without subcommands) → spec. */
type Specs = Record<string, Record<string, CommandSpec>>;

const SPEC: CommandSpec = {
  name: "fsbus completions",
  usage: "bash|zsh|fish",
  summary: "Print a completion script for the shell: commands, subcommands and options " +
    "complete with Tab, and file names where an argument is a path.",
  options: {},
  examples: [
    "# bash: for this shell, or for every new one",
    "source <(fsbus completions bash)",
    "fsbus completions bash > ~/.local/share/bash-completion/completions/fsbus",
    "# zsh (uses bashcompinit; with fpath+=(~/.zfunc) before compinit)",
    "fsbus completions zsh > ~/.zfunc/_fsbus",
    "# fish",
    "fsbus completions fish > ~/.config/fish/completions/fsbus.fish",
  ],
  positionals: { min: 1, max: 1, names: "bash|zsh|fish" },
};

/** pin has its own option parser: its flags, for completion. */
const PIN_FLAGS: [string, string][] = [
  ["-c", "Create a session running a command"],
  ["-a", "Attach to a session"],
  ["-w", "Write to a session's input"],
  ["-l", "List sessions"],
  ["-m", "Where sessions live"],
  ["-h", "Show help"],
];

async function loadSpecs(): Promise<Specs> {
  const modules = await Promise.all([
    import("./msgfs.ts").then((m) => m.SPECS),
    import("./mq.ts").then((m) => m.SPECS),
    import("./fanout.ts").then((m) => m.COMPLETION_SPECS),
    import("./baf.ts").then((m) => m.COMPLETION_SPECS),
    import("./filebus.ts").then((m) => m.SPECS),
    import("./status.ts").then((m) => m.SPECS),
    import("./messagefs.ts").then((m) => m.SPECS),
    import("./bridge.ts").then((m) => m.SPECS),
  ]);
  return Object.assign({}, ...modules);
}

function flags(spec: CommandSpec): [string, string][] {
  const list: [string, string][] = [];
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.hidden) continue;
    list.push([`--${name}`, o.help]);
    if (o.short) list.push([`-${o.short}`, o.help]);
  }
  list.push(["--help", "Show help"]);
  return list;
}

function bash(commands: Record<string, string>, specs: Specs): string {
  const top = ["help", ...Object.keys(commands)].join(" ");
  const cases: string[] = [];
  for (const [cmd, subs] of Object.entries(specs)) {
    const names = Object.keys(subs).filter((s) => s !== "");
    if (names.length === 0) {
      cases.push(`    ${cmd}) opts="${flags(subs[""]!).map(([f]) => f).join(" ")}" ;;`);
      continue;
    }
    const inner = names.map((s) =>
      `        ${s}) opts="${flags(subs[s]!).map(([f]) => f).join(" ")}" ;;`
    );
    cases.push(
      `    ${cmd})`,
      `      if [ "$COMP_CWORD" -eq 2 ]; then`,
      `        COMPREPLY=($(compgen -W "${names.join(" ")} --help" -- "$cur")); return`,
      `      fi`,
      `      case "\${COMP_WORDS[2]}" in`,
      ...inner,
      `      esac ;;`,
    );
  }
  cases.push(`    pin) opts="${PIN_FLAGS.map(([f]) => f).join(" ")}" ;;`);
  cases.push(`    help) COMPREPLY=($(compgen -W "${top}" -- "$cur")); return ;;`);
  return `# fsbus completion for bash: source <(fsbus completions bash)
_fsbus() {
  local cur=\${COMP_WORDS[COMP_CWORD]} opts=""
  COMPREPLY=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${top} --help --version" -- "$cur")); return
  fi
  case "\${COMP_WORDS[1]}" in
${cases.join("\n")}
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$opts" -- "$cur")); fi
}
complete -o default -F _fsbus fsbus
`;
}

function zsh(commands: Record<string, string>, specs: Specs): string {
  return `#compdef fsbus
# fsbus completion for zsh (through bashcompinit)
autoload -U +X bashcompinit && bashcompinit
${bash(commands, specs).split("\n").slice(1).join("\n")}`;
}

function quote(s: string): string {
  return `'${s.replace(/'/g, "\\'")}'`;
}

function fish(commands: Record<string, string>, specs: Specs): string {
  const lines = ["# fsbus completion for fish", "complete -c fsbus -f"];
  const top = Object.keys(commands);
  for (const [name, summary] of Object.entries(commands)) {
    lines.push(
      `complete -c fsbus -n "not __fish_seen_subcommand_from ${top.join(" ")}" -a ${name} -d ${
        quote(summary)
      }`,
    );
  }
  const option = (cond: string, flag: string, help: string) => {
    const f = flag.startsWith("--") ? `-l ${flag.slice(2)}` : `-s ${flag.slice(1)}`;
    lines.push(`complete -c fsbus -n ${quote(cond)} ${f} -d ${quote(help.split(/[.:(]/)[0]!)}`);
  };
  for (const [cmd, subs] of Object.entries(specs)) {
    const names = Object.keys(subs).filter((s) => s !== "");
    if (names.length === 0) {
      for (const [f, h] of flags(subs[""]!)) option(`__fish_seen_subcommand_from ${cmd}`, f, h);
      lines.push(`complete -c fsbus -n "__fish_seen_subcommand_from ${cmd}" -F`);
      continue;
    }
    lines.push(
      `complete -c fsbus -n "__fish_seen_subcommand_from ${cmd}; and not __fish_seen_subcommand_from ${
        names.join(" ")
      }" -a ${quote(names.join(" "))}`,
    );
    for (const s of names) {
      const cond = `__fish_seen_subcommand_from ${cmd}; and __fish_seen_subcommand_from ${s}`;
      for (const [f, h] of flags(subs[s]!)) option(cond, f, h);
      lines.push(`complete -c fsbus -n ${quote(cond)} -F`);
    }
  }
  for (const [f, h] of PIN_FLAGS) option("__fish_seen_subcommand_from pin", f, h);
  return lines.join("\n") + "\n";
}

/**
 * Runs `fsbus completions SHELL`.
 *
 * @param args The arguments after "completions".
 * @param commands Every top-level command with its one-line summary.
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { completions } from "./completions.ts";
 * assert.equal(await completions(["bash"], { pub: "Publish", sub: "Subscribe" }), 0); // prints it
 * await assert.rejects(completions(["tcsh"], {}));
 * ```
 */
export async function completions(
  args: string[],
  commands: Record<string, string>,
): Promise<number> {
  const parsed = parse(SPEC, args);
  if (parsed.help) {
    out(helpText(SPEC));
    return 0;
  }
  const shell = parsed.positionals[0]!;
  const make = { bash, zsh, fish }[shell];
  if (!make) throw unknownCommand("fsbus completions", shell, ["bash", "zsh", "fish"]);
  out(make(commands, await loadSpecs()));
  return 0;
}
