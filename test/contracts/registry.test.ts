// The SessionRegistry contract, one suite run against every implementation: MemoryRegistry,
// RedisRegistry on a single real Redis and on a real 3-master Redis Cluster (two instances
// each, as two brokers would use it), so the implementations cannot drift. The policy
// decision (bind under reject, replace, no limit; a race of 20), the lifecycle (unbind,
// refresh, noted subscriptions) and the listings (pages with opaque cursors, online users by
// role, stats).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { RedisKeys } from '../../src/cluster/keys';
import { InstanceMembership } from '../../src/cluster/membership';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisRegistry } from '../../src/cluster/redis-registry';
import { MemoryRegistry } from '../../src/registry/memory-registry';
import { InvalidCursorError } from '../../src/registry/registry';
import type { BindPolicy, SessionRecord, SessionRegistry } from '../../src/registry/registry';
import { REDIS_KINDS, startEnvironment } from './environments';
import type { RedisEnvironment } from './environments';

interface Subject {
  /** Two instances' views of one registry (memory: the same object twice). */
  a: SessionRegistry;
  b: SessionRegistry;
  /** The instance ids records of `a` and `b` carry. */
  idA: string;
  idB: string;
  /** Whether sessions expire (refreshSession answers a TTL); memory: they live as long as their connection. */
  hasTtl: boolean;
  /** Where sessions expire: seconds left on a session's expiry, and a way to shorten it. */
  ttlOf?(sessionId: string): Promise<number>;
  shortenTtl?(sessionId: string): Promise<void>;
  close(): Promise<void>;
}

const unlimited: BindPolicy = { maxPerUser: Infinity, mode: 'reject' };
const reject1: BindPolicy = { maxPerUser: 1, mode: 'reject' };
let seq = 0;
const fresh = (what: string): string => `${what}-${++seq}`;

function record(sessionId: string, userId: string, instanceId: string, connectedAt: number, extra: Partial<SessionRecord> = {}): SessionRecord {
  return { sessionId, userId, roles: ['AGENT'], instanceId, transport: 'ws', remoteAddress: '127.0.0.1:5000', connectedAt, lastSeenAt: connectedAt, ...extra };
}

const ids = (records: readonly SessionRecord[]): string[] => records.map((r) => r.sessionId);

