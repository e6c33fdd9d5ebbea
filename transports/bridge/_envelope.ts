/**
 * What travels through a bridge (a message with its origin and position), the two roles an
 * endpoint plays (source, sink), and what they share.
 *
 * @module
 */

import type { FsbusError } from "../../types.ts";
import type { Seen } from "./_state.ts";

/** A message on its way through a bridge. */
export interface Envelope {
  /** The payload, unchanged. */
  data: Uint8Array;
  /** Its id where it was first bridged (unique for that origin). */
  id: string;
  /** Its topic or stream ("" for a bus's root). */
  topic: string;
  /** When it was published. */
  time: Date;
  /** The identity of the bridge that first carried it. */
  origin: string;
  /** The host it was published on. */
  host: string;
  /** The source's position after this message, saved once it is delivered. */
  position?: string;
  /** An id to record as sent once delivered (a local source's own id). */
  seenId?: string;
  /** Only move the position forward: the bridge's own message, read back. */
  skip?: boolean;
  /** Called once the message is delivered (acknowledges it at the source). */
  done?: () => void;
  /** Not a message: a pin session's state (see _pin.ts), kept only by whole mq groups. */
  pinState?: boolean;
  /**
   * Another message is already waiting behind this one (the rest of one socket read): a
   * local sink may keep its lock for it (see `Seen.guard`).
   */
  more?: boolean;
}

/** Messages coming out of an endpoint. */
export interface Source extends AsyncIterable<Envelope> {
  /** Messages known to wait at the source (JetStream's pending count), or 0. */
  lag(): number;
  /** Stops the source. */
  close(): Promise<void>;
}

/** Messages going into an endpoint. */
export interface Sink {
  /**
   * Takes one message; resolves when the sink can take the next. `delivered` is called
   * (in order) once the message is stored at the destination.
   */
  write(e: Envelope, delivered: () => void): Promise<void> | void;
  /** Waits until every message taken is delivered. */
  flush(): Promise<void>;
  /** Messages taken but not yet delivered. */
  pending(): number;
  /**
   * Whether `e` is already in the bus, written at or after `since` (ms): asked once after a
   * restart, for the one message whose write the last run may have finished.
   */
  has?(e: Envelope, since: number): boolean | Promise<boolean>;
  /**
   * The message announced by the last one's `more` is not coming to `write` (it was skipped),
   * or the pump stops: gives up what the sink kept for it (a local bus's lock, see
   * `Seen.guard`).
   */
  idle?(): void;
  /** Flushes and releases the sink. */
  close(): Promise<void>;
  /** Whether it takes pin session states (whole mq groups, and NATS on their way); else
   * they are skipped. */
  pinStates?: boolean;
}

/** Payloads a sink wrote to a bus without ids (fanout, filebus), to recognise their echo. */
export class Echo {
  readonly #queue: Uint8Array[] = [];
  /** Records a payload this bridge wrote. */
  expect(data: Uint8Array): void {
    this.#queue.push(data);
    if (this.#queue.length > 10_000) this.#queue.shift();
  }
  /** Whether `data` is one this bridge wrote (forgetting it when so). */
  consume(data: Uint8Array): boolean {
    const i = this.#queue.findIndex((d) => equal(d, data));
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    return true;
  }
}

/** Whether two byte arrays hold the same bytes. */
export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** What every source and sink of one bridge shares. */
export interface Context {
  /**
   * The origin this bridge marks the messages it carries out with: one per local bus (the
   * host and the bus), shared by every bridge of that bus, so that none of them carries a
   * message back into the bus it came from.
   */
  origin: string;
  /** This host's name. */
  host: string;
  /**
   * The other endpoint of this direction (see `peerKey` in bridge.ts): a sink records it as
   * where the messages it writes came from; a source does not send back what came from it.
   */
  peer: string;
  /**
   * Ids written into the local bus this context's endpoint is (by any bridge of this
   * machine sharing the state directory): a source never sends them out.
   */
  written: Seen;
  /** Ids of this direction's source already sent (so that a restart does not resend them). */
  sent: Seen;
  /** Payloads written to id-less buses. */
  echo: Echo;
  /** The persisted position of this direction's source, if any. */
  position: string | undefined;
  /** On a first run, also carry what the local bus already holds. */
  history: boolean;
  /** filebus endpoints in lossless mode. */
  lossless: boolean;
  /** A directory-bus source's blocking waits, in milliseconds (0: none; see BridgeOptions). */
  blockMs: number;
  /** Whether the other side carries many topics (then subjects get a topic token). */
  wide: boolean;
  /** Stops sources. */
  signal: AbortSignal;
  /** Reports a message that could not be carried (it is skipped). */
  onError: (err: FsbusError) => void;
  /** Reports a passing condition (a consumer being remade after a server left). */
  onNotice: (text: string) => void;
}

/** Header names used on NATS. */
export const HEADER = {
  origin: "Fsbus-Origin",
  id: "Fsbus-Id",
  topic: "Fsbus-Topic",
  time: "Fsbus-Time",
  host: "Fsbus-Host",
  pin: "Fsbus-Pin-State",
} as const;
