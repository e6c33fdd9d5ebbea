/**
 * A transport for the `nats` client over Deno's own TCP sockets (`Deno.connect`), in place of
 * the package's default one over Node's `net` module: at one message per write (a paced
 * publisher), the `net` layer under Deno was about a quarter of a bridge's CPU. Plain TCP
 * only: a server that requires TLS is refused with the client's usual error.
 *
 * @module
 */

import type {
  ConnectionOptions,
  Server,
  ServerInfo,
  Transport,
} from "nats/lib/nats-base-client/internal_mod.js";

type Internals = typeof import("nats/lib/nats-base-client/internal_mod.js");

/** A promise with its resolver outside. */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const CRLF = new Uint8Array([13, 10]);

function indexOfCrlf(chunks: Uint8Array[]): number {
  let off = 0;
  let prev = -1;
  for (const c of chunks) {
    for (let i = 0; i < c.length; i++) {
      if (prev === CRLF[0] && c[i] === CRLF[1]) return off + i - 1;
      prev = c[i]!;
    }
    off += c.length;
  }
  return -1;
}

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  let n = 0;
  for (const c of chunks) n += c.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const c of chunks) {
    out.set(c, n);
    n += c.length;
  }
  return out;
}

/**
 * Makes the transport class with the client's own error types and option checks.
 *
 * @param nats The client's internals.
 * @returns A factory of transports.
 */
export function denoTransport(nats: Internals): () => Transport {
  const { ErrorCode, NatsError, checkOptions } = nats;

  class DenoTransport implements Transport {
    readonly lang = "nats.js";
    readonly version = "2.29.3-fsbus";
    closeError?: Error;
    #conn: Deno.TcpConn | undefined;
    #connected = false;
    #done = false;
    /** Bytes read and not yet taken by the client's parser. */
    #yields: Uint8Array[] = [];
    /** The parser's pending `next()`, when it waits for bytes. */
    #waiter: ((r: IteratorResult<Uint8Array>) => void) | undefined;
    readonly #closedNote = later<void | Error>();
    #out: Uint8Array[] = [];
    #writing: Promise<void> | undefined;

    get isClosed(): boolean {
      return this.#done;
    }

    async connect(hp: Server, options: ConnectionOptions): Promise<void> {
      try {
        this.#conn = await Deno.connect({ hostname: hp.hostname, port: hp.port });
        this.#conn.setNoDelay(true);
        const info = await this.#peekInfo();
        checkOptions(info, options);
        if (info.tls_required === true) {
          throw new NatsError("tls", ErrorCode.ServerOptionNotAvailable);
        }
        this.#connected = true;
        void this.#readLoop();
      } catch (err) {
        try {
          this.#conn?.close();
        } catch {
          // closed
        }
        this.#conn = undefined;
        if (err instanceof Deno.errors.ConnectionRefused) {
          throw NatsError.errorForCode(ErrorCode.ConnectionRefused, err);
        }
        throw err;
      }
    }

    /** Reads until the server's first line, INFO {...}; keeps the bytes for the parser. */
    async #peekInfo(): Promise<ServerInfo> {
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await this.#conn!.read(buf);
        if (n === null) throw NatsError.errorForCode(ErrorCode.ConnectionRefused);
        this.#yields.push(buf.slice(0, n));
        const end = indexOfCrlf(this.#yields);
        if (end < 0) continue;
        const line = new TextDecoder().decode(concat(this.#yields).subarray(0, end));
        const m = /^INFO\s+(\{.*\})\s*$/i.exec(line);
        if (!m) throw new Error("unexpected response from server");
        return JSON.parse(m[1]!) as ServerInfo;
      }
    }

    async #readLoop(): Promise<void> {
      const conn = this.#conn!;
      const buf = new Uint8Array(64 * 1024);
      let error: Error | undefined;
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          const w = this.#waiter;
          if (w) {
            this.#waiter = undefined;
            w({ value: chunk, done: false });
          } else {
            this.#yields.push(chunk);
          }
        }
      } catch (err) {
        if (!this.#done) error = err instanceof Error ? err : new Error(String(err));
      }
      await this.#closed(error, false);
    }

    /**
     * The bytes read, in order, for the client's parser: a plain iterator handing each read
     * straight to the parser's pending `next()` (an async generator and a signal in between
     * would cost a few more turns of the microtask queue per read); it ends once the
     * connection is closed and everything read was taken.
     */
    [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
      const it: AsyncIterableIterator<Uint8Array> = {
        [Symbol.asyncIterator]: () => it,
        next: (): Promise<IteratorResult<Uint8Array>> => {
          const y = this.#yields.shift();
          if (y !== undefined) return Promise.resolve({ value: y, done: false });
          if (this.#done) return Promise.resolve({ value: undefined, done: true });
          return new Promise((r) => (this.#waiter = r));
        },
      };
      return it;
    }

    isEncrypted(): boolean {
      return false;
    }

    send(frame: Uint8Array): void {
      if (this.#done || this.#conn === undefined) return;
      this.#out.push(frame);
      this.#writing ??= this.#write(this.#conn);
    }

    /** Writes what is queued, in order; frames queued meanwhile go in one write. */
    async #write(conn: Deno.TcpConn): Promise<void> {
      try {
        while (this.#out.length > 0) {
          const data = concat(this.#out.splice(0));
          for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
        }
      } catch {
        // A write error shows as the read side's end (or the client's ping timeout).
        this.#out = [];
      } finally {
        this.#writing = undefined;
      }
    }

    close(err?: Error): Promise<void> {
      return this.#closed(err, false);
    }

    disconnect(): void {
      this.#closed(undefined, true).catch(() => {});
    }

    async #closed(err: Error | undefined, internal: boolean): Promise<void> {
      if (!this.#connected || this.#done) return;
      if (err) this.closeError = err;
      if (!err && internal) await this.#writing?.catch(() => {});
      this.#done = true;
      try {
        this.#conn?.close();
      } catch {
        // closed by the other side
      }
      this.#conn = undefined;
      const w = this.#waiter;
      this.#waiter = undefined;
      w?.({ value: undefined, done: true });
      this.#closedNote.resolve(this.closeError);
    }

    closed(): Promise<void | Error> {
      return this.#closedNote.promise;
    }

    discard(): void {
      // nothing is throttled
    }
  }

  return () => new DenoTransport();
}
