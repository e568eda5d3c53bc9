// The single-session policy has two copies, one per kind of implementation: the TypeScript
// decision MemoryRegistry uses (registry/bind-policy.ts) and the Lua library both Redis
// scripts include (lua/include/registry-policy.lua). Random users (holders with random connect
// times, ties included), random newcomers and limits, in both modes: the two decide the same,
// on a real Redis.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import Redis from 'ioredis';
import { LuaScript } from '../../src/cluster/lua';
import { decideBind } from '../../src/registry/bind-policy';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

describe('the bind policy: the TypeScript and the Lua copy decide the same', { timeout: 120000 }, () => {
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

  it('on random holders, newcomers, limits and modes', async () => {
    const bind = new LuaScript(redis, 'registry-bind', [1]);
    let user = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.record({ id: fc.string({ minLength: 1, maxLength: 3, unit: fc.constantFrom('a', 'b', 'c', 'd') }), at: fc.integer({ min: 0, max: 6 }) }), { selector: (h) => h.id, maxLength: 6 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom('reject' as const, 'replace' as const),
        async (holders, newcomerAt, max, mode) => {
          const key = `t:user:{p${++user}}`;
          for (const h of holders) await redis.zadd(key, h.at, h.id);
          const reply = ((await bind.run([key], ['newcomer', newcomerAt, max, mode])) as unknown[]).map(String);
          // The user's sorted set orders by connect time, then by id.
          const ordered = [...holders].sort((x, y) => x.at - y.at || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
          const decision = decideBind(ordered, (h) => h.at < newcomerAt, { maxPerUser: max, mode });
          const expected = decision.verdict === 'bound' ? ['1', ...decision.evicted.map((h) => h.id)] : decision.verdict === 'refused' ? ['0', ...decision.holders.map((h) => h.id)] : ['2'];
          assert.deepEqual(reply, expected);
        },
      ),
      { numRuns: 300 },
    );
  });
});
