// The registry's scripts of src/cluster/lua run on their own against a real redis-server:
// a registration by a fenced generation writes nothing, a dead holder is dropped and told
// through its instance's inbox, a holder not named dead keeps its place, a replace that a
// re-registering older session loses, the policy decision alone on a user's slot (a Cluster),
// removal reported to exactly one of racing callers, and touches that never create a bare
// record.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { kickCommandPrefix } from '../../src/cluster/control';
import { LuaScript } from '../../src/cluster/lua';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe("the registry's scripts on a real Redis", { timeout: 60000 }, () => {
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

  describe('registry-register', () => {
    const register = (): LuaScript => new LuaScript(redis, 'registry-register', [6]);
    const args = (sessionId: string, connectedAt: number, max: number, mode: string, generation: string, instanceId: string, userId: string, dead: string[] | 'judge' = []) => [
      sessionId,
      connectedAt,
      max,
      mode,
      600,
      't:session:{',
      't:instance:{',
      generation,
      kickCommandPrefix('UNAVAILABLE', 'dead holder'),
      kickCommandPrefix('SESSION_REPLACED', 'replaced'),
      3600,
      dead === 'judge' ? -1 : dead.length,
      ...(dead === 'judge' ? [] : dead),
      'userId',
      userId,
      'instanceId',
      instanceId,
      'connectedAt',
      String(connectedAt),
    ];
    const keysFor = (sessionId: string, userId: string, instanceId: string) => [
      `t:user:{${userId}}`,
      `t:session:{${sessionId}}`,
      't:sessions:all',
      `${live(instanceId)}:sessions`,
      `${live(instanceId)}:users`,
      live(instanceId),
    ];

    it('refuses a write by a generation that is not the live one, writing nothing', async () => {
      await redis.set(live('r1'), '5', 'PX', 60000);
      assert.deepEqual(await register().run(keysFor('s-f', 'uf', 'r1'), args('s-f', 1, 1, 'reject', '4', 'r1', 'uf')), [-1]);
      assert.equal(await redis.exists('t:session:{s-f}'), 0);
      assert.equal(await redis.exists('t:user:{uf}'), 0);
      assert.deepEqual(await register().run(keysFor('s-f', 'uf', 'r1'), args('s-f', 1, 1, 'reject', '5', 'r1', 'uf')), [1]);
      assert.deepEqual(await redis.hgetall('t:session:{s-f}'), { userId: 'uf', instanceId: 'r1', connectedAt: '1' });
      assert.ok((await redis.ttl('t:session:{s-f}')) > 500);
      assert.equal(await redis.sismember('t:sessions:all', 's-f'), 1);
      assert.equal(await redis.sismember(`${live('r1')}:sessions`, 's-f'), 1);
      assert.equal(await redis.hget(`${live('r1')}:users`, 'uf'), '1');
    });

    it("drops a holder named dead and tells it through that instance's inbox", async () => {
      await redis.set(live('r2'), '1', 'PX', 60000);
      await redis.hset('t:session:{s-old}', 'userId', 'ud', 'instanceId', 'gone');
      await redis.zadd('t:user:{ud}', 1, 's-old');
      assert.deepEqual(await register().run(keysFor('s-new', 'ud', 'r2'), args('s-new', 2, 1, 'reject', '1', 'r2', 'ud', ['s-old'])), [1]);
      assert.deepEqual(await redis.zrange('t:user:{ud}', 0, -1), ['s-new']);
      const told = (await redis.lrange('t:instance:{gone}:inbox', 0, -1)).map((raw) => JSON.parse(raw) as Record<string, string>);
      assert.deepEqual(told, [{ type: 'kick', sessionId: 's-old', code: 'UNAVAILABLE', message: 'dead holder' }]);
      assert.ok((await redis.ttl('t:instance:{gone}:inbox')) > 0, 'the inbox expires if nobody reads it');
    });

    it('a holder not named dead keeps its place, whatever its liveness key says (the caller judges)', async () => {
      await redis.set(live('r5'), '1', 'PX', 60000);
      await redis.hset('t:session:{s-held}', 'userId', 'ug', 'instanceId', 'reconnecting');
      await redis.zadd('t:user:{ug}', 1, 's-held');
      assert.deepEqual(await register().run(keysFor('s-try', 'ug', 'r5'), args('s-try', 2, 1, 'reject', '1', 'r5', 'ug')), [0, 's-held']);
      assert.equal(await redis.exists('t:instance:{reconnecting}:inbox'), 0);
      assert.equal(await redis.exists('t:session:{s-try}'), 0, 'nothing of the refused session is written');
    });

    it('n = -1: the script judges the holders itself: a record gone or an instance without its liveness key is dead; a live instance and the writer its own are not', async () => {
      await redis.set(live('r6'), '1', 'PX', 60000);
      await redis.set(live('other-live'), '1', 'PX', 60000);
      await redis.hset('t:session:{j-mine}', 'userId', 'uj', 'instanceId', 'r6');
      await redis.hset('t:session:{j-live}', 'userId', 'uj', 'instanceId', 'other-live');
      await redis.hset('t:session:{j-dead}', 'userId', 'uj', 'instanceId', 'other-dead');
      await redis.zadd('t:user:{uj}', 1, 'j-mine', 2, 'j-live', 3, 'j-dead', 4, 'j-no-record');
      // Three may hold: the two dead holders are dropped (the one with a record told), which makes room.
      assert.deepEqual(await register().run(keysFor('j-new', 'uj', 'r6'), args('j-new', 5, 3, 'reject', '1', 'r6', 'uj', 'judge')), [1]);
      assert.deepEqual(await redis.zrange('t:user:{uj}', 0, -1), ['j-mine', 'j-live', 'j-new']);
      const told = (await redis.lrange('t:instance:{other-dead}:inbox', 0, -1)).map((raw) => JSON.parse(raw) as Record<string, string>);
      assert.deepEqual(told, [{ type: 'kick', sessionId: 'j-dead', code: 'UNAVAILABLE', message: 'dead holder' }]);
      // The live holders still count: a fourth is refused, naming them.
      assert.deepEqual(await register().run(keysFor('j-4', 'uj', 'r6'), args('j-4', 6, 3, 'reject', '1', 'r6', 'uj', 'judge')), [0, 'j-mine', 'j-live', 'j-new']);
    });

    it('replace: a re-registering session older than the holder loses ({2}); a newer one evicts and tells the holder', async () => {
      await redis.set(live('r3'), '1', 'PX', 60000);
      await redis.set(live('r4'), '1', 'PX', 60000);
      assert.deepEqual(await register().run(keysFor('s-b', 'ur', 'r4'), args('s-b', 200, 1, 'replace', '1', 'r4', 'ur')), [1]);
      assert.deepEqual(await register().run(keysFor('s-a', 'ur', 'r3'), args('s-a', 100, 1, 'replace', '1', 'r3', 'ur')), [2]);
      assert.deepEqual(await redis.zrange('t:user:{ur}', 0, -1), ['s-b']);
      assert.deepEqual(await register().run(keysFor('s-c', 'ur', 'r3'), args('s-c', 300, 1, 'replace', '1', 'r3', 'ur')), [1, 's-b']);
      const told = (await redis.lrange('t:instance:{r4}:inbox', 0, -1)).map((raw) => (JSON.parse(raw) as { code: string }).code);
      assert.deepEqual(told, ['SESSION_REPLACED']);
    });
  });

  it("instance-claim: adds to the instance's own set only for the live generation (or without one)", async () => {
    const claim = new LuaScript(redis, 'instance-claim', [2]);
    const set = `${live('c1')}:sessions`;
    await redis.set(live('c1'), '9', 'PX', 60000);
    assert.equal(await claim.run([set, live('c1')], ['8', 's1']), -1, 'a reaped generation');
    assert.equal(await redis.exists(set), 0);
    assert.equal(await claim.run([set, live('c1')], ['9', 's1']), 1);
    assert.equal(await claim.run([set, live('c1')], ['9', 's1']), 0, 'already there');
    await redis.del(live('c1'));
    assert.equal(await claim.run([set, live('c1')], ['9', 's2']), -1, 'no liveness key at all: reaped');
    assert.equal(await claim.run([set, live('c1')], ['', 's2']), 1, 'a store used without membership');
    assert.deepEqual((await redis.smembers(set)).sort(), ['s1', 's2']);
  });

  describe('registry-bind (the decision alone, a Cluster)', () => {
    const bind = (): LuaScript => new LuaScript(redis, 'registry-bind', [1]);

    it('binds under the limit, refuses past it naming the holders, counts a re-registration once', async () => {
      const user = 't:user:{b1}';
      assert.deepEqual(await bind().run([user], ['s1', 10, 2, 'reject']), [1]);
      assert.deepEqual(await bind().run([user], ['s1', 10, 2, 'reject']), [1], 'the same session again');
      assert.deepEqual(await bind().run([user], ['s2', 20, 2, 'reject']), [1]);
      assert.deepEqual(await bind().run([user], ['s3', 30, 2, 'reject']), [0, 's1', 's2']);
      assert.deepEqual(await redis.zrange(user, 0, -1), ['s1', 's2']);
      assert.deepEqual(await bind().run([user], ['s3', 30, -1, 'reject']), [1], 'no limit');
    });

    it('replace evicts the oldest down to the limit; an older newcomer loses; dead holders do not count', async () => {
      const user = 't:user:{b2}';
      for (const [id, at] of [
        ['s1', 10],
        ['s2', 20],
        ['s3', 30],
      ] as const)
        await bind().run([user], [id, at, -1, 'replace']);
      assert.deepEqual(await bind().run([user], ['s4', 40, 2, 'replace']), [1, 's1', 's2']);
      assert.deepEqual(await redis.zrange(user, 0, -1), ['s3', 's4']);
      assert.deepEqual(await bind().run([user], ['s0', 5, 2, 'replace']), [2], 'older than both: lost');
      assert.deepEqual(await bind().run([user], ['s5', 50, 2, 'reject', 's3']), [1], 's3 is dead: a place is free');
      assert.deepEqual(await redis.zrange(user, 0, -1), ['s4', 's5']);
    });
  });

  it('registry-unregister: removes every trace; of two racing callers exactly one gets the record', async () => {
    const unregister = new LuaScript(redis, 'registry-unregister', [4]);
    await redis.hset('t:session:{s-u}', 'userId', 'uu', 'instanceId', 'i9');
    await redis.zadd('t:user:{uu}', 1, 's-u');
    await redis.sadd('t:sessions:all', 's-u');
    await redis.sadd(`${live('i9')}:sessions`, 's-u');
    await redis.hset(`${live('i9')}:users`, 'uu', '1');
    const keys = ['t:session:{s-u}', 't:sessions:all', `${live('i9')}:sessions`, `${live('i9')}:users`];
    const [first, second] = (await Promise.all([unregister.run(keys, ['s-u', 't:user:{']), unregister.run(keys, ['s-u', 't:user:{'])])) as string[][];
    assert.deepEqual([first!.length > 0, second!.length > 0].sort(), [false, true]);
    assert.equal(await redis.exists('t:session:{s-u}', 't:user:{uu}', `${live('i9')}:users`), 0);
    assert.equal(await redis.sismember('t:sessions:all', 's-u'), 0);
  });

  it('registry-forget-on-instance: lowers the user count only for the caller that removed the session', async () => {
    const forget = new LuaScript(redis, 'registry-forget-on-instance', [2]);
    const keys = [`${live('i8')}:sessions`, `${live('i8')}:users`];
    await redis.sadd(keys[0]!, 'a', 'b');
    await redis.hset(keys[1]!, 'u', '2');
    assert.equal(await forget.run(keys, ['a', '']), 1);
    assert.equal(await redis.hget(keys[1]!, 'u'), '2', 'not the remover: the count stays');
    assert.equal(await forget.run(keys, ['b', 'u']), 1);
    assert.equal(await redis.hget(keys[1]!, 'u'), '1');
    await redis.sadd(keys[0]!, 'c');
    await forget.run(keys, ['c', 'u']);
    assert.equal(await redis.hexists(keys[1]!, 'u'), 0, 'at zero the user goes');
  });

  it('registry-touch and registry-note-subscriptions: act on a live record, never create a bare one', async () => {
    const touch = new LuaScript(redis, 'registry-touch', [1]);
    const note = new LuaScript(redis, 'registry-note-subscriptions', [1]);
    await redis.hset('t:session:{s-t}', 'userId', 'ut');
    await redis.expire('t:session:{s-t}', 10);
    assert.equal(await touch.run(['t:session:{s-t}'], [600, 1234]), 1);
    assert.ok((await redis.ttl('t:session:{s-t}')) > 500);
    assert.equal(await redis.hget('t:session:{s-t}', 'lastSeenAt'), '1234');
    assert.equal(await note.run(['t:session:{s-t}'], ['[{"id":"1","destination":"/topic/a","ack":"auto"}]']), 1);
    assert.equal(await redis.hget('t:session:{s-t}', 'subscriptions'), '[{"id":"1","destination":"/topic/a","ack":"auto"}]');
    assert.equal(await touch.run(['t:session:{s-gone}'], [600, 1234]), 0);
    assert.equal(await note.run(['t:session:{s-gone}'], ['[]']), 0);
    assert.equal(await redis.exists('t:session:{s-gone}'), 0);
  });
});
