// RedisPresence alone on a real redis-server: a join sent by a generation that was reaped
// meanwhile (the instance stalled or was overloaded past its liveness TTL, and a survivor
// took its entries away) writes nothing — neither the room entry nor the reaper's list of the
// instance's rooms — so no member is left that nobody would ever remove. The step fails, and
// the store asks for a repair (made once the instance has joined again).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { RedisKeys } from '../../src/cluster/keys';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { RoomMatcher } from '../../src/presence/presence';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe("RedisPresence: the join is fenced by the writer's generation", { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;
  const keys = new RedisKeys('wf:');

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });

  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  const presence = (instanceId: string): RedisPresence =>
    new RedisPresence({ redis, keys, instanceId, matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: instanceId, logger: pino({ level: 'silent' }) });
  const entry = (sessionId: string, userId: string) => ({ sessionId, userId, roles: [], joinedAt: 1 });
  const roomsOf = (instanceId: string): string => `${keys.prefix}presence:instance:{${instanceId}}:rooms`;
  const sessionsOf = (room: string): string => `${keys.prefix}presence:{${room}}:sessions`;

  it('a join after the reap writes no entry and no rooms list; a join of the live generation does', async () => {
    const store = presence('i1');
    const fence = { key: keys.instance('i1'), generation: '100' };
    store.writer = () => ({ isJoined: true, fence });
    await redis.set(fence.key, '100');
    await store.join('/topic/room.f', entry('s1', 'ann'));
    assert.equal(await redis.hexists(sessionsOf('/topic/room.f'), 's1'), 1, 'the live generation joins');
    assert.deepEqual(await redis.smembers(roomsOf('i1')), ['/topic/room.f'], 'the reaper will find the room');

    // The instance stalls; its liveness key expires and a survivor reaps generation 100.
    await redis.del(fence.key);
    const reaper = presence('i2');
    assert.equal((await reaper.onInstanceLost('i1')).roomEntries, 1);
    assert.equal(await redis.exists(roomsOf('i1')), 0);

    // The stalled instance resumes with a join already on its way.
    await assert.rejects(store.join('/topic/room.f', entry('s2', 'bob')), /fenced/);
    assert.equal(await redis.hexists(sessionsOf('/topic/room.f'), 's2'), 0, 'no entry for a session of a reaped generation');
    assert.equal(await redis.exists(roomsOf('i1')), 0, 'no rooms list the reaper already removed');
    assert.equal(store.needsRepair, true, 'the failed step asks for a repair');

    // A live key of another generation (the instance joined again under 200) fences too.
    await redis.set(fence.key, '200');
    await assert.rejects(store.join('/topic/room.f', entry('s3', 'cid')), /fenced/);
    assert.equal(await redis.hexists(sessionsOf('/topic/room.f'), 's3'), 0);
  });

  it('an instance that knows it is not a member (fenced, or joining again) writes nothing, on any kind of Redis', async () => {
    const store = presence('i3');
    store.writer = () => ({ isJoined: false, fence: { key: keys.instance('i3'), generation: '1' } });
    await redis.set(keys.instance('i3'), '1'); // the key alone would let the script through
    await assert.rejects(store.join('/topic/room.g', entry('s9', 'gus')), /fenced/);
    assert.equal(await redis.exists(sessionsOf('/topic/room.g'), roomsOf('i3')), 0);
    assert.equal(store.needsRepair, true);
  });
});
