// The outbox and revocation scripts of src/cluster/lua run on their own against a real
// redis-server: appends bounded and indexed, a dead instance's outbox taken over once with an
// instance-lost DISCONNECT per open session that parses as a session event, and a logout
// that never moves back.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { LuaScript } from '../../src/cluster/lua';
import { parseStoredEvent } from '../../src/cluster/redis-outbox';
import { instanceLostEventId } from '../../src/backend/session-events';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe('the outbox and revocation scripts on a real Redis', { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });

  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  const event = (type: string, sessionId: string, n: number): string => JSON.stringify({ id: `e${n}`, type, sessionId, userId: 'u', roles: [], attributes: {}, at: n, instanceId: 'i1' });

  it('outbox-append: appends in order, tracks open sessions, trims past its bound and says how many', async () => {
    const append = new LuaScript(redis, 'outbox-append', [2]);
    const keys = ['t:backend:{i1}:events', 't:backend:{i1}:open'];
    assert.deepEqual(await append.run(keys, [3, 'CONNECT', 's1', event('CONNECT', 's1', 1), '"userId":"u"', 'SUBSCRIBE', 's1', event('SUBSCRIBE', 's1', 2), '']), [0, 2]);
    assert.deepEqual(await redis.hgetall(keys[1]!), { s1: '"userId":"u"' });
    assert.deepEqual(await append.run(keys, [3, 'CONNECT', 's2', event('CONNECT', 's2', 3), '"userId":"v"', 'DISCONNECT', 's1', event('DISCONNECT', 's1', 4), '']), [1, 3]);
    assert.deepEqual(await redis.hkeys(keys[1]!), ['s2']);
    const kept = (await redis.xrange(keys[0]!, '-', '+')).map(([, fields]) => JSON.parse(fields[1]!) as { id: string });
    assert.deepEqual(
      kept.map((e) => e.id),
      ['e2', 'e3', 'e4'],
      'the oldest went',
    );
    assert.deepEqual(await append.run(keys, [10, '', 's3', event('CONNECT', 's3', 5), '']), [0, 4]);
    assert.deepEqual(await redis.hkeys(keys[1]!), ['s2'], 'untracked: the open index is left alone');
  });

  it('outbox-adopt: one survivor takes a dead outbox over, appending one instance-lost DISCONNECT per open session', async () => {
    const adopt = new LuaScript(redis, 'outbox-adopt', [3]);
    const keys = ['t:backend:{dead}:events', 't:backend:{dead}:open', 't:backend:{dead}:adopter'];
    await redis.hset(keys[1]!, 's/1', '"userId":"ann","roles":["AGENT"],"attributes":{"a":1}', 's2', '"userId":"bo","roles":[],"attributes":{}');
    assert.equal(await adopt.run(keys, [1000, 'survivor-a', 60000, 'dead']), 2);
    assert.equal(await adopt.run(keys, [1001, 'survivor-b', 60000, 'dead']), -1, 'another survivor holds it');
    assert.equal(await adopt.run(keys, [1002, 'survivor-a', 60000, 'dead']), 0, 'the claimer again: nothing left to append');
    assert.equal(await redis.exists(keys[1]!), 0);
    const appended = (await redis.xrange(keys[0]!, '-', '+')).map(([, fields]) => parseStoredEvent(fields[1]));
    assert.deepEqual(appended, [
      { id: instanceLostEventId('dead', 's/1'), type: 'DISCONNECT', sessionId: 's/1', userId: 'ann', roles: ['AGENT'], attributes: { a: 1 }, reason: 'instance-lost', at: 1000, instanceId: 'dead' },
      { id: instanceLostEventId('dead', 's2'), type: 'DISCONNECT', sessionId: 's2', userId: 'bo', roles: [], attributes: {}, reason: 'instance-lost', at: 1000, instanceId: 'dead' },
    ]);
  });

  it('a stored event that is not one reads as undefined', () => {
    assert.ok(parseStoredEvent(event('CONNECT', 's', 1)));
    for (const bad of [
      undefined,
      'nope',
      '[]',
      '{}',
      event('EXPLODE', 's', 1),
      JSON.stringify({ ...JSON.parse(event('CONNECT', 's', 1)), roles: [1] }),
      JSON.stringify({ ...JSON.parse(event('CONNECT', 's', 1)), at: 'now' }),
    ]) {
      assert.equal(parseStoredEvent(bad), undefined, String(bad));
    }
  });

  it('revocation-revoke: a later logout moves revokedAt forward, an earlier one never back; each extends the key', async () => {
    const revoke = new LuaScript(redis, 'revocation-revoke', [1]);
    const key = 't:auth:{u}';
    assert.equal(await revoke.run([key], [2000, 100]), 1);
    assert.equal(await revoke.run([key], [1000, 600]), 1);
    assert.equal(await redis.hget(key, 'revokedAt'), '2000');
    assert.ok((await redis.ttl(key)) > 100, 'extended');
    await revoke.run([key], [3000, 600]);
    assert.equal(await redis.hget(key, 'revokedAt'), '3000');
  });
});
