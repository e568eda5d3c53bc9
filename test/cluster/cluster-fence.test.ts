// On a Redis Cluster no script may span the liveness key's slot and another's, so every
// registration, room join and queue listing first claims its entry in one of the instance's
// own sets (same hash tag as its liveness key) with the writer's generation checked there
// (instance-claim.lua). Here, on a real 3-master Cluster: a writer that still believes it is
// joined (stalled through its reap) but holds a generation that is not the live one writes
// nothing anywhere; the live generation writes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { RedisKeys } from '../../src/cluster/keys';
import { FencedError, RedisQueueStore } from '../../src/cluster/queue-store';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { ClusterRegistryWrites } from '../../src/cluster/registry-writes-cluster';
import { RoomMatcher } from '../../src/presence/presence';
import type { SessionRecord } from '../../src/registry/registry';
import { startRedisCluster } from '../helpers/redis';
import type { RedisCluster } from '../helpers/redis';

describe('on a Redis Cluster, a fenced generation writes nothing (instance-claim.lua)', { timeout: 90_000 }, () => {
  let cluster: RedisCluster;
  let redis: RedisConnection;
  const keys = new RedisKeys('cf:');
  const live = { key: keys.instance('i1'), generation: '7' };
  const stale = { key: keys.instance('i1'), generation: '6' };

  before(async () => {
    cluster = await startRedisCluster();
    redis = connectRedis({ url: undefined, clusterNodes: cluster.servers.map((s) => ({ host: '127.0.0.1', port: s.port })), prefix: 'cf:', sessionTtlSeconds: 60, instanceHeartbeatMs: 1000 }, { name: 'stompd:i1' });
    await whenReady(redis, 10_000);
    // The live generation is 7: the stalled writer still holds 6, the one a reaper removed.
    await redis.set(live.key, live.generation);
  });

  after(async () => {
    redis?.disconnect();
    await cluster?.stop();
  });

  it('registry: a registration of the stale generation is refused ([-1]) before any key is written', async () => {
    const record = (sessionId: string): SessionRecord => ({ sessionId, userId: `u-${sessionId}`, roles: [], instanceId: 'i1', transport: 'tcp', remoteAddress: '127.0.0.1:1', connectedAt: 1, lastSeenAt: 1 });
    let fence = stale;
    const writes = new ClusterRegistryWrites({ redis, keys, sessionTtlSeconds: 60, writer: () => ({ isJoined: true, fence }) });
    assert.deepEqual(await writes.register({ record: record('s-old'), max: 1, mode: 'reject', dead: [] }), [-1]);
    assert.equal(await redis.sismember(keys.instanceSessions('i1'), 's-old'), 0);
    assert.equal(await redis.exists(keys.session('s-old')), 0);
    assert.equal(await redis.exists(keys.user('u-s-old')), 0);
    assert.equal(await redis.sismember(keys.allSessions, 's-old'), 0);

    fence = live;
    assert.deepEqual(await writes.register({ record: record('s-new'), max: 1, mode: 'reject', dead: [] }), [1]);
    assert.equal(await redis.sismember(keys.instanceSessions('i1'), 's-new'), 1);
    assert.deepEqual(await redis.zrange(keys.user('u-s-new'), 0, -1), ['s-new']);
  });

  it('presence: a join of the stale generation is refused, with no room entry and no rooms list', async () => {
    const presence = new RedisPresence({ redis, keys, instanceId: 'i1', matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: 'i1', logger: pino({ level: 'silent' }) });
    const rooms = `${keys.prefix}presence:instance:{i1}:rooms`;
    const sessions = (room: string): string => `${keys.prefix}presence:{${room}}:sessions`;
    presence.writer = () => ({ isJoined: true, fence: stale });
    await assert.rejects(presence.join('/topic/room.c', { sessionId: 'p1', userId: 'ann', roles: [], joinedAt: 1 }), /fenced/);
    assert.equal(await redis.exists(rooms), 0);
    assert.equal(await redis.hexists(sessions('/topic/room.c'), 'p1'), 0);

    presence.writer = () => ({ isJoined: true, fence: live });
    await presence.join('/topic/room.c', { sessionId: 'p2', userId: 'bob', roles: [], joinedAt: 2 });
    assert.deepEqual(await redis.smembers(rooms), ['/topic/room.c']);
    assert.equal(await redis.hexists(sessions('/topic/room.c'), 'p2'), 1);
  });

  it("queues: the stale generation's listing for the reaper is refused (FencedError), the live one's is kept", async () => {
    let fence = stale;
    const store = new RedisQueueStore(redis, keys, () => fence);
    await assert.rejects(store.listConsumed('i1', '/queue/jobs'), FencedError);
    assert.deepEqual(await store.consumedBy('i1'), []);
    fence = live;
    await store.listConsumed('i1', '/queue/jobs');
    assert.deepEqual(await store.consumedBy('i1'), ['/queue/jobs']);
  });
});
