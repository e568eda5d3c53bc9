// The HTTP API of two instances on one real Redis: both answer every session question the
// same way (from the registry, not from local memory), a DELETE on one closes a session on the
// other, a logout closes the user's sessions on both, a publish on one reaches subscribers on
// both (topic and /user/…), and /readyz and /metrics follow Redis going away and coming back.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { ApiError, OnlineUsers, Published, Readiness, SessionDetails, SessionIdsPage, SessionStats, UserOnline, UserSessions } from '../helpers/api-shapes';
import { ApiClient, eventually, parsePrometheus } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const TOKEN = 'cluster-admin-token-0123456789';

describe('HTTP API on two instances sharing one Redis', { timeout: 90000 }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  let apiA: ApiClient;
  let apiB: ApiClient;
  const clients: RawClient[] = [];

  async function connect(broker: RunningServer, login: string, transport: 'tcp' | 'ws' = 'tcp'): Promise<{ client: RawClient; sessionId: string }> {
    const client = transport === 'tcp' ? await RawClient.tcp(broker.tcpPort!) : await RawClient.ws(broker.wsPort!);
    clients.push(client);
    const connected = await client.connect({ login });
    return { client, sessionId: header(connected, 'session')! };
  }

  async function allSessionIds(api: ApiClient): Promise<string[]> {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page: SessionIdsPage = await api.ok(`/api/session/all?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(page.sessions.length <= 2);
      ids.push(...page.sessions);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return ids.sort();
  }

  /** The same GET on both instances must give the same JSON. */
  async function same<T extends object>(path: string, omit: string[] = []): Promise<T> {
    const [fromA, fromB] = await Promise.all([apiA.ok<T>(path), apiB.ok<T>(path)]);
    const kept = (body: T): T => Object.fromEntries(Object.entries(body).filter(([key]) => !omit.includes(key))) as T;
    assert.deepEqual(kept(fromA), kept(fromB), `${path} answers alike on both instances`);
    return kept(fromA);
  }

  async function untilRelayed(routeKey: string): Promise<void> {
    await eventually(
      async () => Number(redis.cli('pubsub', 'numsub', `ws:dest:${routeKey}`).trim().split('\n')[1]),
      (n) => n >= 1,
      5000,
      `${routeKey} subscribed in Redis`,
    );
  }

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '200' };
    a = await startBroker({ ...env, INSTANCE_ID: 'http-a' });
    b = await startBroker({ ...env, INSTANCE_ID: 'http-b' });
    apiA = new ApiClient(a.httpPort!, TOKEN);
    apiB = new ApiClient(b.httpPort!, TOKEN);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all([a.stop(), b.stop()]);
    await redis.stop();
  });

  it('both instances give the same answers about sessions on either', async () => {
    const aliceA = await connect(a, 'alice');
    const aliceB = await connect(b, 'alice', 'ws');
    const bob = await connect(b, 'bob');
    const ids = await allSessionIds(apiA);
    assert.deepEqual(ids, [aliceA.sessionId, aliceB.sessionId, bob.sessionId].sort());
    assert.deepEqual(await allSessionIds(apiB), ids);
    for (const { sessionId } of [aliceA, aliceB, bob]) await same<SessionDetails>(`/api/session/${sessionId}`);
    assert.equal((await apiB.ok<SessionDetails>(`/api/session/${aliceA.sessionId}`)).instanceId, 'http-a');
    assert.equal((await apiA.ok<SessionDetails>(`/api/session/${aliceB.sessionId}`)).transport, 'ws');
    const alice = await same<UserSessions>('/api/session/user/alice');
    assert.equal(alice.sessionCount, 2);
    assert.deepEqual(alice.sessions.map((s) => s.instanceId).sort(), ['http-a', 'http-b']);
    assert.deepEqual(await same<UserOnline>('/api/session/user/bob/online'), { userId: 'bob', isOnline: true, sessionCount: 1 });
    const stats = await same<SessionStats>('/api/session/stats', ['timestamp']);
    assert.deepEqual(stats, {
      totalActiveSessions: 3,
      onlineUsers: 2,
      byTransport: { tcp: 2, ws: 1 },
      perInstance: { 'http-a': { sessions: 1, users: 1 }, 'http-b': { sessions: 2, users: 2 } },
    });
    const online = await same<OnlineUsers>('/api/users/online');
    assert.deepEqual(
      online.users.map((u) => [u.userId, u.sessionCount]),
      [
        ['alice', 2],
        ['bob', 1],
      ],
    );

    // DISCONNECT on B, a destroyed socket on A: gone from both.
    bob.client.sendFrame('DISCONNECT', { receipt: 'bye' });
    await bob.client.expect('RECEIPT');
    aliceA.client.destroy();
    for (const api of [apiA, apiB]) {
      await eventually(
        () => allSessionIds(api),
        (list) => list.length === 1 && list[0] === aliceB.sessionId,
        5000,
        'only alice on B left',
      );
      assert.equal((await api.get(`/api/session/${bob.sessionId}`)).status, 404);
    }
    await same<SessionStats>('/api/session/stats', ['timestamp']);
    aliceB.client.destroy();
    await eventually(
      () => apiA.ok<SessionStats>('/api/session/stats'),
      (s) => s.totalActiveSessions === 0,
      5000,
      'no sessions left',
    );
  });

  it('refresh on one instance extends the Redis TTL of a session held by the other', async () => {
    const { sessionId } = await connect(b, 'refreshed');
    const key = `ws:session:{${sessionId}}`;
    redis.cli('EXPIRE', key, '30');
    const response = await apiA.post(`/api/session/${sessionId}/refresh`);
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.body, { sessionId, userId: 'refreshed', refreshed: true, ttlSeconds: 86400 });
    assert.ok(Number(redis.cli('TTL', key).trim()) > 86000);
    assert.equal((await apiB.post('/api/session/no-such/refresh')).status, 404);
  });

  it('DELETE on instance A kicks a session living on instance B (ERROR KICKED)', async () => {
    const victim = await connect(b, 'kicked-user');
    const neighbour = await connect(b, 'kicked-user');
    const response = await apiA.delete(`/api/session/${victim.sessionId}`);
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.body, { sessionId: victim.sessionId, sessionsClosed: 1, instancesReached: 2 });
    assert.match(header(await victim.client.expect('ERROR'), 'message') ?? '', /^KICKED:/);
    await victim.client.waitClosed();
    await neighbour.client.expectSilence(100);
    assert.equal(neighbour.client.isClosed, false);
    for (const api of [apiA, apiB])
      await eventually(
        () => api.get(`/api/session/${victim.sessionId}`),
        (r) => r.status === 404,
        5000,
        'the kicked session gone',
      );
  });

  it('DELETE of a user on B closes its sessions on both instances (ERROR LOGGED_OUT)', async () => {
    const onA = await connect(a, 'everywhere');
    const onB = await connect(b, 'everywhere', 'ws');
    const other = await connect(a, 'somebody-else');
    const response = await apiB.delete('/api/session/user/everywhere');
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.body, { userId: 'everywhere', sessionsClosed: 2, instancesReached: 2 });
    for (const c of [onA, onB]) {
      assert.match(header(await c.client.expect('ERROR'), 'message') ?? '', /^LOGGED_OUT:/);
      await c.client.waitClosed();
    }
    assert.equal(other.client.isClosed, false);
    await eventually(
      () => apiA.ok<UserOnline>('/api/session/user/everywhere/online'),
      (r) => r.isOnline === false,
      5000,
      'logged out everywhere',
    );
  });

  it('a publish on A reaches topic subscribers on both instances and a /user/… subscriber on B', async () => {
    const onA = await connect(a, 'reader-a');
    const onB = await connect(b, 'reader-b');
    for (const c of [onA, onB]) {
      c.client.sendFrame('SUBSCRIBE', { id: 't', destination: '/topic/broadcast', receipt: 'r' });
      await c.client.expect('RECEIPT');
    }
    onB.client.sendFrame('SUBSCRIBE', { id: 'u', destination: '/user/queue/inbox', receipt: 'r' });
    await onB.client.expect('RECEIPT');
    await untilRelayed('/topic/broadcast');
    await untilRelayed('/user/reader-b/queue/inbox');

    const topic = await apiA.post<Published>('/api/publish', { destination: '/topic/broadcast', body: 'to everyone' });
    assert.equal(topic.status, 200, topic.text);
    for (const c of [onA, onB]) {
      const message = await c.client.expect('MESSAGE');
      assert.equal(message.body.toString(), 'to everyone');
      assert.equal(header(message, 'message-id'), topic.body.messageId);
    }
    const binary = Buffer.from([0xde, 0xad, 0, 0xbe, 0xef]);
    const user = await apiA.post('/api/publish', { destination: '/user/reader-b/queue/inbox', body: binary.toString('base64'), bodyEncoding: 'base64' });
    assert.equal(user.status, 200, user.text);
    const inbox = await onB.client.expect('MESSAGE');
    assert.deepEqual(inbox.body, binary);
    assert.equal(header(inbox, 'destination'), '/user/queue/inbox');
    await onA.client.expectSilence(200);
  });

  it('/metrics on each instance is Prometheus text with the Redis metrics; /readyz is 503 with the reason while Redis is away', async () => {
    await eventually(
      async () => parsePrometheus((await apiA.get('/metrics')).text),
      (m) => (m.get('stompd_redis_pings_total') ?? 0) >= 1,
      5000,
      'a PING measured',
    );
    const metrics = parsePrometheus((await apiB.get('/metrics')).text);
    assert.equal(metrics.get('stompd_redis_degraded'), 0);
    assert.ok(metrics.get('stompd_redis_command_latency_seconds')! > 0);
    assert.ok(metrics.get('stompd_relay_messages_total{direction="received"}')! >= 1, 'B received relayed messages');
    assert.ok(parsePrometheus((await apiA.get('/metrics')).text).get('stompd_relay_messages_total{direction="published"}')! >= 1);
    assert.deepEqual((await apiA.get('/readyz')).body, { status: 'ready' });

    await redis.kill();
    try {
      for (const api of [apiA, apiB]) {
        const down = await eventually(
          () => api.get<Readiness>('/readyz'),
          (r) => r.status === 503,
          5000,
          'readyz 503',
        );
        assert.equal(down.body.status, 'not-ready');
        assert.match(down.body.reason ?? '', /Redis/);
        assert.equal((await api.get('/healthz')).status, 200, 'alive all the same');
        assert.equal(parsePrometheus((await api.get('/metrics')).text).get('stompd_redis_degraded'), 1);
        const unavailable = await api.get<ApiError>('/api/session/stats');
        assert.equal(unavailable.status, 503, unavailable.text);
        assert.match(unavailable.body.message, /unreachable/);
      }
    } finally {
      await redis.restart(); // the brokers' clients would otherwise retry forever after the test
    }
    for (const api of [apiA, apiB])
      await eventually(
        () => api.get('/readyz'),
        (r) => r.status === 200,
        10000,
        'ready again',
      );
    assert.ok(parsePrometheus((await apiA.get('/metrics')).text).get('stompd_redis_reconnects_total')! >= 1);
  });
});
