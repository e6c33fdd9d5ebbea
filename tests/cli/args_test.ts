import assert from "node:assert/strict";
import { type CommandSpec, parse } from "../../cli/_args.ts";
import { UsageError } from "../../types.ts";

// parse() reads the plain forms itself and leaves the rest (grouped short switches, a switch
// given a value, a value-taking option given none) to node:util's parseArgs: both paths give
// what parseArgs alone gave before.
const spec: CommandSpec = {
  name: "fsbus x",
  usage: "DIR [options]",
  summary: "A command for the test.",
  options: {
    count: { type: "string", short: "n", value: "N", help: "A value" },
    raw: { type: "boolean", short: "r", help: "A switch" },
    json: { type: "boolean", short: "j", help: "Another switch" },
    topic: { type: "string", short: "t", multiple: true, help: "Repeatable" },
  },
  examples: [],
  positionals: { min: 1, max: 2 },
};

function ok(args: string[], values: Record<string, unknown>, positionals: string[]) {
  assert.deepEqual(parse(spec, args), { help: false, values, positionals }, args.join(" "));
}

function fails(args: string[], message: string) {
  assert.throws(() => parse(spec, args), (e) => e instanceof UsageError && e.message === message);
}

Deno.test("parse() reads positionals, --, NAME=VALUE, switches and repeats", () => {
  ok(["a", "b"], {}, ["a", "b"]);
  ok(["--count", "3", "a"], { count: "3" }, ["a"]);
  ok(["-n5", "a"], { count: "5" }, ["a"]);
  ok(["-n", "5", "a"], { count: "5" }, ["a"]);
  ok(["--count=", "a"], { count: "" }, ["a"]);
  ok(["--count=-1", "a"], { count: "-1" }, ["a"]);
  ok(["-r", "--json", "a"], { raw: true, json: true }, ["a"]);
  ok(["--json", "--json", "a"], { json: true }, ["a"]);
  ok(["--", "-x", "a"], {}, ["-x", "a"]);
  ok(["-", "a"], {}, ["-", "a"]);
  ok(["-t", "x", "-t", "y", "a"], { topic: ["x", "y"] }, ["a"]);
  assert.deepEqual(parse(spec, ["-h"]), { help: true });
  assert.deepEqual(parse(spec, ["--help", "a"]), { help: true });
});

Deno.test("parse() gives grouped short switches and malformed options parseArgs' reading", () => {
  ok(["-rj", "a"], { raw: true, json: true }, ["a"]);
  ok(["-rn5", "a"], { raw: true, count: "5" }, ["a"]);
  ok(["-jr", "a", "-r"], { json: true, raw: true }, ["a"]);
  ok(["a", "-tr"], { topic: ["r"] }, ["a"]);
  fails(["--raw=1", "a"], 'Option "--raw" of "fsbus x" takes no value');
  fails(["a", "--help=1"], 'Option "--help" of "fsbus x" takes no value');
  fails(["a", "-rt"], 'Option "--topic" of "fsbus x" needs a value');
  fails(["a", "--count"], 'Option "--count" of "fsbus x" needs a value');
  fails(["a", "-n"], 'Option "--count" of "fsbus x" needs a value');
});

Deno.test("parse() reports repeats, unknown options and argument counts", () => {
  fails(
    ["--count", "1", "--count", "2", "a"],
    'Cannot use "--count" 2 times with "fsbus x": it takes one value',
  );
  fails(["a", "b", "c"], 'Too many arguments for "fsbus x": unexpected "c"');
  fails([], 'Missing argument for "fsbus x": expected DIR [options]');
  fails(
    ["--jsn", "a"],
    'Unknown option "--jsn" for "fsbus x" (did you mean "--json"?) (see "fsbus x --help")',
  );
});