function registryContract(name: string, make: () => Promise<Subject>): void {
  describe(`SessionRegistry contract: ${name}`, { timeout: 60000 }, () => {
    let s: Subject;
    before(async () => {
      s = await make();
    });
    after(() => s?.close());

    it("binds and reads back the record; a user's sessions come oldest first", async () => {
      const user = fresh('u');
      const [first, second] = [fresh('s'), fresh('s')];
      assert.deepEqual(await s.a.bind(record(first, user, s.idA, 1000, { roles: ['AGENT', 'ADMIN'], transport: 'tcp' }), unlimited), { isBound: true, evicted: [] });
      assert.deepEqual(await s.b.bind(record(second, user, s.idB, 2000), unlimited), { isBound: true, evicted: [] });
      const got = await s.b.get(first);
      assert.deepEqual(got && { ...got }, record(first, user, s.idA, 1000, { roles: ['AGENT', 'ADMIN'], transport: 'tcp' }));
      assert.deepEqual(ids(await s.a.sessionsOf(user)), [first, second]);
      assert.ok((await s.b.onlineUsers()).includes(user));
      assert.equal(await s.a.get(fresh('nobody')), undefined);
      assert.deepEqual(await s.a.sessionsOf(fresh('nobody')), []);
    });

    it('reject: a session past the limit is refused, naming the holders, and nothing of it is kept', async () => {
      const user = fresh('u');
      const [held, refused] = [fresh('s'), fresh('s')];
      assert.equal((await s.a.bind(record(held, user, s.idA, 1), reject1)).isBound, true);
      const result = await s.b.bind(record(refused, user, s.idB, 2), reject1);
      assert.equal(result.isBound, false);
      assert.deepEqual(!result.isBound && ids(result.holders), [held]);
      assert.equal(await s.a.get(refused), undefined);
      assert.deepEqual(ids(await s.b.sessionsOf(user)), [held]);
    });

    // The evicted no longer count for their user; their records may stay until their holders
    // close them (the policy kicks them, and a closing session unbinds).
    it('replace: the oldest are evicted down to the limit, oldest first, and no longer count for the user', async () => {
      const user = fresh('u');
      const sessions = [fresh('s'), fresh('s'), fresh('s')];
      for (const [i, id] of sessions.entries()) await (i % 2 === 0 ? s.a : s.b).bind(record(id, user, i % 2 === 0 ? s.idA : s.idB, 100 + i), unlimited);
      const newest = fresh('s');
      const result = await s.b.bind(record(newest, user, s.idB, 200), { maxPerUser: 2, mode: 'replace' });
      assert.equal(result.isBound, true);
      assert.deepEqual(result.isBound && ids(result.evicted), sessions.slice(0, 2));
      assert.deepEqual(ids(await s.a.sessionsOf(user)), [sessions[2], newest]);
      await s.a.unbind(sessions[0]!);
      await s.b.unbind(sessions[1]!);
      assert.equal(await s.a.get(sessions[0]!), undefined);
      assert.deepEqual(ids(await s.a.sessionsOf(user)), [sessions[2], newest], 'the evicted closing leaves the others alone');
    });

    it('no limit: any number of sessions of one user bind', async () => {
      const user = fresh('u');
      for (let i = 0; i < 10; i++) assert.equal((await s.a.bind(record(fresh('s'), user, s.idA, i), unlimited)).isBound, true);
      assert.equal((await s.b.sessionsOf(user)).length, 10);
    });

    it('binding a bound session again counts it once', async () => {
      const user = fresh('u');
      const id = fresh('s');
      await s.a.bind(record(id, user, s.idA, 1), reject1);
      assert.deepEqual(await s.a.bind(record(id, user, s.idA, 1), reject1), { isBound: true, evicted: [] });
      assert.deepEqual(ids(await s.a.sessionsOf(user)), [id]);
    });

    it('20 simultaneous binds of one user from two instances under reject: exactly one wins', async () => {
      const user = fresh('u');
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? s.a : s.b).bind(record(fresh('s'), user, i % 2 === 0 ? s.idA : s.idB, i), reject1)));
      assert.equal(results.filter((r) => r.isBound).length, 1);
      assert.equal((await s.a.sessionsOf(user)).length, 1);
    });

    it('unbind forgets the session (again: nothing), and with its last session the user', async () => {
      const user = fresh('u');
      const [x, y] = [fresh('s'), fresh('s')];
      await s.a.bind(record(x, user, s.idA, 1), unlimited);
      await s.a.bind(record(y, user, s.idA, 2), unlimited);
      await s.a.unbind(x);
      await s.a.unbind(x);
      await s.b.unbind(fresh('unknown'));
      assert.deepEqual(ids(await s.b.sessionsOf(user)), [y]);
      await s.a.unbind(y);
      assert.equal(await s.b.get(y), undefined);
      assert.ok(!(await s.b.onlineUsers()).includes(user));
      assert.equal((await s.a.bind(record(fresh('s'), user, s.idA, 3), reject1)).isBound, true, 'the user may connect again');
    });

    it('refreshSession notes the session alive (undefined when unknown); noted subscriptions read back, never revive a gone session', async () => {
      const id = fresh('s');
      await s.a.bind(record(id, fresh('u'), s.idA, 1), unlimited);
      assert.equal(await s.b.refreshSession(fresh('unknown')), undefined);
      await s.shortenTtl?.(id);
      const refreshed = await s.b.refreshSession(id, 5000);
      if (s.ttlOf) assert.ok((await s.ttlOf(id)) > 500, 'the expiry is extended');
      assert.equal(refreshed?.record.lastSeenAt, 5000);
      assert.equal((await s.a.get(id))?.lastSeenAt, 5000);
      if (s.hasTtl) assert.ok(refreshed.ttlSeconds! > 0);
      else assert.equal(refreshed?.ttlSeconds, null);
      const notes = [
        { id: '1', destination: '/topic/a', ack: 'auto' },
        { id: '2', destination: '/queue/b', ack: 'client' },
      ];
      await s.a.noteSubscriptions(id, notes);
      assert.deepEqual((await s.b.get(id))?.subscriptions, notes);
      await s.a.unbind(id);
      await s.a.noteSubscriptions(id, notes);
      assert.equal(await s.b.get(id), undefined);
    });
  });

  describe(`SessionRegistry contract, listings: ${name}`, { timeout: 60000 }, () => {
    let s: Subject;
    const users = { alice: fresh('alice'), bob: fresh('bob'), carol: fresh('carol'), dave: fresh('dave') };
    const listed: SessionRecord[] = [];
    before(async () => {
      s = await make();
      listed.push(
        record('s1', users.alice, s.idA, 1, { transport: 'tcp' }),
        record('s2', users.alice, s.idB, 2),
        record('s3', users.bob, s.idA, 3, { roles: ['CUSTOMER'] }),
        record('s4', users.carol, s.idB, 4, { roles: ['AGENT', 'ADMIN'] }),
        record('s5', users.dave, s.idB, 5, { roles: ['CUSTOMER'], transport: 'tcp' }),
      );
      for (const r of listed) await (r.instanceId === s.idA ? s.a : s.b).bind(r, unlimited);
    });
    after(() => s?.close());

    it('lists every session exactly once across pages of at most `limit`, from either instance', async () => {
      for (const registry of [s.a, s.b]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await registry.listSessions(cursor, 2);
          assert.ok(page.sessionIds.length <= 2);
          assert.equal(page.totalCount, 5);
          seen.push(...page.sessionIds);
          cursor = page.nextCursor;
          assert.ok(++pages < 10, 'the walk ends');
        } while (cursor !== undefined);
        assert.deepEqual(seen.sort(), ['s1', 's2', 's3', 's4', 's5']);
        assert.ok(pages >= 3);
      }
      const whole = await s.a.listSessions(undefined, 100);
      assert.equal(whole.nextCursor, undefined);
      assert.equal(whole.sessionIds.length, 5);
    });

    it('refuses a cursor it never issued, or one of another listing', async () => {
      await assert.rejects(s.a.listSessions('not*base64', 2), InvalidCursorError);
      await assert.rejects(s.a.listSessions(Buffer.from('x:1').toString('base64url'), 2), InvalidCursorError);
      const page = await s.a.onlineUsersPage({ cursor: undefined, limit: 1, role: undefined });
      await assert.rejects(s.a.listSessions(page.nextCursor, 2), InvalidCursorError);
    });

    it('pages online users in id order with their roles and session counts, optionally of one role', async () => {
      const all = await s.b.onlineUsersPage({ cursor: undefined, limit: 10, role: undefined });
      assert.deepEqual(
        all.users.map((u) => [u.userId, u.sessionCount]),
        [
          [users.alice, 2],
          [users.bob, 1],
          [users.carol, 1],
          [users.dave, 1],
        ],
      );
      assert.deepEqual([...all.users[2]!.roles].sort(), ['ADMIN', 'AGENT']);
      const agents: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await s.a.onlineUsersPage({ cursor, limit: 1, role: 'AGENT' });
        agents.push(...page.users.map((u) => u.userId));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      assert.deepEqual(agents, [users.alice, users.carol]);
      assert.deepEqual((await s.a.onlineUsersPage({ cursor: undefined, limit: 5, role: 'NOBODY' })).users, []);
    });

    it('counts sessions per transport and per instance; an unbound session is gone from every listing', async () => {
      for (const registry of [s.a, s.b]) {
        const stats = await registry.stats();
        assert.equal(stats.totalActiveSessions, 5);
        assert.equal(stats.onlineUsers, 4);
        assert.deepEqual(stats.byTransport, { tcp: 2, ws: 3 });
        assert.deepEqual(stats.perInstance, { [s.idA]: { sessions: 2, users: 2 }, [s.idB]: { sessions: 3, users: 3 } });
      }
      await s.a.unbind('s1');
      assert.deepEqual((await s.b.listSessions(undefined, 100)).sessionIds.sort(), ['s2', 's3', 's4', 's5']);
      const stats = await s.b.stats();
      assert.deepEqual(stats.byTransport, { tcp: 1, ws: 3 });
      assert.equal(stats.perInstance[s.idA]?.sessions, 1);
    });
  });
}

