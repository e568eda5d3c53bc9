// The presence scripts of src/cluster/lua run on their own against a real redis-server:
// exactly one JOIN per user however many of its sessions join, exactly one LEAVE when the
// last goes, a leave without an entry told apart, numbers that start from the clock and never
// go back, the recent-events log trimmed to its length, and the PUBLISH a single Redis makes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { LuaScript } from '../../src/cluster/lua';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe('the presence scripts on a real Redis', { timeout: 60000 }, () => {
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

  const keysOf = (room: string): [string, string, string, string] => {
    const base = `t:presence:{${room}}`;
    return [`${base}:sessions`, `${base}:users`, `${base}:members`, `${base}:seq`];
  };
  /** ARGV[1..4]: counter TTL, log length, log TTL, publish. */
  const announcing = (logLength = 128, publish = '0'): (string | number)[] => [60, logLength, 60, publish];
  const pairs = (room: string): string[] => [`t:dest:${room}`, `env:${room}:`, `t:dest:${room}.presence`, `env:${room}.presence:`];
  const asText = (reply: unknown): unknown => (Array.isArray(reply) ? reply.map((b) => String(b)) : reply);
  const seqOf = (envelope: string): number => Number(/:(\d+)}$/.exec(envelope)![1]);

  it("presence-join: one JOIN per user, each envelope finished with the room's next number and logged", async () => {
    const join = new LuaScript(redis, 'presence-join', [4]);
    const room = '/topic/j';
    const keys = keysOf(room);
    const before = Date.now() * 1000;
    const first = asText(await join.runForBuffers(keys, [...announcing(), 's1', 'u1', '{"entry":1}', '{"member":1}', '1', ...pairs(room)])) as string[];
    assert.equal(first.length, 2, 'the room and its companion');
    assert.match(first[0]!, /^env:\/topic\/j:\d+}$/);
    assert.match(first[1]!, /^env:\/topic\/j\.presence:\d+}$/);
    assert.equal(seqOf(first[0]!), seqOf(first[1]!), 'one decision, one number');
    assert.ok(seqOf(first[0]!) > before, 'a new counter starts from the clock in microseconds');
    assert.equal(await join.runForBuffers(keys, [...announcing(), 's2', 'u1', '{"entry":2}', '{"member":2}', '1', ...pairs(room)]), null, 'the user is in already');
    assert.equal(await join.runForBuffers(keys, [...announcing(), 's1', 'u1', '{"entry":1}', '{"member":1}', '1', ...pairs(room)]), null, 'the session is in already');
    assert.equal(await redis.hget(keys[1], 'u1'), '2');
    assert.deepEqual(await redis.hgetall(keys[0]), { s1: '{"entry":1}', s2: '{"entry":2}' });
    assert.deepEqual(await redis.hgetall(keys[2]), { u1: '{"member":1}' });
    assert.deepEqual(await redis.lrange(`t:presence:{${room}}:log:1`, 0, -1), [first[0]]);
    assert.deepEqual(await redis.lrange(`t:presence:{${room}}:log:2`, 0, -1), [first[1]]);
    const second = asText(await join.runForBuffers(keys, [...announcing(), 's3', 'u2', '{}', '{}', '1', ...pairs(room)])) as string[];
    assert.equal(seqOf(second[0]!), seqOf(first[0]!) + 1);
    assert.ok((await redis.ttl(keys[3])) > 0, 'the counter expires when unused');
  });

  it('presence-join: a silent join (a repair) stores the entry and tells nothing', async () => {
    const join = new LuaScript(redis, 'presence-join', [4]);
    const keys = keysOf('/topic/silent');
    assert.equal(await join.runForBuffers(keys, [...announcing(), 's1', 'u1', '{}', '{"m":1}', '0', ...pairs('/topic/silent')]), null);
    assert.equal(await redis.hexists(keys[0], 's1'), 1);
    assert.equal(await redis.exists(keys[3]), 0, 'no decision was numbered');
  });

  it('presence-join with the fence (a single Redis): a generation that is not the live one writes nothing; the live one also lists the room for the reaper', async () => {
    const join = new LuaScript(redis, 'presence-join', [6]);
    const room = '/topic/fenced';
    const fenceKeys = ['t:presence:instance:{i1}:rooms', 't:instance:{i1}'];
    await redis.set('t:instance:{i1}', '7');
    const stale = await join.runForBuffers([...keysOf(room), ...fenceKeys], [...announcing(), 's1', 'u1', '{}', '{}', '1', '6', room, ...pairs(room)]);
    assert.equal(stale, -1, 'fenced');
    assert.equal(await redis.exists(keysOf(room)[0], keysOf(room)[3], fenceKeys[0]!), 0, 'nothing written');
    await redis.del('t:instance:{i1}');
    assert.equal(await join.runForBuffers([...keysOf(room), ...fenceKeys], [...announcing(), 's1', 'u1', '{}', '{}', '1', '7', room, ...pairs(room)]), -1, 'no liveness key: fenced too');
    await redis.set('t:instance:{i1}', '7');
    const live = asText(await join.runForBuffers([...keysOf(room), ...fenceKeys], [...announcing(), 's1', 'u1', '{}', '{}', '1', '7', room, ...pairs(room)])) as string[];
    assert.equal(live.length, 2, 'the pairs start after the fence arguments');
    assert.match(live[0]!, /^env:\/topic\/fenced:\d+}$/);
    assert.deepEqual(await redis.smembers(fenceKeys[0]!), [room]);
    assert.equal(
      await join.runForBuffers([...keysOf(room), ...fenceKeys], [...announcing(), 's2', 'u2', '{}', '{}', '0', '', room, ...pairs(room)]),
      null,
      'an empty generation: no fence (a store used without membership)',
    );
  });

  it("presence-leave: a LEAVE only when the user's last session goes; 0 for a session with no entry", async () => {
    const join = new LuaScript(redis, 'presence-join', [4]);
    const leave = new LuaScript(redis, 'presence-leave', [4]);
    const room = '/topic/l';
    const keys = keysOf(room);
    for (const sid of ['s1', 's2']) await join.runForBuffers(keys, [...announcing(), sid, 'u1', '{}', '{}', '1', ...pairs(room)]);
    assert.equal(await leave.runForBuffers(keys, [...announcing(), 's1', 'u1', ...pairs(room)]), null, 'another session of the user stays');
    const left = asText(await leave.runForBuffers(keys, [...announcing(), 's2', 'u1', ...pairs(room)])) as string[];
    assert.equal(left.length, 2);
    assert.equal(await redis.exists(keys[0], keys[1], keys[2]), 0, 'nothing of the user is left');
    assert.equal(await leave.runForBuffers(keys, [...announcing(), 's2', 'u1', ...pairs(room)]), 0, 'no entry: told apart from "not the last"');
  });

  it('presence-snapshot: the members with the last number; with no counter, the clock (where the next number starts)', async () => {
    const join = new LuaScript(redis, 'presence-join', [4]);
    const snapshot = new LuaScript(redis, 'presence-snapshot', [2]);
    const room = '/topic/s';
    const [, , members, seq] = keysOf(room);
    const before = Date.now() * 1000;
    const empty = (await snapshot.run([members, seq], [])) as string[];
    assert.equal(empty.length, 1);
    assert.ok(Number(empty[0]) >= before);
    const joined = asText(await join.runForBuffers(keysOf(room), [...announcing(), 's1', 'u1', '{}', '{"userId":"u1"}', '1', ...pairs(room)])) as string[];
    const listed = (await snapshot.run([members, seq], [])) as string[];
    assert.deepEqual(listed, [String(seqOf(joined[0]!)), '{"userId":"u1"}']);
    assert.ok(seqOf(joined[0]!) > Number(empty[0]), 'the first decision is numbered above the empty list');
  });

  it('the recent-events log keeps the last `log length` events; a single Redis PUBLISHes each finished envelope', async () => {
    const join = new LuaScript(redis, 'presence-join', [4]);
    const leave = new LuaScript(redis, 'presence-leave', [4]);
    const room = '/topic/p';
    const keys = keysOf(room);
    const subscriber = new Redis(server.url);
    const heard: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => heard.push(message));
    await subscriber.subscribe(`t:dest:${room}`);
    try {
      for (let i = 0; i < 5; i++) {
        await join.runForBuffers(keys, [...announcing(3, '1'), 's', 'u', '{}', '{}', '1', ...pairs(room)]);
        await leave.runForBuffers(keys, [...announcing(3, '1'), 's', 'u', ...pairs(room)]);
      }
      const log = await redis.lrange(`t:presence:{${room}}:log:1`, 0, -1);
      assert.equal(log.length, 3);
      const deadline = Date.now() + 5000;
      while (heard.length < 10 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(heard.length, 10);
      assert.deepEqual(log, heard.slice(-3), 'the log is the last events, in decision order');
      assert.deepEqual(
        heard.map(seqOf),
        [...heard.map(seqOf)].sort((a, b) => a - b),
        'numbers in decision order',
      );
    } finally {
      subscriber.disconnect();
    }
  });
});
