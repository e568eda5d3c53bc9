// One instance's membership in a multi-instance broker: the Redis registry, liveness and
// reaping, the relay, cross-instance kicks and revocations. server.ts loads this file only
// when REDIS_URL or REDIS_CLUSTER_NODES is set (a dynamic import), so embedded mode never
// loads ioredis.
//
// Redis outages: local delivery never stops. Publishes to other instances fail fast and are
// counted (pub/sub is at-most-once between instances). A CONNECT whose policy needs a
// decision across instances (SINGLE_SESSION, MAX_SESSIONS_PER_USER) is refused with
// UNAVAILABLE; one without such a limit is admitted and registered when Redis is back.
// When the connection is ready again the instance re-announces itself, re-subscribes its
// channels and reconciles its sessions (re-registers the live, removes the gone), so a
// Redis that restarted empty is rebuilt from the live sessions.

import type { Logger } from 'pino';
import type { RevocationStore } from '../auth/revocation';
import { Message } from '../broker/message';
import type { Router } from '../broker/router';
import type { RedisConfig } from '../config';
import type { InstanceReport, InstanceView } from '../registry/instances';
import type { SessionRecord } from '../registry/registry';
import type { RemoteSessions } from '../session/admin';
import type { StompErrorCode } from '../session/errors';
import type { DisconnectReason, LifecycleEvents } from '../session/events';
import type { RoomMatcher } from '../presence/presence';
import { RedisKeys } from './keys';
import { parseControl } from './control';
import type { ControlCode, ControlMessage } from './control';
import { InstanceMembership } from './membership';
import { connectRedis, isCluster, whenReady } from './redis-client';
import type { RedisConnection } from './redis-client';
import { PresenceSequencer } from './presence-sequencer';
import { PresenceViews, isRepairEnvelope } from './presence-views';
import { RedisPresence } from './redis-presence';
import { RedisRegistry } from './redis-registry';
import { RedisRelay } from './redis-relay';
import type { RelayStats } from './redis-relay';
import { RedisQueues } from './redis-queues';
import type { RedisQueueCounts } from './redis-queues';
import { RedisRevocations } from './redis-revocations';
import { RedisOutboxes } from './redis-outbox';

export interface ClusterNodeDeps {
  redis: RedisConfig;
  instanceId: string;
  revocationTtlSeconds: number;
  router: Router;
  events: LifecycleEvents;
  logger: Logger;
  /** Which destinations are rooms (presence). */
  presenceRooms: RoomMatcher;
  /** Close a session of this instance; false if it is not here. */
  kickLocal(sessionId: string, code: StompErrorCode, message: string, reason: DisconnectReason): boolean;
  /** Queue limits: MAX_QUEUE_MESSAGES undelivered per queue (queue-publish.lua), MAX_QUEUES in all. */
  maxQueueMessages: number;
  maxQueues: number;
  /** Close every session of a user on this instance; returns how many. */
  kickLocalUser(userId: string, code: StompErrorCode, message: string, reason: DisconnectReason): number;
  /** Close every session of this instance; returns how many. */
  closeAllLocal(code: StompErrorCode, message: string, reason: DisconnectReason): number;
  /** This instance's totals, published with each liveness refresh (the degraded state is added here). */
  report(): Omit<InstanceReport, 'isDegraded' | 'degradedReason'>;
}

export interface ClusterHealth {
  isDegraded: boolean;
  /** Why, when degraded. */
  reason: string | undefined;
  relay: RelayStats;
  queues: RedisQueueCounts;
  /** Connections to Redis made again after a loss (not the first one). */
  reconnects: number;
  /** Round trips of a PING sent every instance heart-beat: the command latency as this instance sees it. */
  redisLatency: RedisLatency;
}

export interface RedisLatency {
  lastMs: number;
  sumMs: number;
  count: number;
}

export interface ClusterNode {
  readonly registry: RedisRegistry;
  readonly revocations: RevocationStore;
  readonly remote: RemoteSessions;
  readonly presence: RedisPresence;
  /** Session events for the backend hooks, kept in Redis streams (used only when they are on). */
  readonly eventOutboxes: RedisOutboxes;
  readonly isDegraded: boolean;
  health(): ClusterHealth;
  /** Every instance with its last report (GET /api/instances, the dashboard). */
  instances(): Promise<InstanceView[]>;
  /** Leave: forget this instance's keys (its sessions were closed first), close the connections. */
  stop(): Promise<void>;
}

