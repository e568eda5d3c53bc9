// The routes the dashboard reads, as an API client sees them: /api/instances (running totals
// that move with traffic and refusals), /api/sessions (details and subscriptions, by user),
// /api/rooms, the /api/feed event stream, all behind the admin credential; the pages need
// none and the demo exists only with DEMO=1. Then the same over two instances on a real Redis:
// both list both, with the other's totals, and a session's subscriptions on the other; while
// Redis is away the feed still says the answering instance is degraded.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { Instances, OpenApiDocument, Overview, Rooms, SessionDetails, SessionsPage } from '../helpers/api-shapes';
import { ApiClient, eventually } from '../helpers/http';
import { clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const TOKEN = 'overview-admin-token-0123456789';
const clients = clientsOfThisFile();

/** Reads the feed until `count` events arrived (or the time is up). */
async function feedEvents(port: number, token: string | undefined, count: number): Promise<{ status: number; events: { type: string; data: Overview }[] }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15_000);
  try {
    const response = await fetch(`http://127.0.0.1:${port}/api/feed`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: abort.signal });
    if (response.status !== 200) return { status: response.status, events: [] };
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events: { type: string; data: Overview }[] = [];
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        events.push({ type, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Overview });
      }
      if (events.length >= count) break;
    }
    return { status: 200, events };
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

