/**
 * placeholder
 *
 * @module
 */
import { FsbusError } from "../../types.ts";
import type { Carrier, CarrierEvents, Peer, SelfInfo } from "./node.ts";
import type { Header } from "./envelope.ts";

/** Options. */
export interface NatsOptions {
  /** servers */
  servers: string[];
  /** network */
  network: string;
  /** max */
  maxSize: number;
  /** timeout */
  connectTimeoutMs?: number;
}

/** NATS carrier. */
export class NatsCarrier implements Carrier {
  /** mode */
  readonly mode = "nats" as const;
  /** max */
  readonly maxSize: number;
  /** where */
  readonly where: string;
  /** make */
  constructor(o: NatsOptions) {
    this.maxSize = o.maxSize;
    this.where = o.servers.join(",");
  }
  /** x */
  start(_s: SelfInfo, _e: CarrierEvents): Promise<void> {
    return Promise.reject(new FsbusError("unsupported", "NATS: not yet"));
  }
  /** x */
  survey(_w: number): Promise<Peer[]> {
    return Promise.reject(new FsbusError("unsupported", "NATS: not yet"));
  }
  /** x */
  peers(): Peer[] {
    return [];
  }
  /** x */
  find(_n: string): Promise<Peer | undefined> {
    return Promise.resolve(undefined);
  }
  /** x */
  send(_p: Peer, _h: Header, _d: Uint8Array): Promise<void> {
    return Promise.resolve();
  }
  /** x */
  broadcast(_g: string, _r: Peer[], _h: Header, _d: Uint8Array): Promise<void> {
    return Promise.resolve();
  }
  /** x */
  setGroups(_g: string[]): Promise<void> {
    return Promise.resolve();
  }
  /** x */
  flush(_t: number): Promise<void> {
    return Promise.resolve();
  }
  /** x */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
