// Each Lua file of src/cluster/lua run on its own against a real redis-server, edge cases
// included: a refresh after a reap, a reap racing a refresh, a late reap finishing after the
// instance joined again, an ACK from a holder the entry was taken from; for the queue
// scripts a stale giver, a trimmed pending entry, the own give-backs left to others, and
// 10,000 entries (work per call stays bounded). (The registry's scripts: lua-registry.test.ts;
// presence's: lua-presence.test.ts; the outbox's and revocation's: lua-outbox.test.ts.)

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { LuaScript } from '../../src/cluster/lua';
import { decodeRedeliverEntry, encodeRedeliverEntry } from '../../src/cluster/redeliver-entry';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe("the cluster layer's Lua scripts on a real Redis", { timeout: 60000 }, () => {
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
    assert.deepEqual(await redis.smembers(`${live('m3')}:sessions`), ['s-of-12'], "the new generation's sessions stay");
    assert.equal(await redis.exists(`${live('m3')}:reaper`), 0, 'the claim is released');
    assert.equal(await finish.run(keys, ['12', 'm3']), 1);
    assert.equal(await redis.sismember('t:instances', 'm3'), 0);
    assert.equal(await redis.exists(`${live('m3')}:gen`), 0);
    assert.equal(await redis.exists(`${live('m3')}:sessions`), 0);
  });

  it("membership-claim-keep: extends the caller's claim, reports a claim taken over", async () => {
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

  it("queue-reap: gives back a dead consumer's 1,200 pending entries in bounded batches; forgets a queue left empty", async () => {
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
    assert.ok(
      given.every((e) => e.endsWith('|dead|1|1')),
      'marked delivered',
    );
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
    assert.deepEqual(
      pending.map(([id, consumer]) => [id, consumer]),
      [[second, 'new']],
    );
    assert.equal(await ack.run([stream], ['g', 'new', second]), 1);
    assert.equal(await redis.xlen(stream), 0);
  });

  describe('queue scripts', () => {
    const q = (suffix: string) => {
      const stream = `t:queue:{/queue/${suffix}}`;
      return { stream, redeliver: `${stream}:redeliver`, consumers: `${stream}:consumers`, counts: `${stream}:counts` };
    };
    /** How many times Redis ran `command` so far (scripts' calls included): work a call did, counted rather than timed. */
    const calls = async (command: string): Promise<number> => {
      const line = (await redis.info('commandstats')).split('\r\n').find((l) => l.startsWith(`cmdstat_${command}:`));
      return line === undefined ? 0 : Number(/calls=(\d+)/.exec(line)![1]);
    };
    const take = (): LuaScript => new LuaScript(redis, 'queue-take', [3]);
    /** Run queue-take for `me`; entries as [id, payload, wasDelivered]. */
    const takeFor = async (k: ReturnType<typeof q>, me: string, count: number, nowMs: number, retakeOwnMs = 1000, scanLimit = 1000): Promise<[string, string, string][]> => {
      const reply = (await take().run([k.redeliver, k.stream, k.consumers], ['g', me, count, nowMs, retakeOwnMs, scanLimit])) as [string, string[], string][];
      return reply.map(([id, fields, wasDelivered]) => [id, fields[1]!, wasDelivered]);
    };
    /** `count` entries read (pending) by `holder`; their ids. */
    const heldBy = async (k: ReturnType<typeof q>, holder: string, count: number): Promise<string[]> => {
      await redis.xgroup('CREATE', k.stream, 'g', '0', 'MKSTREAM').catch(() => undefined);
      const pipeline = redis.pipeline();
      for (let i = 0; i < count; i++) pipeline.xadd(k.stream, '*', 'm', `p${i}`);
      const ids = ((await pipeline.exec()) ?? []).map(([, id]) => id as string);
      await redis.xreadgroup('GROUP', 'g', holder, 'COUNT', count, 'STREAMS', k.stream, '>');
      return ids;
    };
    const entry = (entryId: string, giver: string, givenAtMs: number, wasDelivered = true): string => encodeRedeliverEntry({ entryId, giver, givenAtMs, wasDelivered });

    it('queue-admit: a listed queue always, a new one while fewer than the limit exist', async () => {
      const admit = new LuaScript(redis, 'queue-admit', [1]);
      assert.equal(await admit.run(['t:queues:a'], ['/queue/1', 2]), 1);
      assert.equal(await admit.run(['t:queues:a'], ['/queue/2', 2]), 1);
      assert.equal(await admit.run(['t:queues:a'], ['/queue/3', 2]), 0, 'a third is one too many');
      assert.equal(await admit.run(['t:queues:a'], ['/queue/1', 2]), 1, 'a listed one still is');
      assert.deepEqual((await redis.smembers('t:queues:a')).sort(), ['/queue/1', '/queue/2']);
    });

    it('queue-publish: creates the stream and group once; past the bound drops the oldest undelivered (never a pending one), at most the per-call limit, counted', async () => {
      const publish = new LuaScript(redis, 'queue-publish', [2]);
      const k = q('pub');
      assert.deepEqual(await publish.run([k.stream, k.counts], [3, 'm0', 'g', 100]), [0, 1], 'created');
      await redis.xreadgroup('GROUP', 'g', 'c', 'COUNT', 1, 'STREAMS', k.stream, '>'); // m0 delivered, pending
      for (let i = 1; i <= 3; i++) assert.deepEqual(await publish.run([k.stream, k.counts], [3, `m${i}`, 'g', 100]), [0, 0]);
      assert.deepEqual(await publish.run([k.stream, k.counts], [3, 'm4', 'g', 100]), [1, 0], 'one undelivered too many');
      const bodies = async (): Promise<string[]> => (await redis.xrange(k.stream, '-', '+')).map(([, fields]) => fields[1]!);
      assert.deepEqual(await bodies(), ['m0', 'm2', 'm3', 'm4'], 'm1 dropped, the pending m0 kept');
      // A bound lowered (a restart with a smaller MAX_QUEUE_MESSAGES): at most 2 dropped per call here.
      assert.deepEqual(await publish.run([k.stream, k.counts], [0, 'm5', 'g', 2]), [2, 0]);
      assert.deepEqual(await bodies(), ['m0', 'm4', 'm5']);
      assert.deepEqual(await publish.run([k.stream, k.counts], [0, 'm6', 'g', 2]), [2, 0]);
      assert.deepEqual(await bodies(), ['m0', 'm6']);
      assert.equal(await redis.hget(k.counts, 'dropped'), '5');
    });

    it('queue-consumers: registering makes the group; the last consumer leaving forgets the queue only when nothing is left of it', async () => {
      const consumers = new LuaScript(redis, 'queue-consumers', [4]);
      const k = q('cons');
      const keys = [k.stream, k.consumers, k.redeliver, k.counts];
      assert.equal(await consumers.run(keys, ['g', 'i1', 2]), 0);
      assert.equal(await redis.hget(k.consumers, 'i1'), '2');
      assert.equal(((await redis.xinfo('GROUPS', k.stream)) as unknown[]).length, 1, 'the group exists');
      await redis.xadd(k.stream, '*', 'm', 'x');
      assert.equal(await consumers.run(keys, ['g', 'i1', 0]), 0, 'an entry is left: kept');
      assert.equal(await redis.hexists(k.consumers, 'i1'), 0);
      await redis.del(k.stream);
      await consumers.run(keys, ['g', 'i1', 1]);
      await redis.rpush(k.redeliver, 'e');
      assert.equal(await consumers.run(keys, ['g', 'i1', 0]), 0, 'something to redeliver: kept');
      await redis.del(k.redeliver);
      await redis.hset(k.counts, 'dropped', '1');
      await consumers.run(keys, ['g', 'i1', 1]);
      assert.equal(await consumers.run(keys, ['g', 'i1', 0]), 1, 'nothing left: forgotten');
      assert.equal(await redis.exists(...keys), 0);
    });

    it('queue-consumers and queue-take with the fence (a single Redis): a generation that is not the live one registers nothing and takes nothing; the live one lists the queue for its reaper', async () => {
      const consumers = new LuaScript(redis, 'queue-consumers', [6]);
      const takeFenced = new LuaScript(redis, 'queue-take', [4]);
      const k = q('fenced');
      const name = '/queue/fenced';
      const listed = 't:instance:{i9}:queues';
      const keys = [k.stream, k.consumers, k.redeliver, k.counts, listed, live('i9')];
      await redis.set(live('i9'), '5');
      assert.equal(await consumers.run(keys, ['g', 'i9', 1, '4', name]), -1, 'a reaped generation is fenced');
      assert.equal(await redis.exists(k.stream, k.consumers, listed), 0, 'nothing written');
      assert.equal(await consumers.run(keys, ['g', 'i9', 1, '5', name]), 0);
      assert.equal(await redis.hget(k.consumers, 'i9'), '1');
      assert.deepEqual(await redis.smembers(listed), [name], 'listed for the reaper with the registration');
      await redis.xadd(k.stream, '*', 'm', 'x');
      const takeArgs = (generation: string): (string | number)[] => ['g', 'i9', 10, 1, 1000, 1000, generation];
      await redis.del(live('i9')); // the liveness key expired: a survivor may be reaping
      assert.equal(await takeFenced.run([k.redeliver, k.stream, k.consumers, live('i9')], takeArgs('5')), -1);
      assert.deepEqual(await redis.xpending(k.stream, 'g'), [0, null, null, null], 'nothing pending on the fenced consumer');
      await redis.set(live('i9'), '5');
      const taken = (await takeFenced.run([k.redeliver, k.stream, k.consumers, live('i9')], takeArgs('5'))) as unknown[];
      assert.equal(taken.length, 1, 'the live generation takes');
      assert.equal(await consumers.run(keys, ['g', 'i9', 0, '4', name]), 0, 'unregistering is never fenced (it only removes)');
      assert.equal(await redis.hexists(k.consumers, 'i9'), 0);
    });

    it('queue-take: given-back entries first (claimed, with their delivered mark), then new ones', async () => {
      const k = q('take');
      const [given, alsoGiven] = await heldBy(k, 'giver', 2);
      await redis.xadd(k.stream, '*', 'm', 'new');
      await redis.rpush(k.redeliver, entry(given!, 'giver', 1, true), entry(alsoGiven!, 'giver', 1, false));
      const taken = await takeFor(k, 'taker', 10, 2);
      assert.deepEqual(
        taken.map(([, payload, wasDelivered]) => [payload, wasDelivered]),
        [
          ['p0', '1'],
          ['p1', '0'],
          ['new', '0'],
        ],
      );
      const pending = (await redis.xpending(k.stream, 'g', '-', '+', 10)) as [string, string][];
      assert.ok(
        pending.every(([, owner]) => owner === 'taker'),
        "all three are the taker's now",
      );
      assert.equal(await redis.llen(k.redeliver), 0);
    });

    it('queue-take: a stale giver (the entry was claimed by someone else since), a trimmed pending entry and a malformed entry are dropped, never delivered', async () => {
      const k = q('stale');
      const [stale, trimmed, good] = await heldBy(k, 'old', 3);
      await redis.xclaim(k.stream, 'g', 'someone', 0, stale!); // taken over since it was listed
      await redis.xdel(k.stream, trimmed!); // pending, but its stream entry is gone
      await redis.rpush(k.redeliver, entry(stale!, 'old', 1), entry(trimmed!, 'old', 1), 'not an entry', entry(good!, 'old', 1));
      const taken = await takeFor(k, 'taker', 10, 2);
      assert.deepEqual(
        taken.map(([id]) => id),
        [good],
        'only the entry its giver still held',
      );
      assert.equal(await redis.llen(k.redeliver), 0, 'the list is cleared of them');
      const owners = Object.fromEntries(((await redis.xpending(k.stream, 'g', '-', '+', 10)) as [string, string][]).map(([id, owner]) => [id, owner]));
      assert.equal(owners[stale!], 'someone', 'the stale entry stays with its holder');
      assert.equal(owners[good!], 'taker');
    });

    it('queue-take: its own give-backs are left to the others for the retake time (kept in front, in order), taken at once when nobody else consumes', async () => {
      const k = q('own');
      const ids = await heldBy(k, 'me', 3);
      await redis.rpush(k.redeliver, ...ids.map((id) => entry(id, 'me', 1000)));
      await redis.hset(k.consumers, 'me', '1', 'other', '1');
      assert.deepEqual(await takeFor(k, 'me', 10, 1500), [], 'within the retake time, another instance has consumers');
      assert.deepEqual(
        (await redis.lrange(k.redeliver, 0, -1)).map((e) => decodeRedeliverEntry(e)!.entryId),
        ids,
        'left in place, in order',
      );
      assert.deepEqual(
        (await takeFor(k, 'me', 10, 2000)).map(([id]) => id),
        ids,
        'after it: taken back',
      );
      await redis.rpush(k.redeliver, ...ids.map((id) => entry(id, 'me', 5000)));
      await redis.hset(k.consumers, 'other', '0');
      assert.deepEqual(
        (await takeFor(k, 'me', 10, 5001)).map(([id]) => id),
        ids,
        'nobody else consumes: at once',
      );
    });

    it('queue-take over 10,000 given-back entries: takes what it was asked for, leaves the rest in order, bounded work per call', async () => {
      const k = q('many');
      const ids = await heldBy(k, 'dead', 10_000);
      const entries = ids.map((id) => entry(id, 'dead', 1));
      for (let i = 0; i < entries.length; i += 1000) await redis.rpush(k.redeliver, ...entries.slice(i, i + 1000));
      const lremBefore = await calls('lrem');
      const taken = await takeFor(k, 'taker', 256, 2);
      assert.deepEqual(
        taken.map(([id]) => id),
        ids.slice(0, 256),
      );
      assert.equal(await redis.llen(k.redeliver), 10_000 - 256);
      assert.deepEqual(await redis.lrange(k.redeliver, 0, 0), [entries[256]], 'the next one is next');
      assert.equal(await calls('lrem'), lremBefore, 'no LREM scans');
      // 9,744 own give-backs in front of a new entry: at most the scan limit is looked at.
      await redis.del(k.redeliver);
      const own = ids.slice(256).map((id) => entry(id, 'me', 1000));
      for (let i = 0; i < own.length; i += 1000) await redis.rpush(k.redeliver, ...own.slice(i, i + 1000));
      await redis.hset(k.consumers, 'me', '1', 'other', '1');
      await redis.xadd(k.stream, '*', 'm', 'fresh');
      const [lpushBefore, xclaimBefore] = [await calls('lpush'), await calls('xclaim')];
      const fresh = await takeFor(k, 'me', 5, 1001, 1000, 1000);
      assert.deepEqual(
        fresh.map(([, payload]) => payload),
        ['fresh'],
        'none of its own, the new entry',
      );
      assert.ok((await calls('lpush')) - lpushBefore <= 1000, 'no more than the scan limit put back');
      assert.equal(await calls('xclaim'), xclaimBefore);
      assert.deepEqual(await redis.lrange(k.redeliver, 0, -1), own, 'all kept, in order');
    });

    it('the redeliver entry format: TypeScript and Lua read each other\'s entries (an instance id with "|" too)', async () => {
      const k = q('codec');
      const [id] = await heldBy(k, 'odd|instance', 1);
      await redis.rpush(k.redeliver, entry(id!, 'odd|instance', 7, false));
      assert.deepEqual(await takeFor(k, 'taker', 1, 8), [[id, 'p0', '0']], 'Lua decoded the TypeScript entry');
      const reap = new LuaScript(redis, 'queue-reap', [4]);
      await reap.run([k.stream, k.redeliver, k.consumers, k.counts], ['g', 'taker', 1234, '-', 10]);
      const listed = await redis.lrange(k.redeliver, 0, -1);
      assert.deepEqual(listed.map(decodeRedeliverEntry), [{ entryId: id, giver: 'taker', givenAtMs: 1234, wasDelivered: true }], 'TypeScript decoded the Lua entry');
      assert.equal(decodeRedeliverEntry('1-0|x|12'), undefined);
    });
  });

  it("presence-view: the room's sessions with the decision number they were read at (0 without a counter), and the LEAVEs Redis forgot", async () => {
    const view = new LuaScript(redis, 'presence-view', [3]);
    const sessions = 't:presence:{/topic/room.v}:sessions';
    const seq = 't:presence:{/topic/room.v}:seq';
    const forgotten = 't:presence:{/topic/room.v}:forgotten';
    assert.deepEqual(await view.run([sessions, seq, forgotten], []), ['0', [], []], 'an empty room with no counter');
    await redis.hset(sessions, 's1', '{"userId":"u1"}', 's2', '{"userId":"u2"}');
    await redis.set(seq, '42');
    await redis.hset(forgotten, 'u3', 'socket-closed');
    const [at, flat, reasons] = (await view.run([sessions, seq, forgotten], [])) as [string, string[], string[]];
    assert.equal(at, '42');
    assert.deepEqual(
      Object.fromEntries([
        [flat[0], flat[1]],
        [flat[2], flat[3]],
      ]),
      { s1: '{"userId":"u1"}', s2: '{"userId":"u2"}' },
    );
    assert.deepEqual(reasons, ['u3', 'socket-closed']);
  });
});
