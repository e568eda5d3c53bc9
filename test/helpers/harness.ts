// What an integration test file starts — brokers, raw clients, sockets — kept in one place
// and all stopped by one after() hook, so a failing test leaves nothing running.

import { after } from 'node:test';
import type { Config } from '../../src/config';
import type { RunningServer, ServerOptions } from '../../src/server';
import { startBroker } from './broker';
import { RawClient } from './raw-client';

export class Harness {
  private readonly brokers: RunningServer[] = [];
  private readonly disposables: { destroy(): void }[] = [];
  private readonly defaults: Record<string, string>;

  constructor(defaults: Record<string, string>) {
    this.defaults = defaults;
  }

  /** A broker with the harness defaults, then `overrides` (environment variables). */
  async broker(overrides: Record<string, string> = {}, options: ServerOptions = {}, patch: Partial<Config> = {}): Promise<RunningServer> {
    const b = await startBroker({ ...this.defaults, ...overrides }, options, patch);
    this.brokers.push(b);
    return b;
  }

  async tcp(b: RunningServer): Promise<RawClient> {
    return this.track(await RawClient.tcp(b.tcpPort!));
  }

  async ws(b: RunningServer, options: Parameters<typeof RawClient.ws>[1] = {}): Promise<RawClient> {
    return this.track(await RawClient.ws(b.wsPort!, options));
  }

  /** A TCP client that sent CONNECT (1.2, no heart-beats, plus `headers`) and got CONNECTED. */
  async connected(b: RunningServer, headers: Record<string, string> = {}): Promise<RawClient> {
    const c = await this.tcp(b);
    await c.connect(headers);
    return c;
  }

  /** Destroy `thing` when the file's tests are over. */
  track<T extends { destroy(): void }>(thing: T): T {
    this.disposables.push(thing);
    return thing;
  }

  async close(): Promise<void> {
    for (const thing of this.disposables) thing.destroy();
    await Promise.all(this.brokers.map((b) => b.stop()));
  }
}

/** A harness whose brokers default to `defaults` (heart-beats off unless a test turns them on). */
export function harness(defaults: Record<string, string> = { HEARTBEAT: '0,0' }): Harness {
  const h = new Harness(defaults);
  after(() => h.close());
  return h;
}
