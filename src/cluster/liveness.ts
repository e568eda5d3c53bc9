// Instance liveness and the reaping of dead instances' sessions.
//
// Every instance refreshes `instance:{id}` (TTL three heart-beats) every heart-beat and is
// listed in `instances`. Each heart-beat it also looks for listed instances whose key has
// expired: a survivor claims the dead one (SET NX on `instance:{id}:reaper`, so one survivor
// reaps it), unregisters each of its sessions and reports each one it removed
// (onSessionLost, reason `instance-lost`). The per-session removal is itself exactly-once
// (RedisRegistry.unregister), so a reaper that dies half-way and is replaced later reports
// nothing twice. Then onInstanceLost gives back the queue messages it held. Bound: a kill -9 is reaped within 3 + 1 heart-beats (8 s by default).

import type { Logger } from 'pino';
import { NO_COUNTERS } from '../registry/instances';
import type { InstanceReport, InstanceView } from '../registry/instances';
import type { SessionRecord } from '../registry/registry';
import type { RedisKeys } from './keys';
import type { RedisConnection } from './redis-client';
import type { RedisRegistry } from './redis-registry';

export interface LivenessOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  heartbeatMs: number;
  registry: RedisRegistry;
  /** A dead instance's session was removed by this instance. */
  onSessionLost(record: SessionRecord): void;
  /**
   * This instance's liveness key was gone when it went to refresh it. `wasReaped`: a survivor
   * took it for dead (it stalled past the TTL) and reported its sessions lost; otherwise
   * Redis lost its data. Either way the instance has been announced again.
   */
  onLivenessLost(wasReaped: boolean): Promise<void>;
  /**
   * This instance is reaping `deadId` (once per dead instance, after its sessions): give back
   * what else it held (queue messages). A rejection leaves the dead instance listed, so the
   * reap is tried again once the claim expires.
   */
  onInstanceLost?(deadId: string): Promise<void>;
  logger: Logger;
  /** This instance's report, written with every refresh so that every instance can list the others' (the dashboard). */
  report?(): InstanceReport;
}

/** How long a survivor's claim on a dead instance lasts before another may take over. */
const REAP_CLAIM_MS = 30_000;

export class InstanceLiveness {
  private readonly options: LivenessOptions;
  private timer: NodeJS.Timeout | undefined;
  private isTicking = false;
  private readonly startedAt = Date.now();

  constructor(options: LivenessOptions) {
    this.options = options;
  }

  get ttlMs(): number {
    return this.options.heartbeatMs * 3;
  }

  /** Announce this instance; then refresh and reap every heart-beat. */
  async start(): Promise<void> {
    await this.announce();
    this.timer = setInterval(() => void this.tick(), this.options.heartbeatMs);
    this.timer.unref();
  }

  /** (Re)write this instance's liveness key and listing: at start and after Redis returns. */
  async announce(): Promise<void> {
    const { redis, keys, instanceId } = this.options;
    await redis.set(keys.instance(instanceId), this.livenessValue(), 'PX', this.ttlMs);
    await redis.sadd(keys.instances, instanceId);
  }

  /**
   * Every listed instance with its last report: this one's read live, the others' as they
   * wrote it with their latest refresh (how long ago: heartbeatAgeMs, from the key's TTL).
   */
  async instances(): Promise<InstanceView[]> {
    const { redis, keys, instanceId } = this.options;
    const self: InstanceView = { ...this.currentReport(), isSelf: true, isAlive: true, heartbeatAgeMs: 0 };
    const others = (await redis.smembers(keys.instances)).filter((id) => id !== instanceId).sort();
    const views = await Promise.all(
      others.map(async (id): Promise<InstanceView> => {
        const [value, ttlLeftMs] = await Promise.all([redis.get(keys.instance(id)), redis.pttl(keys.instance(id))]);
        let stored: { startedAt?: number; report?: InstanceReport } = {};
        try {
          stored = value === null ? {} : (JSON.parse(value) as typeof stored);
        } catch {
          stored = {};
        }
        const isAlive = value !== null && ttlLeftMs > 0;
        return {
          instanceId: id,
          startedAt: stored.report?.startedAt ?? stored.startedAt ?? 0,
          reportedAt: stored.report?.reportedAt ?? 0,
          isDegraded: stored.report?.isDegraded ?? false,
          degradedReason: stored.report?.degradedReason ?? null,
          counters: stored.report?.counters ?? NO_COUNTERS,
          isSelf: false,
          isAlive,
          heartbeatAgeMs: isAlive ? Math.max(0, this.ttlMs - ttlLeftMs) : this.ttlMs,
        };
      }),
    );
    return [self, ...views];
  }

