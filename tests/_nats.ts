/**
 * Test helpers for NATS: start Debian's nats-server (alone or a 3-server JetStream cluster)
 * on free ports, wait until it is ready, stop it by PID; and network namespaces ("another
 * machine") joined to this one by a veth pair with addresses in 198.18.0.0/15.
 *
 * @module
 */

const NATS_SERVER = "/usr/sbin/nats-server";

/** A free TCP port on `host` (127.0.0.1 by default), found by binding port 0. */
export function freePort(host = "127.0.0.1"): number {
  // A port just closed may be handed out again: never give the same one twice (a server's
  // client and cluster ports once collided that way).
  for (;;) {
    const l = Deno.listen({ hostname: host, port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (given.has(port)) continue;
    given.add(port);
    return port;
  }
}

const given = new Set<number>();

/** How to start one server. */
export interface NatsServerOptions {
  /** Its directory (JetStream storage under `DIR/js`, log in `DIR/log`). */
  dir: string;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Enable JetStream with storage in `dir` (default true). */
  jetstream?: boolean;
  /** Server name (default: "n" + port). */
  name?: string;
  /** Cluster name and this server's cluster port, with the routes to the others. */
  cluster?: { name: string; port: number; routes: string[] };
  /** Run inside this network namespace. */
  netns?: string;
  /** The server's max_payload, in bytes. */
  maxPayload?: number;
  /** Fixed client port (default: a free one). */
  port?: number;
  /** Fixed monitoring port (default: a free one). */
  monitorPort?: number;
}

/** A running (or stopped, restartable) nats-server. */
export class NatsServer {
  readonly options: NatsServerOptions;
  readonly host: string;
  readonly port: number;
  readonly monitorPort: number;
  #child: Deno.ChildProcess | undefined;

  constructor(options: NatsServerOptions) {
    this.options = options;
    this.host = options.host ?? "127.0.0.1";
    // A new namespace has every port free: pick any free port of this one.
    const probe = options.netns ? "127.0.0.1" : this.host;
    this.port = options.port ?? freePort(probe);
    this.monitorPort = options.monitorPort ?? freePort(probe);
  }

  /** `host:port` for clients. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** The process id, while running. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the process (not waiting for readiness: see {@linkcode waitReady}). */
  start(): void {
    if (this.#child) throw new Error("nats-server already running");
    const o = this.options;
    const args = [
      "-a",
      this.host,
      "-p",
      String(this.port),
      "-m",
      String(this.monitorPort),
      "-n",
      o.name ?? `n${this.port}`,
      "-l",
      `${o.dir}/log`,
    ];
    if (o.jetstream !== false) args.push("-js", "-sd", `${o.dir}/js`);
    if (o.cluster) {
      args.push(
        "--cluster_name",
        o.cluster.name,
        "--cluster",
        `nats://${this.host}:${o.cluster.port}`,
        "--routes",
        o.cluster.routes.join(","),
      );
    }
    if (o.maxPayload !== undefined) {
      Deno.writeTextFileSync(`${o.dir}/server.conf`, `max_payload: ${o.maxPayload}\n`);
      args.push("-c", `${o.dir}/server.conf`);
    }
    const [cmd, cmdArgs] = o.netns
      ? ["ip", ["netns", "exec", o.netns, NATS_SERVER, ...args]]
      : [NATS_SERVER, args];
    this.#child = new Deno.Command(cmd, {
      args: cmdArgs,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  /** Waits until the monitoring endpoint says healthy (JetStream included). */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const url = `http://${this.host}:${this.monitorPort}/healthz`;
    for (;;) {
      try {
        const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
        await r.body?.cancel();
        if (r.ok) return;
      } catch {
        // not yet listening
      }
      if (Date.now() > deadline) {
        let log = "";
        try {
          log = Deno.readTextFileSync(`${this.options.dir}/log`).split("\n").slice(-5).join("\n");
        } catch { /* no log */ }
        throw new Error(`nats-server ${this.address} not ready after ${timeoutMs} ms\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the process by PID (SIGTERM, or SIGKILL with `kill`) and waits for its exit. */
  async stop(kill = false): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill(kill ? "SIGKILL" : "SIGTERM");
    } catch {
      // already exited
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * Starts one server and waits until it is ready.
 *
 * @param options Where and how.
 * @returns The running server (dispose it to stop).
 */
export async function startNats(options: NatsServerOptions): Promise<NatsServer> {
  Deno.mkdirSync(options.dir, { recursive: true });
  const s = new NatsServer(options);
  s.start();
  try {
    await s.waitReady();
  } catch (err) {
    await s.stop(true);
    throw err;
  }
  return s;
}

/** Three servers forming one JetStream cluster. */
export class NatsCluster {
  readonly servers: NatsServer[];
  constructor(servers: NatsServer[]) {
    this.servers = servers;
  }
  /** Every server's `host:port`, comma-separated. */
  get addresses(): string {
    return this.servers.map((s) => s.address).join(",");
  }
  /** Starts the stopped servers again (same ports and storage) and waits until ready. */
  async restart(): Promise<void> {
    for (const s of this.servers) if (s.pid === undefined) s.start();
    await Promise.all(this.servers.map((s) => s.waitReady(60_000)));
  }
  /** Stops every server. */
  async stop(kill = false): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop(kill)));
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * Starts a 3-server JetStream cluster under `dir` and waits until every server is healthy.
 *
 * @param dir A directory for the servers' storage and logs.
 * @param options Per-server address and network namespace (index 0..2).
 * @returns The cluster (dispose it to stop every server).
 */
export async function startCluster(
  dir: string,
  options: { host?: (i: number) => string; netns?: (i: number) => string | undefined } = {},
): Promise<NatsCluster> {
  const hosts = [0, 1, 2].map((i) => options.host?.(i) ?? "127.0.0.1");
  const clusterPorts = hosts.map((h, i) => freePort(options.netns?.(i) ? "127.0.0.1" : h));
  const routes = hosts.map((h, i) => `nats://${h}:${clusterPorts[i]}`);
  const servers = hosts.map((host, i) => {
    const sdir = `${dir}/s${i}`;
    Deno.mkdirSync(sdir, { recursive: true });
    const netns = options.netns?.(i);
    return new NatsServer({
      dir: sdir,
      host,
      name: `s${i}`,
      cluster: {
        name: "fsbt",
        port: clusterPorts[i]!,
        routes: routes.filter((_, j) => j !== i),
      },
      ...(netns ? { netns } : {}),
    });
  });
  const cluster = new NatsCluster(servers);
  for (const s of servers) s.start();
  try {
    await Promise.all(servers.map((s) => s.waitReady(60_000)));
  } catch (err) {
    await cluster.stop(true);
    throw err;
  }
  return cluster;
}

let nsCounter = 0;

/** Runs `cmd args...` and throws with its stderr when it fails. */
async function run(cmd: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" })
    .output();
  if (code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(stderr).trim()}`);
  }
}

/**
 * A network namespace ("another machine") named `fsbt-br-...`, joined to this one by a veth
 * pair: this side `hostAddr`, the namespace side `nsAddr`, a /30 in 198.19.0.0/16.
 */
export class Netns {
  readonly name: string;
  readonly hostAddr: string;
  readonly nsAddr: string;
  readonly #veth: string;

  private constructor(name: string, veth: string, hostAddr: string, nsAddr: string) {
    this.name = name;
    this.#veth = veth;
    this.hostAddr = hostAddr;
    this.nsAddr = nsAddr;
  }

  /** Makes the namespace, the veth pair and the addresses; both ends up, loopback up. */
  static async create(prefix = "fsbt-br-"): Promise<Netns> {
    const tag = `${Deno.pid % 100000}${nsCounter++}`;
    const name = `${prefix}${tag}`;
    const veth = `fbr${tag}`.slice(0, 13);
    const used = new TextDecoder().decode(
      (await new Deno.Command("ip", { args: ["-4", "-o", "addr"], stdout: "piped" }).output())
        .stdout,
    );
    let base = "";
    for (let i = 0; i < 100; i++) {
      const b = `198.19.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 64) * 4}`;
      const [a, bb, c, d] = b.split(".").map(Number) as [number, number, number, number];
      if (!used.includes(`${a}.${bb}.${c}.${d + 1}/`)) {
        base = b;
        break;
      }
    }
    const [a, b, c, d] = base.split(".").map(Number) as [number, number, number, number];
    const hostAddr = `${a}.${b}.${c}.${d + 1}`;
    const nsAddr = `${a}.${b}.${c}.${d + 2}`;
    const ns = new Netns(name, veth, hostAddr, nsAddr);
    try {
      await run("ip", ["netns", "add", name]);
      await run("ip", ["link", "add", `${veth}a`, "type", "veth", "peer", "name", `${veth}b`]);
      await run("ip", ["link", "set", `${veth}b`, "netns", name]);
      await run("ip", ["addr", "add", `${hostAddr}/30`, "dev", `${veth}a`]);
      await run("ip", ["link", "set", `${veth}a`, "up"]);
      await run("ip", ["-n", name, "addr", "add", `${nsAddr}/30`, "dev", `${veth}b`]);
      await run("ip", ["-n", name, "link", "set", `${veth}b`, "up"]);
      await run("ip", ["-n", name, "link", "set", "lo", "up"]);
    } catch (err) {
      await ns.remove();
      throw err;
    }
    return ns;
  }

  /** Command and arguments that run `cmd args...` inside the namespace. */
  wrap(cmd: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.name, cmd, ...args]];
  }

  /** Removes the namespace and the veth pair. */
  async remove(): Promise<void> {
    try {
      await run("ip", ["link", "del", `${this.#veth}a`]);
    } catch { /* gone with the namespace */ }
    try {
      await run("ip", ["netns", "del", this.name]);
    } catch { /* never made */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.remove();
  }
}

/** Whether this process may make network namespaces (root with iproute2). */
export function canMakeNetns(): boolean {
  try {
    return Deno.uid() === 0 &&
      new Deno.Command("ip", { args: ["netns", "list"], stdout: "null", stderr: "null" })
          .outputSync().code === 0;
  } catch {
    return false;
  }
}