registryContract('MemoryRegistry', async () => {
  const registry = new MemoryRegistry();
  return { a: registry, b: registry, idA: 'A', idB: 'B', hasTtl: false, close: async () => undefined };
});

for (const kind of REDIS_KINDS) {
  let environment: RedisEnvironment | undefined;
  const started = (async () => (environment = await startEnvironment(kind)))();
  after(async () => {
    await started.catch(() => undefined);
    await environment?.stop();
  });
  registryContract(`RedisRegistry on ${kind === 'single' ? 'a single Redis' : 'a 3-master Redis Cluster'}`, async () => {
    const env = await started;
    const config = env.config();
    const keys = new RedisKeys(config.prefix);
    const connections: RedisConnection[] = [];
    const memberships: InstanceMembership[] = [];
    const instance = async (): Promise<[RedisRegistry, string]> => {
      const instanceId = fresh('i');
      const redis = connectRedis(config, { name: `stompd:${instanceId}` });
      connections.push(redis);
      await whenReady(redis, 10000);
      const registry = new RedisRegistry({ redis, keys, instanceId, sessionTtlSeconds: config.sessionTtlSeconds });
      const membership = new InstanceMembership({ redis, keys, instanceId, heartbeatMs: config.instanceHeartbeatMs, members: [registry], onLivenessLost: async () => undefined, logger: pino({ level: 'silent' }) });
      memberships.push(membership);
      await membership.announce();
      registry.membership = membership;
      return [registry, instanceId];
    };
    const [a, idA] = await instance();
    const [b, idB] = await instance();
    return {
      a,
      b,
      idA,
      idB,
      hasTtl: true,
      ttlOf: (id) => connections[0]!.ttl(keys.session(id)),
      shortenTtl: async (id) => void (await connections[0]!.expire(keys.session(id), 5)),
      close: async () => {
        for (const m of memberships) await m.stop(false);
        for (const c of connections) c.disconnect();
      },
    };
  });
}
