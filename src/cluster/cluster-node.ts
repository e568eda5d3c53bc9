// The shared state of a multi-instance broker, in Redis: the parts of src/cluster/ built and
// wired together (registry, membership with its reaper, relay, queues, presence, revocations,
// outboxes). Wiring only: each part's behaviour is in its own file. server.ts loads this file
// only when REDIS_URL or REDIS_CLUSTER_NODES is set (a dynamic import), so embedded mode
// never loads ioredis.
//
// Redis outages: local delivery never stops. Publishes to other instances fail fast and are
// counted (pub/sub is at-most-once between instances). A CONNECT whose policy needs a
// decision across instances (SINGLE_SESSION, MAX_SESSIONS_PER_USER) is refused with
// UNAVAILABLE; one without such a limit is admitted and registered when Redis is back.
// When the connection is ready again the instance asks membership "was I reaped?" before
// anything else, re-subscribes its channels and restores its sessions (membership-reactions.ts),
// so a Redis that restarted empty is rebuilt from the live sessions.

import { Message } from '../broker/message';
import type { RedisConfig } from '../config';
import type { SharedState, SharedStateDeps } from '../shared-state';
import { parseControl } from './control';
import type { InstanceLossHandler } from './instance-loss';
import { RedisKeys } from './keys';
import { InstanceMembership } from './membership';
import { membershipReactions } from './membership-reactions';
import { presenceRelay } from './presence-relay';
import { PresenceSequencer } from './presence-sequencer';
import { PresenceViews, isRepairEnvelope } from './presence-views';
import { connectRedis, isCluster, whenReady } from './redis-client';
import type { RedisConnection } from './redis-client';
import { RedisHealth } from './redis-health';
import { RedisOutboxes } from './redis-outbox';
import { RedisPresence } from './redis-presence';
import { RedisQueues } from './redis-queues';
import { RedisRegistry } from './redis-registry';
import { RedisRelay } from './redis-relay';
import { RedisRevocations } from './redis-revocations';
import { controlActor, lostSessionReporter, redisRemoteSessions } from './remote-sessions';

export type ClusterNodeDeps = SharedStateDeps & { redis: RedisConfig };

/** How long start waits for Redis before going on degraded. */
const START_WAIT_MS = 5000;
/** How long a stop waits for each part's work under way (unbinds, give-backs). */
const STOP_WAIT_MS = 2000;

