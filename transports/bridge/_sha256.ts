/**
 * SHA-256 in hex, through `node:crypto` fetched on first use: importing `node:crypto` at the
 * top of the bridge cost every program that loads the library (`deno run -A mod.ts pub`, the
 * `jsr:@x/fsbus` form) the start-up of Deno's Node layer, though only a bridge hashes.
 *
 * @module
 */

type CreateHash = typeof import("node:crypto").createHash;

let createHash: CreateHash | undefined;

/**
 * The SHA-256 digest of `text` (as UTF-8), in lower-case hex.
 *
 * @param text What to hash.
 * @returns 64 hex digits.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sha256Hex } from "./_sha256.ts";
 * assert.equal(sha256Hex("abc").slice(0, 16), "ba7816bf8f01cfea");
 * ```
 */
export function sha256Hex(text: string): string {
  createHash ??= (globalThis as unknown as {
    process: { getBuiltinModule(id: "node:crypto"): { createHash: CreateHash } };
  }).process.getBuiltinModule("node:crypto").createHash;
  return createHash("sha256").update(text).digest("hex");
}
