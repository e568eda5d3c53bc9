// membershipReactions with a real RedisPresence on a real redis-server: a leave that failed
// while Redis was away, and Redis back empty. The periodic presence repair may come before
// membership has noticed the new Redis; it must not take the LEAVE Redis forgot for one a
// reaper told (and drop it): the restore that follows tells it.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import pino from 'pino';
import { decodeEnvelope } from '../../src/cluster/envelope';
import { RedisKeys } from '../../src/cluster/keys';
import { membershipReactions } from '../../src/cluster/membership-reactions';
import type { ReactionDeps } from '../../src/cluster/membership-reactions';
import { RedisPresence } from '../../src/cluster/redis-presence';
import { RoomMatcher } from '../../src/presence/presence';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';
import { LuaScript } from '../../src/cluster/lua';

describe('membership reactions: the periodic presence repair and a Redis that came back empty', { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;
  let subscriber: Redis;
  const heard: string[] = [];

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    subscriber = new Redis(server.url);
    await subscriber.psubscribe('mr:dest:*');
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

  it('a repair while Redis may be new waits for membership; the restore tells the LEAVE Redis forgot', async () => {
    const presence = new RedisPresence({ redis, keys: new RedisKeys('mr:'), instanceId: 'i1', matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: 'i1', logger: pino({ level: 'silent' }) });
    const entry = { sessionId: 's1', userId: 'ann', roles: [], joinedAt: 1 };
    await presence.join('/topic/room.m', entry);
    await until(() => heard.includes('JOIN ann'), 'the JOIN');
    // ann's session closes while Redis is away: the leave fails and waits for the repair.
    // presence-leave.lua fails; every other script runs.
    const realRun = Object.getOwnPropertyDescriptor(LuaScript.prototype, 'runForBuffers')!.value as LuaScript['runForBuffers'];
    LuaScript.prototype.runForBuffers = function (this: LuaScript, keys, args) {
      return this.name === 'presence-leave' ? Promise.reject(new Error("Stream isn't writeable")) : realRun.call(this, keys, args);
    };
    try {
      await assert.rejects(presence.leave('/topic/room.m', entry, 'socket-closed'));
    } finally {
      LuaScript.prototype.runForBuffers = realRun;
    }
    assert.equal(presence.needsRepair, true);
    await redis.flushall(); // Redis came back empty
    let repairs = 0;
    const deps = {
      presence,
      local: {},
      registry: { rebuild: async () => undefined, reconcile: async () => undefined },
      queues: { resumeAsMember: () => undefined },
      views: { auditAll: () => undefined },
      logger: pino({ level: 'silent' }),
    } as unknown as ReactionDeps;
    const realRepair = presence.repair.bind(presence);
    presence.repair = (isNewRedis?: boolean) => {
      repairs++;
      return realRepair(isNewRedis);
    };
    const reactions = membershipReactions(deps);
    // The timer's repair, before membership's check: Redis is not the one it knew.
    await reactions.repairPresenceIfNeeded(true, async () => false);
    assert.equal(repairs, 0, 'no repair while Redis may be new');
    // Membership notices the new Redis and restores.
    await reactions.restore(true);
    await until(() => heard.includes('LEAVE ann'), 'the LEAVE Redis forgot, told by the restore');
    // And with the same Redis, the timer repairs as before.
    await presence.join('/topic/room.m', { ...entry, sessionId: 's2', userId: 'bob' });
    const stored = await redis.hlen('mr:presence:{/topic/room.m}:sessions');
    assert.equal(stored, 1);
    assert.equal(await reactions.repairPresenceIfNeeded(true, async () => true), undefined, 'nothing failed since: no repair needed');
  });
});
