// GET /api/presence (a room's members) and GET /api/queues (every queue), and the per-queue
// gauges of /metrics: in embedded mode, and from two instances on one real Redis, which
// must give the same answers.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { ApiError, Presence, Queues } from '../helpers/api-shapes';
import { ApiClient, parsePrometheus } from '../helpers/http';
import { RawClient } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const TOKEN = 'test-admin-token-0123456789';
const clients: RawClient[] = [];
after(() => {
  for (const c of clients) c.destroy();
});

async function client(b: RunningServer, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(b.tcpPort!);
  clients.push(c);
  await c.connect({ login });
  return c;
}

/** Run `check` until it stops throwing (the other instance hears of things a moment later). */
async function eventuallyPasses(check: () => Promise<void>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

async function subscribe(c: RawClient, destination: string, extra: Record<string, string> = {}): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id: destination, receipt: `r-${destination}`, ...extra });
  await c.expect('RECEIPT');
}

for (const mode of ['embedded', 'redis'] as const) {
  describe(`rooms and queues over HTTP (${mode})`, { timeout: 60000 }, () => {
    let redis: RedisServer | undefined;
    const brokers: RunningServer[] = [];
    after(async () => {
      for (const b of brokers) await b.stop();
      await redis?.stop();
    });

    it('GET /api/presence lists the members (404 for a non-room, 400 without destination); GET /api/queues and /metrics show each queue', async () => {
      const env: Record<string, string> = { HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*' };
      if (mode === 'redis') {
        redis = await startRedis();
        env.REDIS_URL = redis.url;
      }
      brokers.push(await startBroker(env));
      if (mode === 'redis') brokers.push(await startBroker(env));
      const apis = brokers.map((b) => new ApiClient(b.httpPort!, TOKEN));
      const [first, last] = [brokers[0]!, brokers[brokers.length - 1]!];

      await subscribe(await client(first, 'ann'), '/topic/room.7');
      await subscribe(await client(last, 'ben'), '/topic/room.7');
      for (const api of apis) {
        await eventuallyPasses(async () => {
          const room = await api.ok<Presence>('/api/presence?destination=/topic/room.7');
          assert.equal(room.destination, '/topic/room.7');
          assert.deepEqual(room.members.map((m) => m.userId).sort(), ['ann', 'ben']);
          for (const m of room.members) assert.ok(Math.abs(m.joinedAt - Date.now()) < 30_000);
        });
      }
      assert.equal((await apis[0]!.get('/api/presence?destination=/topic/lobby')).status, 404);
      assert.equal((await apis[0]!.get('/api/presence')).status, 400);
      const unknownKey = await apis[0]!.get<ApiError>('/api/presence?destination=/topic/room.7&colour=blue');
      assert.equal(unknownKey.status, 400);
      assert.match(unknownKey.body.message, /colour/, 'the 400 names the field');
      assert.equal((await new ApiClient(first.httpPort!, 'wrong-token-0123456789').get('/api/presence?destination=/topic/room.7')).status, 401);

      const producer = await client(first, 'producer');
      for (let i = 0; i < 3; i++) {
        producer.sendFrame('SEND', { destination: '/queue/tickets', receipt: `t${i}` }, `ticket ${i}`);
        await producer.expect('RECEIPT');
      }
      const agent = await client(last, 'agent');
      await subscribe(agent, '/queue/tickets', { ack: 'client-individual', 'prefetch-count': '1' });
      await agent.expect('MESSAGE');
      for (const api of apis) {
        await eventuallyPasses(async () => {
          const { queues } = await api.ok<Queues>('/api/queues');
          const tickets = queues.find((q) => q.name === '/queue/tickets');
          assert.ok(tickets, JSON.stringify(queues));
          assert.equal(tickets.depth, 2);
          assert.equal(tickets.unacked, 1);
          assert.equal(tickets.consumers, 1);
          assert.ok(tickets.oldestAgeMs >= 0);
        });
      }
      const metrics = parsePrometheus((await apis[0]!.get('/metrics')).text);
      assert.equal(metrics.get('stompd_queue_depth{queue="/queue/tickets"}'), 2);
      assert.equal(metrics.get('stompd_queue_consumers{queue="/queue/tickets"}'), 1);
      assert.equal(metrics.get('stompd_queue_unacked{queue="/queue/tickets"}'), 1);
    });
  });
}

describe('POST /api/publish honours the queue limits like a SEND', { timeout: 30000 }, () => {
  it('a publish that would create a queue past MAX_QUEUES is refused (503 QUEUE_LIMIT) and stores nothing', async () => {
    const b = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: TOKEN, HEARTBEAT: '0,0', MAX_QUEUES: '1' });
    try {
      const api = new ApiClient(b.httpPort!, TOKEN);
      assert.equal((await api.request('POST', '/api/publish', { destination: '/queue/first', body: 'one' })).status, 200);
      const refused = await api.request<ApiError>('POST', '/api/publish', { destination: '/queue/second', body: 'two' });
      assert.equal(refused.status, 503);
      assert.match(refused.body.message, /^QUEUE_LIMIT: /);
      const { queues } = await api.ok<Queues>('/api/queues');
      assert.deepEqual(
        queues.map((q) => q.name),
        ['/queue/first'],
      );
      for (const name of ['x-presence', 'X-Dropped', 'redelivered', 'content-type']) {
        const forged = await api.request<ApiError>('POST', '/api/publish', { destination: '/topic/room.1', body: '{}', headers: { [name]: 'join' } });
        assert.equal(forged.status, 400, `${name}: ${forged.text}`);
        assert.match(forged.body.message, new RegExp(`body/headers/${name}`));
      }
    } finally {
      await b.stop();
    }
  });
});
