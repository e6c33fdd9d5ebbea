/**
 * What an mq group holds now: its ctl settings, streams, messages and bytes.
 *
 * @module
 */

import type { Status } from "../../types.ts";
import { MqGroup } from "./group.ts";

/**
 * Describes an mq group: its settings (as `ctl` reads), how many streams and messages it
 * has (messages counted in the group's order, EOFs included), and the bytes its streams
 * hold.
 *
 * @param path The group directory.
 * @returns The status.
 * @throws {FsbusError} When `path` is not a group.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkgroup, status } from "@x/fsbus/mq";
 * const dir = Deno.makeTempDirSync({ dir: "/dev/shm" });
 * const g = mkgroup(`${dir}/g`);
 * g.write("a", "hi");
 * g.close();
 * assert.deepEqual(status(`${dir}/g`).counts, { streams: 1, messages: 1 });
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function status(path: string): Status {
  const g = MqGroup.open(path);
  try {
    const s = g.settings;
    const names = g.streamNames();
    let bytes = 0;
    for (const name of names) {
      try {
        bytes += Deno.lstatSync(`${g.path}/${name}`).size;
      } catch {
        // removed meanwhile
      }
    }
    const settings: Status["settings"] = { data: s.data, replay: s.replay };
    if (s.depth.kind !== "none") {
      const ctl = Deno.readTextFileSync(`${g.path}/ctl`).match(/^depth (.*)$/m);
      if (ctl) settings.depth = ctl[1]!;
    }
    return {
      kind: "mq",
      path,
      what: "mq group",
      settings,
      counts: { streams: names.length, messages: g.next },
      bytes,
    };
  } finally {
    g.close();
  }
}
