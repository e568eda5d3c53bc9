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
import { LuaScript } from '../../src/cluster/lua';

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

  const presence = (): RedisPresence =>
    new RedisPresence({ redis, keys: new RedisKeys('ws:'), instanceId: 'i1', matcher: new RoomMatcher(['/topic/room.*'], undefined), messageIdPrefix: 'i1', logger: pino({ level: 'silent' }) });
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
    await until(() => heard.includes('LEAVE bob'), "the reaper's LEAVE");
    await store.leave('/topic/room.b', entry('s2', 'bob'), 'disconnect');
    await store.repair(false);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(
      heard.filter((e) => e === 'LEAVE bob'),
      ['LEAVE bob'],
    );
  });

  it('a session that leaves while the repair after an empty restart runs is not put back: no ghost, its LEAVE told once, no second JOIN', async () => {
    const store = presence();
    const room = '/topic/room.c';
    await store.join(room, entry('s3', 'cat'));
    await store.join(room, entry('s4', 'dan'));
    await until(() => heard.includes('JOIN cat') && heard.includes('JOIN dan'), 'the JOINs');
    await redis.flushall(); // Redis restarted empty
    const inRoom = new Set(['s3', 's4']);
    store.localEntries = () => new Map([[room, [entry('s3', 'cat'), entry('s4', 'dan')]]]); // the list the repair takes
    store.isLocalEntry = (sessionId) => inRoom.has(sessionId);
    // cat leaves just after the repair took its list; dan leaves while the repair reads the room's entries.
    inRoom.delete('s3');
    await store.leave(room, entry('s3', 'cat'), 'disconnect');
    const realHgetall = redis.hgetall.bind(redis) as (...args: unknown[]) => Promise<Record<string, string>>;
    let isDanGone = false;
    (redis as unknown as { hgetall: (...args: unknown[]) => Promise<Record<string, string>> }).hgetall = (...args: unknown[]) => {
      if (!isDanGone) {
        isDanGone = true;
        inRoom.delete('s4'); // the tracker's view changes at once; its leave step follows
        void store.leave(room, entry('s4', 'dan'), 'unsubscribe');
      }
      return realHgetall(...args);
    };
    try {
      await store.repair(true);
    } finally {
      (redis as unknown as { hgetall: unknown }).hgetall = realHgetall;
    }
    await until(() => heard.includes('LEAVE cat') && heard.includes('LEAVE dan'), 'both LEAVEs');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await redis.hlen(`ws:presence:{${room}}:sessions`), 0, 'no entry left behind');
    assert.deepEqual(
      heard.filter((e) => e.endsWith(' cat') || e.endsWith(' dan')),
      ['JOIN cat', 'JOIN dan', 'LEAVE cat', 'LEAVE dan'],
    );
  });

  it('a leave step that failed while Redis stayed connected marks the store for repair; the repair removes the entry and tells the LEAVE', async () => {
    const store = presence();
    const room = '/topic/room.d';
    await store.join(room, entry('s5', 'eve'));
    await until(() => heard.includes('JOIN eve'), 'the JOIN');
    assert.equal(store.needsRepair, false);
    // presence-leave.lua fails; every other script runs.
    const realRun = Object.getOwnPropertyDescriptor(LuaScript.prototype, 'runForBuffers')!.value as LuaScript['runForBuffers'];
    LuaScript.prototype.runForBuffers = function (this: LuaScript, keys, args) {
      return this.name === 'presence-leave' ? Promise.reject(new Error('Command timed out')) : realRun.call(this, keys, args);
    };
    try {
      await assert.rejects(store.leave(room, entry('s5', 'eve'), 'disconnect'));
    } finally {
      LuaScript.prototype.runForBuffers = realRun;
    }
    assert.equal(store.needsRepair, true, 'a failed step asks for a repair');
    assert.equal(await redis.hlen(`ws:presence:{${room}}:sessions`), 1, 'the entry is still there');
    store.localEntries = () => new Map(); // eve's session is gone
    store.isLocalEntry = () => false;
    await store.repair();
    assert.equal(store.needsRepair, false);
    await until(() => heard.includes('LEAVE eve'), 'the LEAVE told by the repair');
    assert.equal(await redis.hlen(`ws:presence:{${room}}:sessions`), 0);
  });
});
