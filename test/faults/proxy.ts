// A user-space TCP proxy between one broker instance and Redis, run inside the test process:
// the fault suite's way to cut an instance off Redis without root or `tc netem`.
//
// Modes: `up` forwards; `refused` closes every proxied connection and refuses new ones (a
// clean cut: the broker sees its connections drop and reconnects fail at once); `blackhole`
// keeps every connection open and accepts new ones but forwards nothing either way (a
// partition: commands go unanswered, nothing tells the broker). Bytes sent into a black hole
// are held and delivered, in order, when it ends: TCP retransmits across a partition that
// heals, it never loses a segment out of the middle of a stream.

import net from 'node:net';

export type ProxyMode = 'up' | 'refused' | 'blackhole';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Held in a black hole: bytes for Redis, bytes for the broker. */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export class RedisProxy {
  readonly port: number;
  private mode: ProxyMode = 'up';
  private readonly pairs = new Set<Pair>();
  private readonly server: net.Server;
  private readonly redisPort: number;

  private constructor(server: net.Server, port: number, redisPort: number) {
    this.server = server;
    this.port = port;
    this.redisPort = redisPort;
  }

  static async start(redisPort: number): Promise<RedisProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const proxy = new RedisProxy(server, (server.address() as net.AddressInfo).port, redisPort);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Local ports of the proxy's connections to Redis: what `CLIENT LIST` shows as their `addr`. */
  upstreamPorts(): number[] {
    return [...this.pairs].map((p) => p.upstream.localPort).filter((p): p is number => p !== undefined);
  }

  setMode(mode: ProxyMode): void {
    this.mode = mode;
    if (mode === 'refused') for (const pair of [...this.pairs]) this.drop(pair);
    if (mode === 'up') {
      for (const pair of this.pairs) {
        for (const chunk of pair.toUpstream.splice(0)) pair.upstream.write(chunk);
        for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
      }
    }
  }

  async close(): Promise<void> {
    for (const pair of [...this.pairs]) this.drop(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.mode === 'refused') {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect(this.redisPort, '127.0.0.1');
    upstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    const pair: Pair = { client, upstream, toUpstream: [], toClient: [] };
    this.pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (this.mode === 'up') upstream.write(chunk);
      else pair.toUpstream.push(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.mode === 'up') client.write(chunk);
      else pair.toClient.push(chunk);
    });
    // Redis gone (killed) or the broker closing: the other side goes too, as over one socket.
    client.on('close', () => this.drop(pair));
    upstream.on('close', () => this.drop(pair));
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}
