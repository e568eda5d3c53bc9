// The HTTP API of one broker in embedded mode, driven with real HTTP requests while real
// STOMP clients connect, subscribe, send and vanish: what the sessions endpoints show, what
// kick / logout / publish do to the clients, 400s naming the field, the OpenAPI document,
// health, and /metrics as Prometheus text whose counters move.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { ApiError, OnlineUsers, OpenApiDocument, Published, SessionDetails, SessionIdsPage, SessionStats, UserOnline, UserSessions } from '../helpers/api-shapes';
import { ApiClient, eventually, parsePrometheus } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';

const TOKEN = 'test-admin-token-0123456789';

describe('HTTP API, embedded mode', { timeout: 60000 }, () => {
  let broker: RunningServer;
  let api: ApiClient;
  const clients: RawClient[] = [];

  async function connect(login: string, transport: 'tcp' | 'ws' = 'tcp', heartbeat = '0,0'): Promise<{ client: RawClient; sessionId: string }> {
    const client = transport === 'tcp' ? await RawClient.tcp(broker.tcpPort!) : await RawClient.ws(broker.wsPort!);
    clients.push(client);
    const connected = await client.connect({ login, 'heart-beat': heartbeat });
    return { client, sessionId: header(connected, 'session')! };
  }

  const sessionIds = async (): Promise<string[]> => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { sessions: string[]; nextCursor: string | null } = await api.ok(`/api/session/all?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      ids.push(...page.sessions);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return ids.sort();
  };

  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '100,100' });
    api = new ApiClient(broker.httpPort!, TOKEN);
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await broker.stop();
  });

  it('a session appears on CONNECT with its details and disappears on DISCONNECT', async () => {
    const { client, sessionId } = await connect('alice', 'ws');
    const details = await api.ok<SessionDetails>(`/api/session/${sessionId}`);
    assert.equal(details.sessionId, sessionId);
    assert.equal(details.userId, 'alice');
    assert.equal(details.transport, 'ws');
    assert.equal(details.instanceId, broker.config.instanceId);
    assert.deepEqual(details.roles, []);
    assert.equal(details.userRole, null);
    assert.match(details.remoteAddress, /^127\.0\.0\.1:\d+$/);
    assert.ok(Math.abs(details.connectedAt - Date.now()) < 10_000);
    assert.ok((await sessionIds()).includes(sessionId));
    const user = await api.ok<UserSessions>('/api/session/user/alice');
    assert.equal(user.isOnline, true);
    assert.equal(user.sessionCount, 1);
    assert.deepEqual(user.sessions, [details]);
    assert.deepEqual(await api.ok<UserOnline>('/api/session/user/alice/online'), { userId: 'alice', isOnline: true, sessionCount: 1 });

    client.sendFrame('DISCONNECT', { receipt: 'bye' });
    await client.expect('RECEIPT');
    await eventually(
      () => api.get(`/api/session/${sessionId}`),
      (r) => r.status === 404,
      5000,
      'the session to go',
    );
    const gone = await api.get<ApiError>(`/api/session/${sessionId}`);
    assert.equal(gone.body.message, `no session ${sessionId}`);
    assert.deepEqual(await api.ok<UserOnline>('/api/session/user/alice/online'), { userId: 'alice', isOnline: false, sessionCount: 0 });
    assert.ok(!(await sessionIds()).includes(sessionId));
  });

  it('a socket destroyed without DISCONNECT, and a peer gone silent, leave within the heart-beat bound', async () => {
    const destroyed = await connect('dropper');
    const silent = await connect('sleeper', 'tcp', '100,0'); // promises a beat every 100 ms, then never sends one
    destroyed.client.destroy();
    await eventually(
      () => api.get(`/api/session/${destroyed.sessionId}`),
      (r) => r.status === 404,
      3000,
      'the destroyed socket to leave',
    );
    const startedAt = Date.now();
    await eventually(
      () => api.get(`/api/session/${silent.sessionId}`),
      (r) => r.status === 404,
      3000,
      'the silent peer to leave',
    );
    assert.ok(Date.now() - startedAt < 3000);
    await silent.client.waitClosed();
    const metrics = parsePrometheus((await api.get('/metrics')).text);
    assert.ok(metrics.get('stompd_heartbeat_timeouts_total')! >= 1, 'heart-beat timeout counted');
  });

  it('pages the session list with an opaque cursor; a bad cursor or limit is a 400 naming the field', async () => {
    const made = await Promise.all([connect('p1'), connect('p2'), connect('p3', 'ws')]);
    const first = await api.ok<SessionIdsPage>('/api/session/all?limit=2');
    assert.equal(first.sessions.length, 2);
    assert.equal(typeof first.nextCursor, 'string');
    assert.ok(first.totalCount >= 3);
    const all = await sessionIds();
    for (const m of made) assert.ok(all.includes(m.sessionId));
    assert.equal(new Set(all).size, all.length, 'no id twice');
    const badCursor = await api.get<ApiError>('/api/session/all?cursor=zzzz');
    assert.equal(badCursor.status, 400);
    assert.match(badCursor.body.message, /cursor/);
    for (const limit of ['0', '5000', 'many']) {
      const bad = await api.get<ApiError>(`/api/session/all?limit=${limit}`);
      assert.equal(bad.status, 400, limit);
      assert.match(bad.body.message, /querystring\/limit/);
    }
    const stats = await api.ok<SessionStats>('/api/session/stats');
    assert.equal(stats.totalActiveSessions, first.totalCount);
    assert.ok(stats.byTransport.tcp! >= 2 && stats.byTransport.ws! >= 1);
    assert.deepEqual(Object.keys(stats.perInstance), [broker.config.instanceId]);
    assert.equal(stats.perInstance[broker.config.instanceId]?.sessions, stats.totalActiveSessions);
    assert.ok(stats.onlineUsers >= 3);
    assert.ok(Math.abs(stats.timestamp - Date.now()) < 10_000);
    const users = await api.ok<OnlineUsers>('/api/users/online?limit=1000');
    for (const login of ['p1', 'p2', 'p3'])
      assert.ok(
        users.users.some((u) => u.userId === login),
        login,
      );
  });

  it('refresh answers with the session and ttlSeconds null (sessions in memory do not expire); 404 when unknown', async () => {
    const { sessionId } = await connect('refresher');
    const before = (await api.ok<SessionDetails>(`/api/session/${sessionId}`)).lastSeenAt;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const refreshed = await api.post(`/api/session/${sessionId}/refresh`);
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.deepEqual(refreshed.body, { sessionId, userId: 'refresher', refreshed: true, ttlSeconds: null });
    assert.ok((await api.ok<SessionDetails>(`/api/session/${sessionId}`)).lastSeenAt > before);
    assert.equal((await api.post('/api/session/unknown-id/refresh')).status, 404);
  });

  it('DELETE a session closes that socket with ERROR KICKED, and only it', async () => {
    const victim = await connect('victim');
    const bystander = await connect('victim');
    const response = await api.delete(`/api/session/${victim.sessionId}`);
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.body, { sessionId: victim.sessionId, sessionsClosed: 1, instancesReached: 1 });
    const error = await victim.client.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^KICKED:/);
    await victim.client.waitClosed();
    bystander.client.sendFrame('SEND', { destination: '/topic/still', receipt: 'r' }, 'x');
    await bystander.client.expect('RECEIPT');
    assert.equal((await api.delete('/api/session/no-such-session')).status, 404);
  });

  it('DELETE a user closes every session of that user with ERROR LOGGED_OUT', async () => {
    const one = await connect('leaver');
    const two = await connect('leaver', 'ws');
    const other = await connect('stayer');
    const response = await api.delete('/api/session/user/leaver');
    assert.equal(response.status, 200, response.text);
    assert.deepEqual(response.body, { userId: 'leaver', sessionsClosed: 2, instancesReached: 1 });
    for (const c of [one, two]) {
      assert.match(header(await c.client.expect('ERROR'), 'message') ?? '', /^LOGGED_OUT:/);
      await c.client.waitClosed();
    }
    await other.client.expectSilence(100);
    assert.equal(other.client.isClosed, false);
    await eventually(
      () => api.ok<UserOnline>('/api/session/user/leaver/online'),
      (b) => b.isOnline === false,
      3000,
      'leaver offline',
    );
  });

  it('publish reaches topic, queue and /user/<id>/… subscribers, with base64 bodies; the answer names the message', async () => {
    const listener = await connect('listener');
    listener.client.sendFrame('SUBSCRIBE', { id: 't', destination: '/topic/news', receipt: 's1' });
    listener.client.sendFrame('SUBSCRIBE', { id: 'q', destination: '/queue/jobs', receipt: 's2' });
    listener.client.sendFrame('SUBSCRIBE', { id: 'u', destination: '/user/queue/inbox', receipt: 's3' });
    for (let i = 0; i < 3; i++) await listener.client.expect('RECEIPT');
    const stranger = await connect('stranger');
    stranger.client.sendFrame('SUBSCRIBE', { id: 'u', destination: '/user/queue/inbox', receipt: 's' });
    await stranger.client.expect('RECEIPT');

    const topic = await api.post<Published>('/api/publish', { destination: '/topic/news', body: 'hello', contentType: 'text/plain', headers: { priority: '5' } });
    assert.equal(topic.status, 200, topic.text);
    assert.equal(topic.body.kind, 'topic');
    const news = await listener.client.expect('MESSAGE');
    assert.equal(news.body.toString(), 'hello');
    assert.equal(header(news, 'message-id'), topic.body.messageId);
    assert.equal(header(news, 'content-type'), 'text/plain');
    assert.equal(header(news, 'priority'), '5');
    assert.equal(header(news, 'destination'), '/topic/news');

    const binary = Buffer.from([0, 1, 2, 255, 10, 0]);
    const queue = await api.post<Published>('/api/publish', { destination: '/queue/jobs', body: binary.toString('base64'), bodyEncoding: 'base64' });
    assert.equal(queue.status, 200, queue.text);
    assert.equal(queue.body.bodyBytes, 6);
    const job = await listener.client.expect('MESSAGE');
    assert.deepEqual(job.body, binary);

    const user = await api.post<Published>('/api/publish', { destination: '/user/listener/queue/inbox', body: 'for you' });
    assert.equal(user.status, 200, user.text);
    assert.equal(user.body.kind, 'user');
    const inbox = await listener.client.expect('MESSAGE');
    assert.equal(inbox.body.toString(), 'for you');
    assert.equal(header(inbox, 'destination'), '/user/queue/inbox');
    assert.equal(header(inbox, 'user-id'), 'api/admin-token');
    await stranger.client.expectSilence(200);
  });

  it('refuses bad publishes with a 400 naming the field, and nothing is delivered', async () => {
    const cases: [unknown, RegExp][] = [
      [{}, /destination/],
      [{ destination: 'nowhere' }, /body\/destination/],
      [{ destination: '/topic/a\u0007b' }, /body\/destination.*control/],
      [{ destination: '/user/queue/inbox' }, /body\/destination must name the user/],
      [{ destination: '/topic/x', body: 'not base64!', bodyEncoding: 'base64' }, /body\/body/],
      [{ destination: '/topic/x', bodyEncoding: 'hex' }, /bodyEncoding/],
      [{ destination: '/topic/x', headers: { 'bad name': 'v' } }, /body\/headers/],
      [{ destination: '/topic/x', headers: { ok: 'line\nbreak' } }, /body\/headers\/ok/],
      [{ destination: '/topic/x', headers: { n: { nested: true } } }, /body\/headers\/n/],
      [{ destination: 42 }, /destination/],
    ];
    for (const [body, message] of cases) {
      const response = await api.post<ApiError>('/api/publish', body);
      assert.equal(response.status, 400, `${JSON.stringify(body)}: ${response.text}`);
      assert.match(response.body.message, message, JSON.stringify(body));
    }
    const notJson = await api.request('POST', '/api/publish', undefined, { 'content-type': 'application/json' });
    assert.equal(notJson.status, 400);
    assert.equal((await api.get('/api/session/' + 'x'.repeat(300))).status, 400, 'a session id over 200 characters');
  });

  it('serves an OpenAPI 3 document of every route, with the schemas', async () => {
    const doc = await api.ok<OpenApiDocument>('/api/openapi.json');
    assert.match(doc.openapi, /^3\./);
    const expected: [string, string][] = [
      ['get', '/api/session/all'],
      ['get', '/api/session/stats'],
      ['get', '/api/session/{sessionId}'],
      ['delete', '/api/session/{sessionId}'],
      ['post', '/api/session/{sessionId}/refresh'],
      ['get', '/api/session/user/{userId}'],
      ['delete', '/api/session/user/{userId}'],
      ['get', '/api/session/user/{userId}/online'],
      ['get', '/api/users/online'],
      ['post', '/api/publish'],
      ['get', '/healthz'],
      ['get', '/readyz'],
      ['get', '/metrics'],
    ];
    for (const [method, path] of expected) {
      const operation = doc.paths[path]?.[method];
      assert.ok(operation, `${method} ${path}`);
      assert.ok(operation.responses['200'], `${method} ${path} declares its 200 response`);
      if (path.startsWith('/api/')) {
        assert.ok(operation.responses['401'], `${method} ${path} declares 401`);
        assert.deepEqual(operation.security, [{ bearerAuth: [] }]);
      }
    }
    assert.ok(doc.paths['/api/publish']?.post?.requestBody?.content['application/json']?.schema.properties.destination);
    assert.ok(doc.paths['/api/users/online']?.get?.parameters?.some((p) => p.name === 'role'));
    assert.equal(doc.components.securitySchemes.bearerAuth?.scheme, 'bearer');
    assert.equal((await new ApiClient(broker.httpPort!).get('/api/openapi.json')).status, 401, 'the document needs a credential too');
  });

  it("README's HTTP API section names every route of the OpenAPI document and every stompd metric", async () => {
    const readme = fs.readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## HTTP API'), readme.indexOf('## Development'));
    const doc = await api.ok<OpenApiDocument>('/api/openapi.json');
    for (const [route, operations] of Object.entries(doc.paths)) {
      for (const method of Object.keys(operations)) {
        const shown = `${method.toUpperCase()} ${route.replace(/\{(\w+)\}/g, ':$1')}`;
        assert.ok(section.includes(shown), `README shows ${shown}`);
      }
    }
    const names = new Set([...(await api.get('/metrics')).text.matchAll(/^# TYPE (stompd_\w+)/gm)].map((m) => m[1]!));
    assert.ok(names.size >= 10);
    for (const name of names) assert.ok(section.includes(name), `README lists ${name}`);
  });

  it('healthz and readyz answer without a credential; readyz turns 503 once stopping', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    assert.deepEqual((await anonymous.get('/healthz')).body, { status: 'ok' });
    assert.deepEqual((await anonymous.get('/readyz')).body, { status: 'ready' });
    const other = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, SHUTDOWN_TIMEOUT_MS: '2000' });
    const lingering = await RawClient.tcp(other.tcpPort!); // keeps stop() busy until the timeout
    const otherApi = new ApiClient(other.httpPort!);
    const stopping = other.stop();
    const during = await otherApi.get('/readyz');
    assert.equal(during.status, 503);
    assert.deepEqual(during.body, { status: 'not-ready', reason: 'shutting down' });
    lingering.destroy();
    await stopping;
    await assert.rejects(otherApi.get('/healthz'), 'the HTTP port is closed after stop');
  });

  it('/metrics is Prometheus text and its counters move with traffic', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    const read = async () => {
      const response = await anonymous.get('/metrics');
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      return parsePrometheus(response.text);
    };
    const beforeTraffic = await read();
    for (const name of [
      'stompd_connections{transport="tcp"}',
      'stompd_sessions',
      'stompd_online_users',
      'stompd_frames_in_total{command="SEND"}',
      'stompd_frames_out_total{command="MESSAGE"}',
      'stompd_messages_published_total{kind="topic"}',
      'stompd_messages_delivered_total{kind="queue"}',
      'stompd_messages_dropped_total{kind="topic"}',
      'stompd_bytes_in_total',
      'stompd_bytes_out_total',
      'stompd_heartbeat_timeouts_total',
      'stompd_slow_consumer_events_total',
      'nodejs_eventloop_lag_seconds',
      'process_cpu_user_seconds_total',
    ]) {
      assert.ok(beforeTraffic.has(name), `${name} exposed`);
    }
    assert.ok(![...beforeTraffic.keys()].some((k) => k.startsWith('stompd_redis_')), 'no Redis metrics in embedded mode');

    const sender = await connect('metrics-sender');
    sender.client.sendFrame('SUBSCRIBE', { id: '1', destination: '/topic/metered', receipt: 'r1' });
    await sender.client.expect('RECEIPT');
    sender.client.sendFrame('SEND', { destination: '/topic/metered' }, 'hello metrics');
    await sender.client.expect('MESSAGE');
    const refused = await RawClient.tcp(broker.tcpPort!);
    clients.push(refused);
    refused.sendFrame('SEND', { destination: '/topic/x' }, 'before connect');
    await refused.expect('ERROR');
    const afterTraffic = await read();
    const delta = (name: string) => (afterTraffic.get(name) ?? 0) - (beforeTraffic.get(name) ?? 0);
    assert.ok(delta('stompd_frames_in_total{command="SEND"}') >= 2);
    assert.ok(delta('stompd_frames_in_total{command="CONNECT"}') >= 1);
    assert.ok(delta('stompd_messages_published_total{kind="topic"}') >= 1);
    assert.ok(delta('stompd_messages_delivered_total{kind="topic"}') >= 1);
    assert.ok(delta('stompd_frames_out_total{command="MESSAGE"}') >= 1);
    assert.ok(delta('stompd_frames_out_total{command="RECEIPT"}') >= 1);
    assert.ok(delta('stompd_errors_sent_total{code="NOT_CONNECTED"}') >= 1);
    assert.ok(delta('stompd_bytes_in_total') > 'hello metrics'.length);
    assert.ok(delta('stompd_bytes_out_total') > 'hello metrics'.length);
    assert.ok(afterTraffic.get('stompd_sessions')! >= 1);
  });
});
