// Each Lua file of src/cluster/lua run on its own against a real redis-server, edge cases
// included: a refresh after a reap, a reap racing a refresh, a late reap finishing after the
// instance joined again, an ACK from a holder the entry was taken from. (The registry's
// scripts: lua-registry.test.ts; presence's: lua-presence.test.ts.)

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { LuaScript } from '../../src/cluster/lua';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe('the cluster layer\'s Lua scripts on a real Redis', { timeout: 60000 }, () => {
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

  const live = (id: string): string => `t:instance:{${id}}`;
  const membershipKeys = (id: string): string[] => [live(id), `${live(id)}:reaped`, `${live(id)}:gen`];

  it('membership-refresh: orphaned, ok, renewed; a reaped generation writes nothing; a newer one joins', async () => {
    const refresh = new LuaScript(redis, 'membership-refresh', [3, 4]);
    const keys = [...membershipKeys('m1'), 't:instances'];
    assert.equal(await refresh.run(keys, ['100', 60000, 'm1']), 'orphaned', 'the first announce: no generation key yet');
    assert.equal(await refresh.run(keys, ['100', 60000, 'm1']), 'ok');
    await redis.del(live('m1'));
    assert.equal(await refresh.run(keys, ['100', 60000, 'm1']), 'renewed', 'expired without a reap');
    await redis.del(live('m1'), `${live('m1')}:gen`);
    assert.equal(await refresh.run(keys, ['100', 60000, 'm1']), 'orphaned', 'a reap finished while it was away (or Redis lost its data)');
    assert.equal(await redis.sismember('t:instances', 'm1'), 1);
    await redis.del(live('m1'));
    await redis.set(`${live('m1')}:reaped`, '100');
    assert.equal(await refresh.run(keys, ['100', 60000, 'm1']), 'reaped');
    assert.equal(await redis.exists(live('m1')), 0, 'the reaped generation did not write its liveness key');
    assert.equal(await refresh.run(keys, ['101', 60000, 'm1']), 'renewed');
    assert.equal(await redis.get(live('m1')), '101');
    assert.equal(await redis.get(`${live('m1')}:gen`), '101');
  });

  it('membership-reap-mark: refuses a live instance, marks the generation of a dead one, never lowers a mark', async () => {
    const mark = new LuaScript(redis, 'membership-reap-mark', [3]);
    await redis.set(live('m2'), '7', 'PX', 60000);
    await redis.set(`${live('m2')}:gen`, '7');
    assert.equal(await mark.run(membershipKeys('m2'), [60]), null, 'alive: no reap');
    await redis.del(live('m2'));
    assert.equal(await mark.run(membershipKeys('m2'), [60]), '7');
    assert.equal(await redis.get(`${live('m2')}:reaped`), '7');
    await redis.set(`${live('m2')}:reaped`, '9');
    assert.equal(await mark.run(membershipKeys('m2'), [60]), '7');
    assert.equal(await redis.get(`${live('m2')}:reaped`), '9', 'a higher mark stays');
    await redis.del(`${live('m2')}:gen`); // the reap finished
    assert.equal(await mark.run(membershipKeys('m2'), [60]), null, 'nothing left to reap: no second reap');
  });

  it('membership-reap-finish: a late finish leaves an instance that joined again listed, with its sets', async () => {
    const finish = new LuaScript(redis, 'membership-reap-finish', [4, 5]);
    const keys = [`${live('m3')}:gen`, `${live('m3')}:reaper`, `${live('m3')}:sessions`, `${live('m3')}:users`, 't:instances'];
    await redis.sadd('t:instances', 'm3');
    await redis.set(`${live('m3')}:gen`, '12'); // joined again under 12 while 11 was reaped
    await redis.sadd(`${live('m3')}:sessions`, 's-of-12');
    await redis.set(`${live('m3')}:reaper`, 'other');
    assert.equal(await finish.run(keys, ['11', 'm3']), 0);
    assert.equal(await redis.sismember('t:instances', 'm3'), 1);
    assert.deepEqual(await redis.smembers(`${live('m3')}:sessions`), ['s-of-12'], 'the new generation\'s sessions stay');
    assert.equal(await redis.exists(`${live('m3')}:reaper`), 0, 'the claim is released');
    assert.equal(await finish.run(keys, ['12', 'm3']), 1);
    assert.equal(await redis.sismember('t:instances', 'm3'), 0);
    assert.equal(await redis.exists(`${live('m3')}:gen`), 0);
    assert.equal(await redis.exists(`${live('m3')}:sessions`), 0);
  });

  it('membership-claim-keep: extends the caller\'s claim, reports a claim taken over', async () => {
    const keep = new LuaScript(redis, 'membership-claim-keep', [1]);
    await redis.set(`${live('m6')}:reaper`, 'me', 'PX', 1000);
    assert.equal(await keep.run([`${live('m6')}:reaper`], ['me', 60000]), 1);
    assert.ok((await redis.pttl(`${live('m6')}:reaper`)) > 1000, 'extended');
    await redis.set(`${live('m6')}:reaper`, 'someone-else');
    assert.equal(await keep.run([`${live('m6')}:reaper`], ['me', 60000]), 0);
  });

  it('membership-forget: deletes a liveness key only if it still holds the value read', async () => {
    const forget = new LuaScript(redis, 'membership-forget', [1]);
    await redis.set(live('m7'), '5');
    assert.equal(await forget.run([live('m7')], ['4']), 0, 'refreshed meanwhile: kept');
    assert.equal(await redis.get(live('m7')), '5');
    assert.equal(await forget.run([live('m7')], ['5']), 1);
    assert.equal(await redis.exists(live('m7')), 0);
  });

  it('queue-reap: gives back a dead consumer\'s 1,200 pending entries in bounded batches; forgets a queue left empty', async () => {
    const reap = new LuaScript(redis, 'queue-reap', [4]);
    const q = (suffix: string): string[] => [`t:queue:{/queue/${suffix}}`, `t:queue:{/queue/${suffix}}:redeliver`, `t:queue:{/queue/${suffix}}:consumers`, `t:queue:{/queue/${suffix}}:counts`];
    const keys = q('big');
    await redis.xgroup('CREATE', keys[0]!, 'g', '0', 'MKSTREAM');
    const pipeline = redis.pipeline();
    for (let i = 0; i < 1200; i++) pipeline.xadd(keys[0]!, '*', 'm', String(i));
    await pipeline.exec();
    await redis.xreadgroup('GROUP', 'g', 'dead', 'COUNT', 1200, 'STREAMS', keys[0]!, '>');
    await redis.hset(keys[2]!, 'dead', '1');
    let start = '-';
    const batches: number[] = [];
    do {
      const [count, next] = (await reap.run(keys, ['g', 'dead', 1, start, 500])) as [number, string, number];
      batches.push(count);
      start = next;
    } while (start !== '');
    assert.deepEqual(batches, [500, 500, 200]);
    const given = await redis.lrange(keys[1]!, 0, -1);
    assert.equal(new Set(given.map((e) => e.split('|')[0])).size, 1200, 'each entry once');
    assert.ok(given.every((e) => e.endsWith('|dead|1|1')), 'marked delivered');
    assert.equal(await redis.hexists(keys[2]!, 'dead'), 0);
    const empty = q('empty');
    await redis.xgroup('CREATE', empty[0]!, 'g', '0', 'MKSTREAM');
    await redis.hset(empty[2]!, 'dead', '1');
    await redis.hset(empty[3]!, 'dropped', '0');
    assert.deepEqual(await reap.run(empty, ['g', 'dead', 1, '-', 500]), [0, '', 1]);
    assert.equal(await redis.exists(...empty), 0, 'nothing left of the queue');
  });

  it('queue-ack: acknowledges only entries this consumer still holds', async () => {
    const ack = new LuaScript(redis, 'queue-ack', [1]);
    const stream = 't:queue:{/queue/q}';
    await redis.xgroup('CREATE', stream, 'g', '0', 'MKSTREAM');
    const first = (await redis.xadd(stream, '*', 'm', '1'))!;
    const second = (await redis.xadd(stream, '*', 'm', '2'))!;
    await redis.xreadgroup('GROUP', 'g', 'old', 'COUNT', 2, 'STREAMS', stream, '>');
    await redis.xclaim(stream, 'g', 'new', 0, second); // given back and taken by another consumer
    assert.equal(await ack.run([stream], ['g', 'old', first, second]), 1);
    assert.equal(await redis.xlen(stream), 1, 'the entry taken over stays');
    const pending = (await redis.xpending(stream, 'g', '-', '+', 10)) as [string, string][];
    assert.deepEqual(pending.map(([id, consumer]) => [id, consumer]), [[second, 'new']]);
    assert.equal(await ack.run([stream], ['g', 'new', second]), 1);
    assert.equal(await redis.xlen(stream), 0);
  });

  it('presence-view: the room\'s sessions with the decision number they were read at (0 without a counter)', async () => {
    const view = new LuaScript(redis, 'presence-view', [2]);
    const sessions = 't:presence:{/topic/room.v}:sessions';
    const seq = 't:presence:{/topic/room.v}:seq';
    assert.deepEqual(await view.run([sessions, seq], []), ['0'], 'an empty room with no counter');
    await redis.hset(sessions, 's1', '{"userId":"u1"}', 's2', '{"userId":"u2"}');
    await redis.set(seq, '42');
    const reply = (await view.run([sessions, seq], [])) as string[];
    assert.equal(reply[0], '42');
    assert.deepEqual(Object.fromEntries([[reply[1], reply[2]], [reply[3], reply[4]]]), { s1: '{"userId":"u1"}', s2: '{"userId":"u2"}' });
  });
});
