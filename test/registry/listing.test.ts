// The registry's listing side, the same contract for MemoryRegistry and for RedisRegistry on a
// real redis-server: paginated session ids (SSCAN with an opaque cursor), online users with
// their roles (role filter, pages), stats per transport and per instance, refresh.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { RedisKeys } from '../../src/cluster/keys';
import { InstanceMembership as InstanceLiveness } from '../../src/cluster/membership';
import { connectRedis, whenReady } from '../../src/cluster/redis-client';
import type { RedisConnection } from '../../src/cluster/redis-client';
import { RedisRegistry } from '../../src/cluster/redis-registry';
import { MemoryRegistry } from '../../src/registry/memory-registry';
import { InvalidCursorError } from '../../src/registry/registry';
import type { SessionRecord, SessionRegistry } from '../../src/registry/registry';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const silent = pino({ level: 'silent' });
const unlimited = { maxPerUser: Infinity, mode: 'reject' as const };

function record(sessionId: string, userId: string, roles: string[], instanceId: string, transport: string): SessionRecord {
  const now = Date.now();
  return { sessionId, userId, roles, instanceId, transport, remoteAddress: '127.0.0.1:5000', connectedAt: now, lastSeenAt: now };
}

const RECORDS = [
  record('s1', 'alice', ['AGENT'], 'A', 'tcp'),
  record('s2', 'alice', ['AGENT'], 'B', 'ws'),
  record('s3', 'bob', ['CUSTOMER'], 'A', 'ws'),
  record('s4', 'carol', ['AGENT', 'ADMIN'], 'B', 'ws'),
  record('s5', 'dave', ['CUSTOMER'], 'B', 'tcp'),
];

interface Subject {
  /** Registries of instances A and B (the same object in memory). */
  a: SessionRegistry;
  b: SessionRegistry;
  expectedTtlSeconds: number | null;
  /** Seconds left on the session's expiry (Redis only). */
  ttlOf?(sessionId: string): Promise<number>;
  shortenTtl?(sessionId: string): Promise<void>;
}