export async function startClusterNode(deps: ClusterNodeDeps): Promise<SharedState> {
  const { redis: config, instanceId, logger, router, events, local } = deps;
  const keys = new RedisKeys(config.prefix);
  const name = `stompd:${instanceId}`;
  const commands = connectRedis(config, { name });
  const subscriber: RedisConnection = isCluster(commands) ? connectRedis(config, { name, isSubscriber: true }) : commands.duplicate({ connectionName: `${name}:sub` });
  for (const connection of [commands, subscriber]) connection.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
  const health = new RedisHealth(commands, subscriber, logger);

  const registry = new RedisRegistry({ redis: commands, keys, instanceId, sessionTtlSeconds: config.sessionTtlSeconds });
  const revocations = new RedisRevocations(commands, keys, deps.revocationTtlSeconds);
  const eventOutboxes = new RedisOutboxes({ redis: commands, keys, instanceId, logger });
  const actOnControl = controlActor(local, revocations);
  const relay = new RedisRelay({
    publisher: commands,
    subscriber,
    keys,
    instanceId,
    logger,
    deliver: (e) => sequencer.onEnvelope(e),
    onControl: actOnControl,
    onResubscribed: () => sequencer.resyncAll(),
    onFlowReport: (origin, waiting, ttlMs) => router.flow?.reportFrom(origin, waiting, ttlMs),
  });
  const presence = new RedisPresence({ redis: commands, keys, instanceId, matcher: deps.presenceRooms, messageIdPrefix: instanceId, logger });
  presence.localEntries = () => deps.localPresence.entries();
  presence.isLocalEntry = (sessionId, room) => deps.localPresence.isInRoom(sessionId, room);
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
  const queues = new RedisQueues({
    redis: commands,
    keys,
    instanceId,
    maxQueueMessages: deps.maxQueueMessages,
    maxQueues: deps.maxQueues,
    signals: relay,
    logger,
    isMember: () => membership.isJoined,
    fence: () => membership.fence,
  });
  // The queues' side of a reap: a dead instance's unacknowledged messages are given back.
  const queueLoss: InstanceLossHandler = { onInstanceLost: async (deadId) => ({ queueEntries: await queues.reapInstance(deadId) }) };
  const reactions = membershipReactions({ local, registry, queues, presence, views, logger });
  const membership = new InstanceMembership({
    redis: commands,
    keys,
    instanceId,
    heartbeatMs: config.instanceHeartbeatMs,
    members: [registry, queueLoss, presence, eventOutboxes],
    logger,
    onFenced: () => reactions.onFenced(),
    onLeaseLost: () => reactions.onLeaseLost(),
    // After a data loss the sessions must be registered again: membership retries until they
    // are (a failed reconcile after an expired key is left to the next refresh).
    onLivenessLost: (_wasReaped, isNewRedis) =>
      reactions.restore(isNewRedis).catch((err: unknown) => {
        if (isNewRedis) throw err;
      }),
    onCommand: (command) => {
      const control = parseControl(command);
      if (control === undefined) logger.warn('an invalid inbox command was dropped');
      else actOnControl(control);
    },
    report: () => ({ ...deps.report(), isDegraded: health.isDegraded, degradedReason: health.degradedReason ?? null }),
  });
  registry.membership = membership;
  presence.writer = () => membership;
  registry.onDisplaced = (sessionId, code, message) => {
    if (local.kick(sessionId, code, message, 'kicked')) logger.info({ sessionId, code }, 'closed a session the registry no longer holds');
  };
  registry.onSessionLost = lostSessionReporter(events, logger);

  // Each (re)connection: "was I reaped?" first (a generation reaped while Redis was away
  // writes nothing more), then restore, then healthy.
  commands.on('ready', () => {
    health
      .onReady(async () => {
        await membership.announce();
        // Healthy only once the registry agrees again (else degraded until the next reconnect).
        if (membership.isJoined) await reactions.restore(false);
      })
      .catch((err: unknown) => logger.warn({ err }, 'could not restore the registry after a reconnect; retrying on the next one'));
  });
  router.attachRelay(presenceRelay({ relay, rooms: deps.presenceRooms, currentSeq: (routeKey) => presence.currentSeq(routeKey), sequencer, views }));
  router.attachQueueBackend(queues);
  try {
    await Promise.all([whenReady(commands, START_WAIT_MS), whenReady(subscriber, START_WAIT_MS)]);
    await relay.start();
  } catch (err) {
    logger.warn({ err }, 'Redis not reachable at start: running degraded until it is');
  }
  await membership.start().catch(() => undefined); // announce again on 'ready'
  const refreshTimer = setInterval(() => void registry.refresh().catch(() => undefined), Math.min((config.sessionTtlSeconds * 1000) / 3, 30_000));
  refreshTimer.unref();
  // A join or leave step that failed while Redis stayed connected (a reply that timed out)
  // is not followed by a reconnect's repair: the same repair runs a couple of heart-beats on.
  const repairTimer = setInterval(() => void reactions.repairPresenceIfNeeded(membership.isJoined && commands.status === 'ready', () => membership.isSameRedis()), config.instanceHeartbeatMs * 2);
  repairTimer.unref();
  health.startPinging(config.instanceHeartbeatMs);

  return {
    registry,
    revocations,
    presenceStore: presence,
    remote: redisRemoteSessions(registry, relay, instanceId),
    eventOutboxes: async () => eventOutboxes,
    instances: membership,
    health: () => ({
      isDegraded: health.isDegraded,
      reason: health.degradedReason,
      relay: relay.stats,
      queues: { ...queues.counts },
      reconnects: health.reconnects,
      redisLatency: health.redisLatency,
    }),
    async stop() {
      health.stop();
      clearInterval(repairTimer);
      clearInterval(refreshTimer);
      eventOutboxes.stop();
      await registry.finishUnbinds(STOP_WAIT_MS);
      await queues.stop(STOP_WAIT_MS); // the closed sessions' unacknowledged messages are given back first
      // Whatever leave the closing sessions left undone is told now (exactly once with theirs).
      if (commands.status === 'ready') await presence.leaveEverywhere(instanceId).catch(() => undefined);
      await membership.stop(commands.status === 'ready').catch(() => undefined);
      await Promise.allSettled([commands.quit(), subscriber.quit()]);
    },
  };
}