/** How long start waits for Redis before going on degraded. */
const START_WAIT_MS = 5000;

export async function startClusterNode(deps: ClusterNodeDeps): Promise<ClusterNode> {
  const { redis: config, instanceId, logger, router, events } = deps;
  const keys = new RedisKeys(config.prefix);
  const name = `stompd:${instanceId}`;
  const commands = connectRedis(config, { name });
  const subscriber: RedisConnection = isCluster(commands) ? connectRedis(config, { name, isSubscriber: true }) : commands.duplicate({ connectionName: `${name}:sub` });
  for (const connection of [commands, subscriber]) connection.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));

  const registry = new RedisRegistry({ redis: commands, keys, instanceId, sessionTtlSeconds: config.sessionTtlSeconds });
  // Declared before membership: the reaper gives a dead instance's queue messages back through it.
  let queues: RedisQueues | undefined;
  const onControl = (control: ControlMessage): void => {
    if (control.type === 'kick') deps.kickLocal(control.sessionId, control.code, control.message, control.code === 'LOGGED_OUT' ? 'logged-out' : 'kicked');
    else {
      if (control.revokedAt !== undefined) revocations.remember(control.userId, control.revokedAt);
      deps.kickLocalUser(control.userId, control.code, control.message, control.code === 'LOGGED_OUT' ? 'logged-out' : 'kicked');
    }
  };
  const membership = new InstanceMembership({
    redis: commands,
    keys,
    instanceId,
    heartbeatMs: config.instanceHeartbeatMs,
    registry,
    logger,
    onFenced: () => {
      // Its sessions were (or are being) reported lost and their users may have connected
      // elsewhere: keeping them would make duplicates. Clients reconnect.
      const closed = deps.closeAllLocal('UNAVAILABLE', 'this instance was out of touch with the others and its sessions were taken for lost; reconnect', 'instance-fenced');
      logger.warn({ closed }, 'closed the sessions of this instance\'s reaped generation');
    },
    onLeaseLost: () => {
      let closed = 0;
      for (const sessionId of registry.limitedSessionIds()) {
        if (deps.kickLocal(sessionId, 'UNAVAILABLE', 'this instance lost touch with Redis: the session limit cannot be kept; reconnect', 'instance-fenced')) closed++;
      }
      if (closed > 0) logger.warn({ closed }, 'closed the sessions under a session limit: the liveness lease ran out');
    },
    onLivenessLost: async (_wasReaped, isNewRedis) => {
      queues?.resumeAsMember();
      // Each step on its own: a registry that fails to reconcile must not keep presence stale.
      let registryError: unknown;
      await (isNewRedis ? registry.rebuild() : registry.reconcile()).catch((err: unknown) => {
        registryError = err;
        logger.warn({ err }, 'could not reconcile the registry; tried again on the next heart-beat or refresh');
      });
      await presence.repair(isNewRedis);
      // A dead instance's members went with the data, with no LEAVE and nobody to reap them.
      if (isNewRedis) views.auditAll();
      // After a data loss the sessions must be registered again: membership retries until they are.
      if (isNewRedis && registryError !== undefined) throw registryError;
    },
    onSessionLost: (record) => {
      logger.info({ sessionId: record.sessionId, userId: record.userId, deadInstance: record.instanceId }, 'session lost with its instance');
      events.emit('disconnect', { session: infoOf(record), reason: 'instance-lost' });
    },
    onInstanceLost: async (deadId) => {
      await queues?.reapInstance(deadId);
      await presence.reapInstance(deadId);
      await eventOutboxes.instanceReaped(deadId);
    },
    onCommand: (command) => {
      const control = parseControl(command);
      if (control === undefined) logger.warn('an invalid inbox command was dropped');
      else onControl(control);
    },
    report: () => ({ ...deps.report(), isDegraded: degradedReason !== undefined, degradedReason: degradedReason ?? null }),
  });
  registry.membership = membership;
  registry.onDisplaced = (sessionId, code, message) => {
    if (deps.kickLocal(sessionId, code, message, 'kicked')) logger.info({ sessionId, code }, 'closed a session the registry no longer holds');
  };
  const revocations = new RedisRevocations(commands, keys, deps.revocationTtlSeconds);
  const eventOutboxes = new RedisOutboxes({ redis: commands, keys, instanceId, logger });
  const relay = new RedisRelay({
    publisher: commands,
    subscriber,
    keys,
    instanceId,
    logger,
    deliver: (e) => sequencer.onEnvelope(e),
    onControl,
    onResubscribed: () => sequencer.resyncAll(),
  });
  const presence = new RedisPresence({ redis: commands, keys, instanceId, matcher: deps.presenceRooms, messageIdPrefix: instanceId, logger });
  // Declared after the relay that calls it (it only runs once messages arrive).
  const sequencer: PresenceSequencer = new PresenceSequencer({
    recentEvents: (destination) => presence.recentEvents(destination),
    deliver: (e) => {
      if (isRepairEnvelope(e)) {
        views.onRepair(e);
        return;
      }
      views.onDelivered(e);
      router.deliverRemote(new Message(e.messageId, e.destination, e.routeKey, e.headers, e.body));
    },
    onLost: (routeKey) => views.audit(routeKey),
    logger,
  });
  const views = new PresenceViews({
    read: (room) => presence.view(room),
    currentSeq: (room) => presence.currentSeq(room),
    deliverLocal: (message) => router.deliverRemote(message),
    isFilling: (routeKey) => sequencer.isFilling(routeKey),
    catchUp: (routeKey) => sequencer.catchUp(routeKey),
    matcher: deps.presenceRooms,
    confirmMs: config.instanceHeartbeatMs * 4,
    messageIdPrefix: instanceId,
    logger,
  });
  presence.watcherLists = (room, fromRedis) => views.snapshot(room, fromRedis);
  queues = new RedisQueues({ redis: commands, keys, instanceId, maxQueueMessages: deps.maxQueueMessages, maxQueues: deps.maxQueues, signals: relay, logger, isMember: () => membership.isJoined });
  const queueBackend = queues;

  let degradedReason: string | undefined = 'connecting to Redis';
  let isStopping = false;
  const setDegraded = (reason: string | undefined): void => {
    if (reason === degradedReason) return;
    if (reason !== undefined && degradedReason === undefined) logger.warn({ reason }, 'Redis unavailable: degraded (local delivery goes on; CONNECTs needing a session limit are refused)');
    if (reason === undefined && degradedReason !== undefined) logger.info('Redis available again: registry and relay restored');
    degradedReason = reason;
  };
  let readyCount = 0;
  // Each (re)connection: announce, reconcile sessions, then count as healthy.
  const onReady = (): void => {
    if (isStopping) return;
    readyCount++;
    // Membership first: a generation reaped while Redis was away writes nothing more.
    membership
      .announce()
      .then(async () => {
        if (!membership.isJoined) return;
        queueBackend.resumeAsMember();
        await registry.reconcile();
        await presence.repair();
      })
      .then(() => setDegraded(subscriber.status === 'ready' ? undefined : 'Redis subscriber connection down'))
      .catch((err: unknown) => logger.warn({ err }, 'could not restore the registry after a reconnect; retrying on the next one'));
  };
  commands.on('ready', onReady);
  for (const connection of [commands, subscriber]) {
    connection.on('close', () => {
      if (!isStopping) setDegraded('Redis connection lost');
    });
  }
  subscriber.on('ready', () => {
    if (commands.status === 'ready' && degradedReason === 'Redis subscriber connection down') setDegraded(undefined);
  });

  router.attachRelay({
    publish: (message) => relay.publish(message),
    setInterest: (routeKey, isInterested) => {
      if (!isInterested) sequencer.forget(routeKey);
      else if (deps.presenceRooms.isRoom(routeKey) || deps.presenceRooms.roomOfCompanion(routeKey) !== undefined) {
        presence.currentSeq(routeKey).then((seq) => sequencer.track(routeKey, seq), () => undefined);
      }
      views.setInterest(routeKey, isInterested);
      return relay.setInterest(routeKey, isInterested);
    },
  });
  router.attachQueueBackend(queueBackend);
  try {
    await Promise.all([whenReady(commands, START_WAIT_MS), whenReady(subscriber, START_WAIT_MS)]);
    await relay.start();
  } catch (err) {
    logger.warn({ err }, 'Redis not reachable at start: running degraded until it is');
  }
  await membership.start().catch(() => undefined); // announce again on 'ready'
  const refreshMs = Math.min((config.sessionTtlSeconds * 1000) / 3, 30_000);
  const refreshTimer = setInterval(() => {
    registry.refresh().catch(() => undefined);
  }, refreshMs);
  refreshTimer.unref();
  // A join or leave step that failed while Redis stayed connected (a reply that timed out)
  // is not followed by a reconnect's repair: the same repair runs a couple of heart-beats on.
  let isRepairing = false;
  const repairTimer = setInterval(() => {
    if (isRepairing || !presence.needsRepair || !membership.isJoined || commands.status !== 'ready') return;
    isRepairing = true;
    presence
      .repair()
      .catch((err: unknown) => logger.debug({ err }, 'presence repair failed; tried again'))
      .finally(() => (isRepairing = false));
  }, config.instanceHeartbeatMs * 2);
  repairTimer.unref();
  const redisLatency: RedisLatency = { lastMs: 0, sumMs: 0, count: 0 };
  const pingTimer = setInterval(() => {
    if (commands.status !== 'ready') return;
    const startedAt = process.hrtime.bigint();
    commands.ping().then(
      () => {
        const ms = Number(process.hrtime.bigint() - startedAt) / 1e6;
        redisLatency.lastMs = ms;
        redisLatency.sumMs += ms;
        redisLatency.count++;
      },
      () => undefined,
    );
  }, config.instanceHeartbeatMs);
  pingTimer.unref();

  const remote: RemoteSessions = {
    // Twice: through the holder's inbox (kept in Redis, read every heart-beat) and over pub/sub (at once).
    // The session also leaves the registry here: should both messages be lost, the holder's
    // registry check closes it anyway (a session the registry no longer holds is closed).
    kickSession: async (sessionId, code, message) => {
      const control: ControlMessage = { type: 'kick', sessionId, code: controlCode(code), message };
      const holder = await registry.get(sessionId).catch(() => undefined);
      if (holder !== undefined) {
        await registry.tell(sessionId, control.code, message).catch(() => false);
        await registry.unregister(sessionId, holder.instanceId).catch(() => undefined);
      }
      return relay.publishControl(control);
    },
    kickUser: async (userId, code, message, revokedAt) => {
      const control: ControlMessage = { type: 'kick-user', userId, code: controlCode(code), message, ...(revokedAt !== undefined ? { revokedAt } : {}) };
      const holders = (await registry.sessionsOf(userId).catch(() => [])).filter((r) => r.instanceId !== instanceId);
      for (const holderInstance of new Set(holders.map((r) => r.instanceId))) await registry.pushInbox(holderInstance, control).catch(() => undefined);
      for (const holder of holders) await registry.unregister(holder.sessionId, holder.instanceId).catch(() => undefined);
      return relay.publishControl(control);
    },
  };

  return {
    registry,
    revocations,
    remote,
    presence,
    eventOutboxes,
    get isDegraded() {
      return degradedReason !== undefined;
    },
    health: () => ({
      isDegraded: degradedReason !== undefined,
      reason: degradedReason,
      relay: relay.stats,
      queues: { ...queueBackend.counts },
      reconnects: Math.max(0, readyCount - 1),
      redisLatency: { ...redisLatency },
    }),
    instances: () => membership.instances(),
    async stop() {
      isStopping = true;
      clearInterval(repairTimer);
      clearInterval(refreshTimer);
      clearInterval(pingTimer);
      eventOutboxes.stop();
      await registry.settle(2000);
      await queueBackend.stop(2000); // the closed sessions' unacknowledged messages are given back first
      // Whatever leave the closing sessions left undone is told now (exactly once with theirs).
      if (commands.status === 'ready') await presence.reapInstance(instanceId).catch(() => undefined);
      await membership.stop(commands.status === 'ready').catch(() => undefined);
      await Promise.allSettled([commands.quit(), subscriber.quit()]);
    },
  };
}

function controlCode(code: StompErrorCode): ControlCode {
  return code === 'LOGGED_OUT' || code === 'SESSION_REPLACED' || code === 'UNAVAILABLE' ? code : 'KICKED';
}

function infoOf(record: SessionRecord) {
  return {
    sessionId: record.sessionId,
    userId: record.userId,
    roles: record.roles,
    isAnonymous: false,
    transport: record.transport === 'ws' ? ('ws' as const) : ('tcp' as const),
    remoteAddress: record.remoteAddress,
    version: '1.2' as const,
    connectedAt: record.connectedAt,
  };
}
