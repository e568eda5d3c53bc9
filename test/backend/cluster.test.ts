// The hooks across instances on a real redis-server: a backend's publish and toUser reach
// subscribers on every instance and reply reaches the sender; session events live in Redis,
// so after a kill -9 the survivor delivers what the dead instance had not, then one
// instance-lost DISCONNECT per session, in order, once.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { BrokerProcess } from '../helpers/broker-process';
import { startBroker } from '../helpers/broker';
import { RawClient, clientsOfThisFile, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { startTestBackend } from '../helpers/backend';
import type { TestBackend } from '../helpers/backend';
import { until } from '../helpers/until';

const clients = clientsOfThisFile();

async function client(port: number, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  await c.connect({ login });
  return c;
}

async function subscribe(c: RawClient, destination: string, id = 'sub'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `sub-${id}` });
  await c.expect('RECEIPT');
}

interface Event {
  id: string;
  type: string;
  sessionId: string;
  userId: string;
  attributes: Record<string, unknown>;
  destination?: string;
  reason?: string;
  instanceId: string;
}

describe('backend hooks across instances', { timeout: 120_000 }, () => {
  let redis: RedisServer;
  let app: TestBackend;
  let a: RunningServer;
  let b: RunningServer;

  before(async () => {
    redis = await startRedis();
    app = await startTestBackend();
    const env = { REDIS_URL: redis.url, BACKEND_URL: app.url, BACKEND_HOOKS: 'send,events', HEARTBEAT: '0,0', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' };
    [a, b] = await Promise.all([startBroker(env), startBroker(env)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await app?.close();
    await redis?.stop();
  });

  it('publish and toUser reach subscribers on the other instance; reply reaches the sender', async () => {
    app.on('send', { publish: [{ destination: '/topic/news', body: 'to all' }], toUser: [{ userId: 'bob', destination: '/queue/notify', body: 'to bob' }], reply: [{ destination: '/queue/reply', body: 'to you' }] });
    const reader = await client(b.tcpPort!, 'carol');
    await subscribe(reader, '/topic/news');
    const bob = await client(b.tcpPort!, 'bob');
    await subscribe(bob, '/user/queue/notify');
    const alice = await client(a.tcpPort!, 'alice');
    await subscribe(alice, '/user/queue/reply');
    await until(() => redis.cli('pubsub', 'numsub', 'ws:dest:/topic/news').includes('\n1'), 'b to listen on /topic/news');
    alice.sendFrame('SEND', { destination: '/app/broadcast', receipt: 'r' }, 'x');
    assert.equal((await alice.expect('MESSAGE')).body.toString(), 'to you');
    await alice.expect('RECEIPT');
    assert.equal((await reader.expect('MESSAGE')).body.toString(), 'to all');
    const notify = await bob.expect('MESSAGE');
    assert.equal(notify.body.toString(), 'to bob');
    assert.equal(header(notify, 'destination'), '/user/queue/notify');
  });

  it('session events go through Redis, in order per session', async () => {
    const accepted: Event[] = [];
    app.on('events', (body: { events: Event[] }) => {
      accepted.push(...body.events);
      return {};
    });
    const dave = await client(a.tcpPort!, 'dave');
    await subscribe(dave, '/topic/room.9');
    dave.sendFrame('DISCONNECT', { receipt: 'bye' });
    await dave.expect('RECEIPT');
    await until(() => accepted.some((e) => e.userId === 'dave' && e.type === 'DISCONNECT'), "dave's disconnect", 10000);
    assert.deepEqual(
      accepted.filter((e) => e.userId === 'dave').map((e) => e.type),
      ['CONNECT', 'SUBSCRIBE', 'DISCONNECT'],
    );
    // The backend took them before it answered; the entries leave the stream once its answer is in.
    await until(() => redis.cli('xlen', `ws:backend:{${a.config.instanceId}}:events`).trim() === '0', 'delivered entries leave the stream');
  });
});

describe('session events left by a graceful stop', { timeout: 120_000 }, () => {
  it('another instance takes over the stream of one that stopped before delivering, and delivers it in order', async () => {
    const redis = await startRedis();
    const app = await startTestBackend();
    let isDown = true;
    const accepted: Event[] = [];
    app.on('events', (body: { events: Event[] }, reply: { code(n: number): { send(t: string): unknown } }) => {
      if (isDown) return reply.code(503).send('down');
      accepted.push(...body.events);
      return {};
    });
    const env = { REDIS_URL: redis.url, BACKEND_URL: app.url, BACKEND_HOOKS: 'events', HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '300', SHUTDOWN_TIMEOUT_MS: '500', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' };
    const leaving = await startBroker(env);
    const staying = await startBroker(env);
    try {
      const ivy = await client(leaving.tcpPort!, 'ivy');
      await subscribe(ivy, '/topic/room.x');
      await leaving.stop();
      const stream = `ws:backend:{${leaving.config.instanceId}}:events`;
      assert.equal(redis.cli('xlen', stream).trim(), '3', 'CONNECT, SUBSCRIBE and DISCONNECT kept in Redis');
      isDown = false;
      await until(() => accepted.some((e) => e.userId === 'ivy' && e.type === 'DISCONNECT'), "ivy's events, from the other instance", 30_000);
      assert.deepEqual(
        accepted.filter((e) => e.userId === 'ivy').map((e) => [e.type, e.reason]),
        [
          ['CONNECT', undefined],
          ['SUBSCRIBE', undefined],
          ['DISCONNECT', 'instance-lost'],
        ],
      );
      await until(() => redis.cli('exists', stream).trim() === '0', 'the stream to go', 5000);
    } finally {
      await staying.stop();
      await app.close();
      await redis.stop();
    }
  });
});

describe('session events while Redis is away', { timeout: 120_000 }, () => {
  it('are kept by the instance and delivered, in order, once Redis is back', async () => {
    const redis = await startRedis({ appendonly: true });
    const app = await startTestBackend();
    const accepted: Event[] = [];
    app.on('events', (body: { events: Event[] }) => {
      accepted.push(...body.events);
      return {};
    });
    const b = await startBroker({ REDIS_URL: redis.url, BACKEND_URL: app.url, BACKEND_HOOKS: 'events', HEARTBEAT: '0,0', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
    try {
      await redis.stop();
      await until(() => b.clusterHealth()?.isDegraded === true, 'the broker to see Redis gone');
      const jo = await client(b.tcpPort!, 'jo');
      for (let i = 0; i < 5; i++) await subscribe(jo, `/topic/t.${i}`, String(i));
      jo.sendFrame('DISCONNECT', { receipt: 'bye' });
      await jo.expect('RECEIPT');
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(accepted.filter((e) => e.userId === 'jo').length, 0, 'nothing delivered while Redis is away');
      await redis.restart();
      await until(() => accepted.some((e) => e.userId === 'jo' && e.type === 'DISCONNECT'), "jo's events after Redis came back", 20_000);
      assert.deepEqual(
        accepted.filter((e) => e.userId === 'jo').map((e) => [e.type, e.destination]),
        [['CONNECT', undefined], ...[0, 1, 2, 3, 4].map((i) => ['SUBSCRIBE', `/topic/t.${i}`]), ['DISCONNECT', undefined]],
      );
    } finally {
      await b.stop();
      await app.close();
      await redis.stop();
    }
  });
});

describe('session events after kill -9', { timeout: 120_000 }, () => {
  it("a survivor delivers the dead instance's undelivered events, then instance-lost once per session, in order", async () => {
    const redis = await startRedis();
    const app = await startTestBackend();
    let isDown = true;
    const accepted: Event[] = [];
    app.on('events', (body: { events: Event[] }, reply: { code(n: number): { send(t: string): unknown } }) => {
      if (isDown) return reply.code(503).send('down');
      accepted.push(...body.events);
      return {};
    });
    app.on('connect', (body: Record<string, unknown>) => ({ userId: String((body.connectHeaders as Record<string, string>).login), attributes: { room: 'r1' } }));
    const env = { REDIS_URL: redis.url, BACKEND_URL: app.url, BACKEND_HOOKS: 'connect,events', HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '300' };
    const [doomed, survivor1, survivor2] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env), BrokerProcess.start(env)]);
    try {
      const users = ['gil', 'hal'];
      for (const user of users) await subscribe(await client(doomed.tcpPort, user), `/topic/room.${user}`);
      const stream = `ws:backend:{${doomed.instanceId}}:events`;
      await until(() => redis.cli('xlen', stream).trim() === '4', "the events in the dead instance's stream", 5000);
      await doomed.kill();
      isDown = false;
      const lost = (e: Event): boolean => e.type === 'DISCONNECT' && e.reason === 'instance-lost';
      await until(() => accepted.filter(lost).length === 2, 'two instance-lost disconnects', 20000);
      await new Promise((resolve) => setTimeout(resolve, 3000)); // further reaper rounds and scans
      for (const user of users) {
        const events = accepted.filter((e) => e.userId === user);
        assert.deepEqual(
          events.map((e) => [e.type, e.reason]),
          [
            ['CONNECT', undefined],
            ['SUBSCRIBE', undefined],
            ['DISCONNECT', 'instance-lost'],
          ],
          user,
        );
        const disconnect = events.at(-1)!;
        assert.equal(disconnect.instanceId, doomed.instanceId);
        assert.deepEqual(disconnect.attributes, { room: 'r1' });
        assert.equal(disconnect.sessionId, events[0]!.sessionId);
      }
      assert.equal(accepted.filter(lost).length, 2, 'once each');
      assert.equal(redis.cli('exists', stream).trim(), '0', "the dead instance's outbox is gone once delivered");
    } finally {
      await Promise.all([survivor1.stop(), survivor2.stop()]);
      await app.close();
      await redis.stop();
    }
  });
});