function contract(name: string, setUp: () => Promise<Subject>, tearDown: () => Promise<void>): void {
  describe(name, { timeout: 30000 }, () => {
    let subject: Subject;
    before(async () => {
      subject = await setUp();
      for (const r of RECORDS) await (r.instanceId === 'A' ? subject.a : subject.b).bind(r, unlimited);
    });
    after(tearDown);

    it('lists every session exactly once across pages of at most `limit`, from either instance', async () => {
      for (const registry of [subject.a, subject.b]) {
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await registry.listSessions(cursor, 2);
          assert.ok(page.sessionIds.length <= 2, `page of ${page.sessionIds.length}`);
          assert.equal(page.totalCount, 5);
          seen.push(...page.sessionIds);
          cursor = page.nextCursor;
          assert.ok(++pages < 10, 'the walk ends');
        } while (cursor !== undefined);
        assert.deepEqual([...seen].sort(), ['s1', 's2', 's3', 's4', 's5']);
        assert.ok(pages >= 3);
      }
      const whole = await subject.a.listSessions(undefined, 100);
      assert.equal(whole.nextCursor, undefined);
      assert.equal(whole.sessionIds.length, 5);
    });

    it('refuses a cursor it never issued', async () => {
      await assert.rejects(subject.a.listSessions('not*base64', 2), InvalidCursorError);
      await assert.rejects(subject.a.listSessions(Buffer.from('x:1').toString('base64url'), 2), InvalidCursorError);
      const users = await subject.a.onlineUsersPage({ cursor: undefined, limit: 1, role: undefined });
      await assert.rejects(subject.a.listSessions(users.nextCursor, 2), InvalidCursorError);
    });

    it('pages online users in id order with their roles, optionally of one role', async () => {
      const all = await subject.b.onlineUsersPage({ cursor: undefined, limit: 10, role: undefined });
      assert.deepEqual(all.users.map((u) => [u.userId, u.sessionCount]), [['alice', 2], ['bob', 1], ['carol', 1], ['dave', 1]]);
      assert.deepEqual([...all.users[2]!.roles].sort(), ['ADMIN', 'AGENT']);
      assert.equal(all.nextCursor, undefined);
      const agents: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await subject.a.onlineUsersPage({ cursor, limit: 1, role: 'AGENT' });
        assert.ok(page.users.length <= 1);
        agents.push(...page.users.map((u) => u.userId));
        cursor = page.nextCursor;
      } while (cursor !== undefined);
      assert.deepEqual(agents, ['alice', 'carol']);
      const none = await subject.a.onlineUsersPage({ cursor: undefined, limit: 5, role: 'NOBODY' });
      assert.deepEqual(none.users, []);
    });

    it('counts sessions per transport and per instance', async () => {
      for (const registry of [subject.a, subject.b]) {
        const stats = await registry.stats();
        assert.equal(stats.totalActiveSessions, 5);
        assert.equal(stats.onlineUsers, 4);
        assert.deepEqual(stats.byTransport, { tcp: 2, ws: 3 });
        assert.deepEqual(stats.perInstance, { A: { sessions: 2, users: 2 }, B: { sessions: 3, users: 3 } });
      }
    });

    it('refresh notes the session alive and extends its expiry; unknown ids are undefined', async () => {
      assert.equal(await subject.a.refreshSession('nope'), undefined);
      await subject.shortenTtl?.('s3');
      const at = Date.now() + 5000;
      const refreshed = await subject.b.refreshSession('s3', at);
      assert.ok(refreshed);
      assert.equal(refreshed.record.userId, 'bob');
      assert.equal(refreshed.record.lastSeenAt, at);
      assert.equal(refreshed.ttlSeconds, subject.expectedTtlSeconds);
      assert.equal((await subject.a.get('s3'))?.lastSeenAt, at);
      if (subject.ttlOf) assert.ok((await subject.ttlOf('s3')) > 500, 'TTL extended');
    });

    it('a session unbound is gone from the listings', async () => {
      await subject.a.unbind('s1');
      const page = await subject.b.listSessions(undefined, 100);
      assert.deepEqual([...page.sessionIds].sort(), ['s2', 's3', 's4', 's5']);
      const stats = await subject.b.stats();
      assert.deepEqual(stats.byTransport, { tcp: 1, ws: 3 });
      assert.equal(stats.perInstance.A?.sessions, 1);
    });
  });
}

const memory = new MemoryRegistry();
contract('MemoryRegistry listings', async () => ({ a: memory, b: memory, expectedTtlSeconds: null }), async () => undefined);

let server: RedisServer;
const connections: RedisConnection[] = [];
const livenesses: InstanceLiveness[] = [];
contract(
  'RedisRegistry listings on a real Redis (two instances)',
  async () => {
    server = await startRedis();
    const keys = new RedisKeys('ws:');
    const make = async (instanceId: string): Promise<RedisRegistry> => {
      const redis = connectRedis({ url: server.url, clusterNodes: undefined, prefix: 'ws:', sessionTtlSeconds: 600, instanceHeartbeatMs: 1000 }, { name: `stompd:${instanceId}` });
      await whenReady(redis, 10000);
      connections.push(redis);
      const registry = new RedisRegistry({ redis, keys, instanceId, sessionTtlSeconds: 600 });
      const liveness = new InstanceLiveness({ redis, keys, instanceId, heartbeatMs: 1000, members: [registry], onLivenessLost: async () => undefined, logger: silent });
      await liveness.start();
      livenesses.push(liveness);
      return registry;
    };
    return {
      a: await make('A'),
      b: await make('B'),
      expectedTtlSeconds: 600,
      ttlOf: async (id) => Number(server.cli('TTL', keys.session(id)).trim()),
      shortenTtl: async (id) => void server.cli('EXPIRE', keys.session(id), '5'),
    };
  },
  async () => {
    for (const l of livenesses) await l.stop(false);
    for (const c of connections) c.disconnect();
    await server.stop();
  },
);
