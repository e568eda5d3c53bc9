// RedisPresence alone on a real redis-server: a session whose JOIN was told and which leaves
// while Redis has just restarted empty (its entry not put back yet) is not lost — its LEAVE
// is told by the repair that follows; when Redis did not lose its data, such a leave (the
// entry was taken by a reaper) is not told a second time.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { decodeEnvelope } from '../../src/cluster/envelope';
import { RedisKeys } from '../../src/cluster/keys';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { RoomMatcher } from '../../src/presence/presence';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

describe('RedisPresence: a leave that finds no entry', { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;
  let subscriber: Redis;
  const heard: string[] = [];

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    subscriber = new Redis(server.url);
    await subscriber.psubscribe('ws:dest:*');
    subscriber.on('pmessageBuffer', (_pattern: Buffer, _channel: Buffer, bytes: Buffer) => {
      const body = JSON.parse(decodeEnvelope(bytes).body.toString()) as { type: string; userId: string };
      heard.push(`${body.type} ${body.userId}`);
    });
  });

  after(async () => {
    redis?.disconnect();
    subscriber?.disconnect();
    await server?.stop();
  });

  const presence = (): RedisPresence => new RedisPresence({ redis, keys: new RedisKeys('ws:'), instanceId: 'i1', matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: 'i1', logger: pino({ level: 'silent' }) });
  const entry = (sessionId: string, userId: string) => ({ sessionId, userId, roles: [], joinedAt: 1 });

  it('Redis restarted empty before the leave: the repair tells the LEAVE', async () => {
    const store = presence();
    await store.join('/topic/room.a', entry('s1', 'ann'));
    await until(() => heard.includes('JOIN ann'), 'the JOIN');
    await redis.flushall(); // Redis restarted empty
    await store.leave('/topic/room.a', entry('s1', 'ann'), 'disconnect'); // no entry left to remove
    assert.ok(!heard.includes('LEAVE ann'), 'nothing told yet');
    await store.repair(true);
    await until(() => heard.includes('LEAVE ann'), 'the LEAVE told by the repair');
  });

  it('Redis kept its data (a reaper took the entry): the repair tells nothing more', async () => {
    const store = presence();
    await store.join('/topic/room.b', entry('s2', 'bob'));
    await until(() => heard.includes('JOIN bob'), 'the JOIN');
    const reaper = presence();
    await reaper.onInstanceLost('i1'); // the LEAVE, told once
    await until(() => heard.includes('LEAVE bob'), 'the reaper\'s LEAVE');
    await store.leave('/topic/room.b', entry('s2', 'bob'), 'disconnect');
    await store.repair(false);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(heard.filter((e) => e === 'LEAVE bob'), ['LEAVE bob']);
  });
});