  private currentReport(): InstanceReport {
    return (
      this.options.report?.() ?? {
        instanceId: this.options.instanceId,
        startedAt: this.startedAt,
        reportedAt: Date.now(),
        isDegraded: false,
        degradedReason: null,
        counters: NO_COUNTERS,
      }
    );
  }

  private livenessValue(): string {
    return JSON.stringify({ startedAt: this.startedAt, pid: process.pid, report: this.currentReport() });
  }

  /** Stop refreshing; with `forget`, remove this instance's keys (a graceful stop). */
  async stop(forget: boolean): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (!forget) return;
    const { redis, keys, instanceId } = this.options;
    await redis.del(keys.instance(instanceId), keys.instanceSessions(instanceId), keys.instanceUsers(instanceId));
    await redis.srem(keys.instances, instanceId);
  }

  async tick(): Promise<void> {
    if (this.isTicking) return; // Redis is slow: the previous tick still runs
    this.isTicking = true;
    try {
      const { redis, keys, instanceId } = this.options;
      const previous = await redis.set(keys.instance(instanceId), this.livenessValue(), 'PX', this.ttlMs, 'GET');
      if (previous === null) await this.livenessLost();
      await this.reapDead();
    } catch (err) {
      this.options.logger.debug({ err }, 'liveness tick failed (Redis unavailable?)');
    } finally {
      this.isTicking = false;
    }
  }

  /** The key had expired or vanished: find out why, say so, and be listed again. */
  private async livenessLost(): Promise<void> {
    const { redis, keys, instanceId, logger } = this.options;
    const wasReaped = (await redis.del(keys.reaped(instanceId))) === 1;
    logger.warn({ wasReaped }, wasReaped ? 'this instance was taken for dead and reaped: its sessions are closed' : 'this instance\'s liveness key was gone (Redis lost its data?): registering again');
    await this.announce();
    await this.options.onLivenessLost(wasReaped);
  }

  /** Reap every listed instance whose liveness key is gone; returns how many sessions were reported. */
  async reapDead(): Promise<number> {
    const { redis, keys, instanceId } = this.options;
    let reported = 0;
    for (const other of await redis.smembers(keys.instances)) {
      if (other === instanceId) continue;
      if ((await redis.exists(keys.instance(other))) === 1) continue;
      const claimed = await redis.set(keys.reaping(other), instanceId, 'PX', REAP_CLAIM_MS, 'NX');
      if (claimed !== 'OK') continue;
      reported += await this.reap(other);
    }
    return reported;
  }

  private async reap(deadId: string): Promise<number> {
    const { redis, keys, registry, logger, instanceId } = this.options;
    // Should the instance be alive after all (a long stall), it learns that it was reaped.
    await redis.set(keys.reaped(deadId), instanceId, 'EX', 86400);
    const sessionIds = await redis.smembers(keys.instanceSessions(deadId));
    let reported = 0;
    for (const sessionId of sessionIds) {
      const record = await registry.unregister(sessionId, deadId);
      if (record === undefined) continue;
      reported++;
      try {
        this.options.onSessionLost(record);
      } catch (err) {
        logger.error({ err, sessionId }, 'instance-lost handler failed');
      }
    }
    await this.options.onInstanceLost?.(deadId);
    await redis.del(keys.instanceSessions(deadId), keys.instanceUsers(deadId));
    await redis.srem(keys.instances, deadId);
    logger.info({ deadInstance: deadId, sessions: reported }, 'reaped a dead instance');
    return reported;
  }
}