describe('dashboard API, embedded', { timeout: 60_000 }, () => {
  let broker: RunningServer;
  let api: ApiClient;

  before(async () => {
    broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*', INSTANCE_ID: 'solo' });
    api = new ApiClient(broker.httpPort!, TOKEN);
  });
  after(() => broker.stop());

  it('every new /api route needs the admin credential', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    for (const path of ['/api/instances', '/api/rooms', '/api/sessions']) assert.equal((await anonymous.get(path)).status, 401, path);
    assert.equal((await feedEvents(broker.httpPort!, undefined, 1)).status, 401);
  });

  it('/api/instances: the one instance, with totals that move with messages and ERRORs', async () => {
    const [before, ...others] = (await api.ok<Instances>('/api/instances')).instances;
    assert.ok(before !== undefined && others.length === 0);
    assert.equal(before.instanceId, 'solo');
    assert.equal(before.isSelf, true);
    assert.equal(before.isAlive, true);
    assert.equal(before.isDegraded, false);

    const reader = await connectedAs(clients, broker.tcpPort!, 'reader');
    reader.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/t', receipt: 'r' });
    await reader.expect('RECEIPT');
    const writer = await connectedAs(clients, broker.tcpPort!, 'writer');
    for (let i = 0; i < 3; i++) writer.sendFrame('SEND', { destination: '/topic/t' }, 'x');
    for (let i = 0; i < 3; i++) await reader.expect('MESSAGE');
    writer.sendFrame('SEND', { destination: '/nowhere' }, 'x');
    assert.match(header(await writer.expect('ERROR'), 'message')!, /^UNKNOWN_DESTINATION/);

    const [now] = (await api.ok<Instances>('/api/instances')).instances;
    assert.ok(now !== undefined);
    assert.equal(now.counters.published.topic! - before.counters.published.topic!, 3);
    assert.equal(now.counters.delivered.topic! - before.counters.delivered.topic!, 3);
    assert.equal(now.counters.errors.UNKNOWN_DESTINATION, 1);
    assert.equal(now.counters.sessions, 1); // the writer was closed
  });

  it('/api/sessions: details with subscriptions, a page at a time or by user; /api/session/:id has them too', async () => {
    const ann = await connectedAs(clients, broker.tcpPort!, 'ann');
    ann.sendFrame('SUBSCRIBE', { id: 'a1', destination: '/topic/room.1', receipt: 'r1' });
    ann.sendFrame('SUBSCRIBE', { id: 'a2', destination: '/queue/work', ack: 'client', receipt: 'r2' });
    // Two RECEIPTs and her own JOIN in the room, in whichever order.
    const frames = [await ann.next(), await ann.next(), await ann.next()].map((f) => f.command).sort();
    assert.deepEqual(frames, ['MESSAGE', 'RECEIPT', 'RECEIPT']);
    const annId = [...broker.sessions()].find((s) => s.userId === 'ann')!.id;
    const page = await eventually(
      () => api.ok<SessionsPage>('/api/sessions?userId=ann'),
      (p) => p.sessions[0]?.subscriptions.length === 2,
      5000,
      "ann's subscriptions noted",
    );
    assert.equal(page.totalCount, 1);
    assert.deepEqual(page.sessions[0]!.subscriptions, [
      { id: 'a1', destination: '/topic/room.1', ack: 'auto' },
      { id: 'a2', destination: '/queue/work', ack: 'client' },
    ]);
    assert.equal(page.sessions[0]!.sessionId, annId);
    assert.equal(page.sessions[0]!.transport, 'tcp');

    ann.sendFrame('UNSUBSCRIBE', { id: 'a2', receipt: 'r3' });
    await ann.expect('RECEIPT');
    await eventually(
      () => api.ok<SessionDetails>(`/api/session/${annId}`),
      (s) => s.subscriptions.length === 1,
      5000,
      'the unsubscription noted',
    );

    const all = await api.ok<SessionsPage>('/api/sessions?limit=1');
    assert.equal(all.sessions.length, 1);
    assert.ok(all.totalCount >= 2);
    assert.equal(typeof all.nextCursor, 'string');
    const next = await api.ok<SessionsPage>(`/api/sessions?limit=1&cursor=${all.nextCursor}`);
    assert.notEqual(next.sessions[0]!.sessionId, all.sessions[0]!.sessionId);
    assert.equal((await api.get('/api/sessions?limit=500')).status, 400);
  });

  it('/api/rooms: rooms with members, none when empty', async () => {
    const rooms = await eventually(
      () => api.ok<Rooms>('/api/rooms'),
      (r) => r.rooms.length === 1,
      5000,
      'the room listed',
    );
    assert.equal(rooms.rooms[0]!.destination, '/topic/room.1');
    assert.deepEqual(
      rooms.rooms[0]!.members.map((m) => m.userId),
      ['ann'],
    );
  });

  it('/api/feed: an overview every second, as the routes give it', async () => {
    const sender = await connectedAs(clients, broker.tcpPort!, 'sender');
    sender.sendFrame('SEND', { destination: '/queue/held', receipt: 'q' }, 'waits for a consumer');
    await sender.expect('RECEIPT');
    const { events } = await feedEvents(broker.httpPort!, TOKEN, 2);
    assert.equal(events.length, 2);
    for (const { type, data } of events) {
      assert.equal(type, 'overview');
      assert.deepEqual(Object.keys(data).sort(), ['instances', 'queues', 'rooms', 'stats', 'timestamp']);
      assert.equal(data.instances[0]!.instanceId, 'solo');
      assert.equal(data.rooms[0]!.destination, '/topic/room.1');
      assert.deepEqual(data.queues.find((q) => q.name === '/queue/held')?.depth, 1);
    }
    assert.ok(events[1]!.data.timestamp > events[0]!.data.timestamp);
    // The dashboard is live: a reading at least every 2 s.
    assert.ok(events[1]!.data.timestamp - events[0]!.data.timestamp <= 2000, `${events[1]!.data.timestamp - events[0]!.data.timestamp} ms between readings`);
  });

  it('the pages need no credential; the demo is off without DEMO=1; OpenAPI lists the new routes', async () => {
    const anonymous = new ApiClient(broker.httpPort!);
    const page = await anonymous.get('/dashboard');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);
    assert.equal((await anonymous.get('/dashboard/dashboard.js')).status, 200);
    assert.equal((await api.get('/dashboard/nope.js')).status, 404, 'only the listed files are served');
    assert.equal((await api.get('/demo')).status, 404);
    const root = await fetch(`http://127.0.0.1:${broker.httpPort}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/dashboard');
    const paths = Object.keys((await api.ok<OpenApiDocument>('/api/openapi.json')).paths);
    for (const path of ['/api/instances', '/api/rooms', '/api/sessions', '/api/feed']) assert.ok(paths.includes(path), path);
  });
});

describe('demo pages (DEMO=1)', { timeout: 30_000 }, () => {
  it('serves the demo, its config and the stompjs bundle; / leads to it', async () => {
    const broker = await startBroker({ HTTP_PORT: '0', DEMO: '1' });
    try {
      const api = new ApiClient(broker.httpPort!);
      assert.equal((await api.get('/demo')).status, 200);
      const bundle = await api.get('/demo/stomp.umd.min.js');
      assert.equal(bundle.status, 200);
      assert.match(bundle.text, /StompJs/);
      assert.deepEqual(await api.ok('/demo/config.json'), { wsPort: broker.wsPort, wsPath: '/ws', isOpenLogin: true });
      const root = await fetch(`http://127.0.0.1:${broker.httpPort}/`, { redirect: 'manual' });
      assert.equal(root.headers.get('location'), '/demo');
      // Its rooms are presence rooms.
      assert.equal(broker.presence.isRoom('/topic/demo.support'), true);
    } finally {
      await broker.stop();
    }
  });
});

