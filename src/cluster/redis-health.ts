// Redis as this instance sees it: degraded or not (and why), how often the connection was
// made again, and the command latency (a PING every instance heart-beat). Degraded while
// either connection (commands, pub/sub) is down: local delivery goes on, CONNECTs that need a
// decision across instances are refused with UNAVAILABLE, /readyz answers 503.

import type { Logger } from 'pino';
import type { RedisConnection } from './redis-client';

export interface RedisLatency {
  lastMs: number;
  sumMs: number;
  count: number;
}

const SUBSCRIBER_DOWN = 'Redis subscriber connection down';

export class RedisHealth {
  private reason: string | undefined = 'connecting to Redis';
  private readyCount = 0;
  private isStopping = false;
  private readonly latency: RedisLatency = { lastMs: 0, sumMs: 0, count: 0 };
  private pingTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly commands: RedisConnection,
    private readonly subscriber: RedisConnection,
    private readonly logger: Logger,
  ) {
    for (const connection of [commands, subscriber]) {
      connection.on('close', () => {
        if (!this.isStopping) this.set('Redis connection lost');
      });
    }
    subscriber.on('ready', () => {
      if (commands.status === 'ready' && this.reason === SUBSCRIBER_DOWN) this.set(undefined);
    });
  }

  get isDegraded(): boolean {
    return this.reason !== undefined;
  }

  get degradedReason(): string | undefined {
    return this.reason;
  }

  /** Connections made again after a loss (not the first one). */
  get reconnects(): number {
    return Math.max(0, this.readyCount - 1);
  }

  get redisLatency(): RedisLatency {
    return { ...this.latency };
  }

  /** The command connection is ready (again): counted; healthy once `restored` is done and the subscriber is up too. */
  async onReady(restored: () => Promise<void>): Promise<void> {
    if (this.isStopping) return;
    this.readyCount++;
    await restored();
    this.set(this.subscriber.status === 'ready' ? undefined : SUBSCRIBER_DOWN);
  }

  /** PING every `everyMs` while connected. */
  startPinging(everyMs: number): void {
    this.pingTimer = setInterval(() => {
      if (this.commands.status !== 'ready') return;
      const startedAt = process.hrtime.bigint();
      this.commands.ping().then(
        () => {
          const ms = Number(process.hrtime.bigint() - startedAt) / 1e6;
          this.latency.lastMs = ms;
          this.latency.sumMs += ms;
          this.latency.count++;
        },
        () => undefined,
      );
    }, everyMs);
    this.pingTimer.unref();
  }

  stop(): void {
    this.isStopping = true;
    clearInterval(this.pingTimer);
  }

  private set(reason: string | undefined): void {
    if (reason === this.reason) return;
    if (reason !== undefined && this.reason === undefined) this.logger.warn({ reason }, 'Redis unavailable: degraded (local delivery goes on; CONNECTs needing a session limit are refused)');
    if (reason === undefined && this.reason !== undefined) this.logger.info('Redis available again: registry and relay restored');
    this.reason = reason;
  }
}
