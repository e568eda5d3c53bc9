// RedisRegistry and InstanceLiveness against a real redis-server and a real 3-master Redis
// Cluster: the key layout README documents, atomic policy decisions under a 20-way race,
// dead holders not locking users out, and dead instances reaped exactly once.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { InstanceMembership as InstanceLiveness } from '../../src/cluster/membership';
import { RedisKeys } from '../../src/cluster/keys';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisRegistry } from '../../src/cluster/redis-registry';
import type { RedisConfig } from '../../src/config';
import { RegistryUnavailableError } from '../../src/registry/registry';
import type { SessionRecord } from '../../src/registry/registry';
import { startRedis, startRedisCluster } from '../helpers/redis';

const silent = pino({ level: 'silent' });

function record(sessionId: string, userId: string, instanceId: string, connectedAt = Date.now()): SessionRecord {
  return { sessionId, userId, roles: ['AGENT'], instanceId, transport: 'ws', remoteAddress: '127.0.0.1:5000', connectedAt, lastSeenAt: connectedAt };
}

interface Instance {
  id: string;
  redis: RedisConnection;
  registry: RedisRegistry;
  liveness: InstanceLiveness;
  lost: SessionRecord[];
}

for (const mode of ['single', 'cluster'] as const) {
  describe(`RedisRegistry on ${mode === 'single' ? 'a single Redis' : 'a 3-master Redis Cluster'}`, { timeout: 60000 }, () => {
    let config: RedisConfig;
    let stopRedis: () => Promise<void>;
    const instances: Instance[] = [];
    let seq = 0;

    before(async () => {
      if (mode === 'single') {
        const server = await startRedis();
        config = { url: server.url, clusterNodes: undefined, prefix: 'ws:', sessionTtlSeconds: 600, instanceHeartbeatMs: 100 };
        stopRedis = () => server.stop();
      } else {
        const cluster = await startRedisCluster();
        config = { url: undefined, clusterNodes: cluster.servers.map((s) => ({ host: '127.0.0.1', port: s.port })), prefix: 'ws:', sessionTtlSeconds: 600, instanceHeartbeatMs: 100 };
        stopRedis = () => cluster.stop();
      }
    });

    after(async () => {
      for (const instance of instances) {
        await instance.liveness.stop(false);
        instance.redis.disconnect();
      }
      await stopRedis();
    });

    async function instance(heartbeatMs = 60_000): Promise<Instance> {
      const id = `${mode}-i${++seq}`;
      const redis = connectRedis(config, { name: `stompd:${id}` });
      await whenReady(redis, 10000);
      const keys = new RedisKeys(config.prefix);
      const registry = new RedisRegistry({ redis, keys, instanceId: id, sessionTtlSeconds: config.sessionTtlSeconds });
      const lost: SessionRecord[] = [];
      registry.onSessionLost = (r) => lost.push(r);
      const liveness = new InstanceLiveness({ redis, keys, instanceId: id, heartbeatMs, members: [registry], onLivenessLost: async () => undefined, logger: silent });
      await liveness.announce();
      const made = { id, redis, registry, liveness, lost };
      instances.push(made);
      return made;
    }

    const user = (): string => `user-${mode}-${++seq}`;
    const reject1 = { maxPerUser: 1, mode: 'reject' as const };

    it('bind writes the documented layout; unbind removes every trace', async () => {
      const a = await instance();
      const userId = user();
      const result = await a.registry.bind(record('s-layout', userId, a.id, 1000), { maxPerUser: Infinity, mode: 'reject' });
      assert.deepEqual(result, { isBound: true, evicted: [] });
      const hash = await a.redis.hgetall('ws:session:{s-layout}');
      assert.equal(hash.userId, userId);
      assert.equal(hash.instanceId, a.id);
      assert.equal(hash.transport, 'ws');
      assert.equal(hash.remoteAddress, '127.0.0.1:5000');
      assert.deepEqual(JSON.parse(hash.roles!), ['AGENT']);
      assert.equal(hash.connectedAt, '1000');
      const ttl = await a.redis.ttl('ws:session:{s-layout}');
      assert.ok(ttl > 500 && ttl <= 600, `ttl ${ttl}`);
      assert.deepEqual(await a.redis.zrange(`ws:user:{${userId}}`, 0, -1), ['s-layout']);
      assert.equal(await a.redis.sismember('ws:sessions:all', 's-layout'), 1);
      assert.equal(await a.redis.sismember(`ws:instance:{${a.id}}:sessions`, 's-layout'), 1);
      assert.equal(await a.redis.hget(`ws:instance:{${a.id}}:users`, userId), '1');
      assert.ok((await a.registry.onlineUsers()).includes(userId));
      assert.deepEqual((await a.registry.get('s-layout'))?.userId, userId);

      await a.registry.unbind('s-layout');
      assert.equal(await a.redis.exists('ws:session:{s-layout}'), 0);
      assert.equal(await a.redis.exists(`ws:user:{${userId}}`), 0, 'an empty user set is deleted');
      assert.equal(await a.redis.sismember('ws:sessions:all', 's-layout'), 0);
      assert.equal(await a.redis.sismember(`ws:instance:{${a.id}}:sessions`, 's-layout'), 0);
      assert.equal(await a.redis.hget(`ws:instance:{${a.id}}:users`, userId), null);
      assert.ok(!(await a.registry.onlineUsers()).includes(userId));
    });

    it('a refused bind whose holders cannot be read (Redis gone just after the decision) is RegistryUnavailableError, not an internal error', async () => {
      const a = await instance();
      const userId = user();
      assert.equal((await a.registry.bind(record(`s-held-${seq}`, userId, a.id, 1), reject1)).isBound, true);
      const connection = a.redis as unknown as { hgetall: (...args: unknown[]) => Promise<unknown> };
      const realHgetall = connection.hgetall;
      connection.hgetall = () => Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false"));
      try {
        await assert.rejects(a.registry.bind(record(`s-refused-${seq}`, userId, a.id, 2), reject1), RegistryUnavailableError);
      } finally {
        connection.hgetall = realHgetall;
      }
    });

    it("refresh extends the TTL of this instance's sessions and moves lastSeenAt", async () => {
      const a = await instance();
      const sessionId = `s-fresh-${seq}`;
      await a.registry.bind(record(sessionId, user(), a.id, 1), { maxPerUser: Infinity, mode: 'reject' });
      const key = `ws:session:{${sessionId}}`;
      await a.redis.expire(key, 10);
      await a.registry.refresh(123456);
      assert.ok((await a.redis.ttl(key)) > 500);
      assert.equal(await a.redis.hget(key, 'lastSeenAt'), '123456');
    });

    it('reject: a second session is refused and names the holder; replace: the oldest is evicted', async () => {
      const a = await instance();
      const b = await instance();
      const userId = user();
      assert.equal((await a.registry.bind(record('s-r1', userId, a.id, 1), reject1)).isBound, true);
      const refused = await b.registry.bind(record('s-r2', userId, b.id, 2), reject1);
      assert.equal(refused.isBound, false);
      assert.deepEqual(!refused.isBound && refused.holders.map((h) => h.sessionId), ['s-r1']);
      assert.equal(await b.redis.exists('ws:session:{s-r2}'), 0, 'nothing of the refused session is left');
      assert.equal(await b.redis.sismember(`ws:instance:{${b.id}}:sessions`, 's-r2'), 0);

      const replaced = await b.registry.bind(record('s-r3', userId, b.id, 3), { maxPerUser: 1, mode: 'replace' });
      assert.equal(replaced.isBound, true);
      assert.deepEqual(replaced.isBound && replaced.evicted.map((e) => e.sessionId), ['s-r1']);
      assert.deepEqual(await b.registry.sessionsOf(userId).then((all) => all.map((r) => r.sessionId)), ['s-r3']);
    });

    it('20 simultaneous binds of one user from two instances under reject: exactly one wins', async () => {
      const a = await instance();
      const b = await instance();
      const userId = user();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).registry.bind(record(`s-race-${i}`, userId, (i % 2 === 0 ? a : b).id), reject1)));
      assert.equal(results.filter((r) => r.isBound).length, 1);
      assert.equal(await a.redis.zcard(`ws:user:{${userId}}`), 1);
    });

    it('a holder whose instance is dead does not lock its user out', async () => {
      const a = await instance();
      const ghost = await instance();
      const userId = user();
      assert.equal((await ghost.registry.bind(record('s-ghost', userId, ghost.id, 1), reject1)).isBound, true);
      await ghost.redis.del(`ws:instance:{${ghost.id}}`); // its liveness key expired: the instance is gone
      const result = await a.registry.bind(record('s-back', userId, a.id, 2), reject1);
      assert.equal(result.isBound, true, 'the user reconnects at once through another instance');
      assert.deepEqual(await a.redis.zrange(`ws:user:{${userId}}`, 0, -1), ['s-back']);
    });

    it('a holder whose instance vanished a moment ago (connection gone, liveness key not yet expired) does not lock its user out', async () => {
      const a = await instance();
      const ghost = await instance(60_000); // liveness TTL of 3 minutes: only the lost connection tells
      a.registry.membership = a.liveness; // membership judges whether an instance vanished
      const userId = user();
      assert.equal((await ghost.registry.bind(record(`s-vanished-${seq}`, userId, ghost.id, 1), reject1)).isBound, true);
      ghost.redis.disconnect(); // like kill -9: the process's sockets close at once
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(await a.redis.exists(`ws:instance:{${ghost.id}}`), 1, 'the liveness key is still there');
      const result = await a.registry.bind(record(`s-now-${seq}`, userId, a.id, 2), reject1);
      assert.equal(result.isBound, true);
      assert.equal(await a.redis.exists(`ws:instance:{${ghost.id}}`), 0, 'declared dead: the reaper takes it next');
    });

    it('a dead instance is reaped by one of two racing survivors: each session reported exactly once', async () => {
      const survivors = [await instance(), await instance()];
      const dying = await instance();
      const users = [user(), user(), user()];
      for (const [i, userId] of users.entries()) await dying.registry.bind(record(`s-dead-${seq}-${i}`, userId, dying.id), reject1);
      await dying.redis.del(`ws:instance:{${dying.id}}`);
      await Promise.all(survivors.flatMap((s) => [s.liveness.reapDead(), s.liveness.reapDead()]));
      const lost = survivors.flatMap((s) => s.lost).filter((r) => r.instanceId === dying.id);
      assert.equal(lost.length, 3);
      assert.deepEqual(lost.map((r) => r.userId).sort(), [...users].sort());
      for (const userId of users) assert.equal(await dying.redis.exists(`ws:user:{${userId}}`), 0);
      assert.equal(await dying.redis.sismember('ws:instances', dying.id), 0);
      assert.equal(await dying.redis.exists(`ws:instance:{${dying.id}}:sessions`), 0);
    });

    it('liveness expires on its own when an instance stops refreshing, and a survivor reaps it', async () => {
      const survivor = await instance();
      const dying = await instance(100);
      await dying.liveness.start();
      const userId = user();
      await dying.registry.bind(record(`s-quiet-${seq}`, userId, dying.id), reject1);
      await dying.liveness.stop(false); // like kill -9: nothing is cleaned up
      await new Promise((resolve) => setTimeout(resolve, 400)); // past the 300 ms TTL
      await survivor.liveness.reapDead();
      assert.deepEqual(
        survivor.lost.filter((r) => r.instanceId === dying.id).map((r) => r.userId),
        [userId],
      );
    });

    it('a session closed while re-registration runs is not left registered', async () => {
      const a = await instance();
      const ids = Array.from({ length: 300 }, (_, i) => `s-rr-${seq}-${i}`);
      for (const id of ids) await a.registry.bind(record(id, `u-${id}`, a.id), { maxPerUser: Infinity, mode: 'reject' });
      const last = ids[ids.length - 1]!;
      const reconciling = a.registry.reconcile();
      await new Promise((resolve) => setTimeout(resolve, 5));
      await a.registry.unbind(last); // the session ends while its turn has not come yet
      await reconciling;
      assert.equal(await a.redis.exists(`ws:session:{${last}}`), 0);
      assert.equal(await a.redis.exists(`ws:user:{u-${last}}`), 0);
      assert.equal(a.registry.localSessions.has(last), false);
      for (const id of ids.slice(0, 5)) await a.registry.unbind(id);
    });

    it('an instance that stalled past its TTL and was reaped learns it when it wakes up', async () => {
      const survivor = await instance();
      const sleeper = await instance(100);
      const woke: boolean[] = [];
      const liveness = new InstanceLiveness({
        redis: sleeper.redis,
        keys: new RedisKeys('ws:'),
        instanceId: sleeper.id,
        heartbeatMs: 100,
        members: [sleeper.registry],
        onLivenessLost: async (wasReaped) => void woke.push(wasReaped),
        logger: silent,
      });
      await liveness.announce();
      await sleeper.registry.bind(record(`s-sleep-${seq}`, user(), sleeper.id), reject1);
      await new Promise((resolve) => setTimeout(resolve, 400)); // no refresh: like a long GC pause
      await survivor.liveness.reapDead();
      assert.equal(await survivor.redis.sismember('ws:instances', sleeper.id), 0, 'reaped');
      await liveness.tick(); // it wakes up
      assert.deepEqual(woke, [true]);
      assert.equal(await survivor.redis.sismember('ws:instances', sleeper.id), 1, 'listed again');
      assert.equal(await survivor.redis.exists(`ws:instance:{${sleeper.id}}:reaped`), 0);
    });

    it('a holder whose Redis connection only blipped (killed, reconnected at once) still holds its place', async () => {
      const a = await instance();
      a.registry.membership = a.liveness;
      const b = await instance();
      const userId = user();
      assert.equal((await b.registry.bind(record(`s-blip-${seq}`, userId, b.id, 1), reject1)).isBound, true);
      type Node = { client(...args: string[]): Promise<unknown> };
      const nodes: Node[] = 'nodes' in a.redis ? (a.redis as unknown as { nodes(role: string): Node[] }).nodes('master') : [a.redis];
      let killed = 0;
      for (const node of nodes) {
        const list = String(await node.client('LIST'));
        for (const line of list.split('\n')) {
          if (!line.includes(` name=stompd:${b.id} `)) continue;
          await node.client('KILL', 'ID', /id=(\d+)/.exec(line)![1]!);
          killed++;
        }
      }
      assert.ok(killed > 0, "B's connections were found and killed");
      // ioredis reconnects B within ~100 ms.
      const result = await a.registry.bind(record(`s-blip2-${seq}`, userId, a.id, 2), reject1);
      assert.equal(result.isBound, false, 'B is alive: its session keeps the place');
      assert.equal(await a.redis.exists(`ws:instance:{${b.id}}`), 1);
    });

    it("re-registration after Redis lost its data restores this instance's sessions", async () => {
      const a = await instance();
      const userId = user();
      await a.registry.bind(record('s-keep', userId, a.id), reject1);
      await a.redis.del('ws:session:{s-keep}');
      await a.redis.del(`ws:user:{${userId}}`);
      await a.redis.srem('ws:sessions:all', 's-keep');
      await a.registry.rebuild();
      assert.equal((await a.registry.get('s-keep'))?.userId, userId);
      assert.deepEqual(await a.redis.zrange(`ws:user:{${userId}}`, 0, -1), ['s-keep']);
      assert.equal(await a.redis.sismember('ws:sessions:all', 's-keep'), 1);
    });
  });
}