describe('dashboard API, two instances on one Redis', { timeout: 60_000 }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '1000', PRESENCE_DESTINATIONS: '/topic/room.*' }; // a TTL of 3 s: a loaded test run must not get one taken for dead
    a = await startBroker({ ...env, INSTANCE_ID: 'ov-a' });
    b = await startBroker({ ...env, INSTANCE_ID: 'ov-b' });
  });
  after(async () => {
    await Promise.all([a.stop(), b.stop()]);
    await redis.stop();
  });

  it("each lists both instances, with the other's totals from its liveness refresh", async () => {
    const onB = await connectedAs(clients, b.tcpPort!, 'bo');
    for (let i = 0; i < 4; i++) onB.sendFrame('SEND', { destination: '/topic/none' }, 'x');
    onB.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/room.9', receipt: 'r' });
    await onB.expect('RECEIPT');
    const apiA = new ApiClient(a.httpPort!, TOKEN);
    const listed = await eventually(
      () => apiA.ok<Instances>('/api/instances'),
      (r) => r.instances.find((i) => i.instanceId === 'ov-b')?.counters.published.topic === 4,
      5000,
      "B's totals seen from A",
    );
    assert.deepEqual(
      listed.instances.map((i) => [i.instanceId, i.isSelf, i.isAlive]),
      [
        ['ov-a', true, true],
        ['ov-b', false, true],
      ],
    );
    const fromB = await new ApiClient(b.httpPort!, TOKEN).ok<Instances>('/api/instances');
    assert.deepEqual(
      fromB.instances.map((i) => i.instanceId),
      ['ov-b', 'ov-a'],
    );

    // B's session's subscriptions, read on A; its room too.
    const sessions = await eventually(
      () => apiA.ok<SessionsPage>('/api/sessions?userId=bo'),
      (p) => p.sessions[0]?.subscriptions.length === 1,
      5000,
      "bo's subscription noted in Redis",
    );
    assert.equal(sessions.sessions[0]!.instanceId, 'ov-b');
    assert.equal(sessions.sessions[0]!.subscriptions[0]!.destination, '/topic/room.9');
    const rooms = await eventually(
      () => apiA.ok<Rooms>('/api/rooms'),
      (r) => r.rooms.length === 1,
      5000,
      'the room listed on A',
    );
    assert.deepEqual(
      rooms.rooms[0]!.members.map((m) => m.userId),
      ['bo'],
    );
  });

  it('/api/feed while Redis is away: "unavailable" events that carry the answering instance, degraded, with its reason', async () => {
    await redis.kill();
    try {
      let self: Instances['instances'][number] | undefined;
      await until(
        async () => {
          const { events } = await feedEvents(a.httpPort!, TOKEN, 1);
          const data = events[0]?.type === 'unavailable' ? (events[0].data as unknown as { message: string; self: typeof self; timestamp: number }) : undefined;
          self = data?.self;
          return self?.isDegraded === true;
        },
        "A's feed saying it is degraded",
        10_000,
        100,
      );
      assert.equal(self!.instanceId, 'ov-a');
      assert.equal(self!.isSelf, true);
      assert.equal(self!.degradedReason, 'Redis connection lost');
    } finally {
      await redis.restart();
    }
    const { events } = await eventuallyOverview(a.httpPort!);
    assert.equal(events[0]!.data.instances[0]!.isDegraded, false);
  });
});

/** The feed, read again until its first event is an overview of a healthy instance (Redis back). */
async function eventuallyOverview(port: number): Promise<{ events: { type: string; data: Overview }[] }> {
  let last: { events: { type: string; data: Overview }[] } = { events: [] };
  await until(
    async () => {
      last = await feedEvents(port, TOKEN, 1);
      return last.events[0]?.type === 'overview' && last.events[0].data.instances[0]?.isDegraded === false;
    },
    'an overview again once Redis is back',
    15_000,
    200,
  );
  return last;
}
