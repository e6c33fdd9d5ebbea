/**
 * Helpers shared by the `fsbus mq mount` tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { mountAt } from "../../sys/fuse/mod.ts";
import { CLI, collect, sh, spawnFsbus, stop, waitFor } from "../_helpers.ts";

/** A running `fsbus mq mount` and what it has said on stderr. */
export interface Mounted {
  mp: string;
  server: Deno.ChildProcess;
  log: ReturnType<typeof collect>;
}

/**
 * Starts `fsbus mq mount DATA MP ...options` and returns once the mount is there (the server
 * stopped, and the error naming what it said, when it does not come).
 */
export async function startMount(data: string, mp: string, options: string[]): Promise<Mounted> {
  const server = spawnFsbus(["mq", "mount", data, mp, ...options]);
  const log = collect(server.stderr);
  try {
    await waitFor(
      () => mountAt(mp)?.fstype === "fuse.fsbus-mq",
      `the mount on ${mp} (server said: ${log.text()})`,
      20_000,
    );
  } catch (err) {
    await stop(server);
    throw err;
  }
  return { mp, server, log };
}

/**
 * Two writers of one group at once: a shell writing `n` lines (`m1`, `m2`, ...) through one
 * descriptor on `streamPath` (a stream on the mount) as fast as it can, and `fsbus mq write
 * GROUP STREAM --lines` on the directory committing `k` lines (`w1`, ...) between its writes.
 * Both must succeed.
 */
export async function burstWithDirWriter(
  streamPath: string,
  group: string,
  stream: string,
  n: number,
  k: number,
): Promise<void> {
  const [viaMount, viaDir] = await Promise.all([
    sh(`exec 3>'${streamPath}'; for i in $(seq ${n}); do echo m$i >&3 || exit 1; done`),
    sh(
      `for i in $(seq ${k}); do echo w$i; sleep 0.002; done | ` +
        `'${Deno.execPath()}' run -A ${CLI} mq write '${group}' ${stream} --lines`,
    ),
  ]);
  assert.equal(viaMount.code, 0, viaMount.stderr);
  assert.equal(viaDir.code, 0, viaDir.stderr);
}

/**
 * Checks that lines read after {@linkcode burstWithDirWriter} hold each writer's `n` and `k`
 * lines (`m1`..., `w1`...), each writer's in its own order.
 */
export function assertEachWriterInOrder(got: string[], n: number, k: number): void {
  for (const [p, count] of [["m", n], ["w", k]] as const) {
    assert.equal(
      got.filter((x) => x.startsWith(p)).map((x) => `${x}\n`).join(""),
      burstLines(p, count),
    );
  }
}

/** The text of `count` lines `${prefix}1`, `${prefix}2`, ... as the burst writers write them. */
export function burstLines(prefix: string, count: number): string {
  return Array.from({ length: count }, (_, i) => `${prefix}${i + 1}\n`).join("");
}
