// Embedded queues: what GET /api/queues and /metrics read (Router.queueStats), and `expires`.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBroker } from '../helpers/broker';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';

const clients = clientsOfThisFile();

const client = (port: number, login: string): Promise<RawClient> => connectedAs(clients, port, login);

describe('embedded queues: stats and expiry', { timeout: 20000 }, () => {
  it('queueStats: depth, unacknowledged, consumers, oldest message age, dropped', async () => {
    const b = await startBroker({ MAX_QUEUE_MESSAGES: '4' });
    try {
      const producer = await client(b.tcpPort!, 'p');
      for (let i = 0; i < 6; i++) producer.sendFrame('SEND', { destination: '/queue/s', seq: String(i) }, `m${i}`);
      producer.sendFrame('SEND', { destination: '/queue/s', seq: '6', receipt: 'r' }, 'm6');
      await producer.expect('RECEIPT');
      await new Promise((resolve) => setTimeout(resolve, 120));
      const consumer = await client(b.tcpPort!, 'c');
      consumer.sendFrame('SUBSCRIBE', { destination: '/queue/s', id: '1', ack: 'client', 'prefetch-count': '1', receipt: 's' });
      await consumer.expect('RECEIPT');
      await consumer.expect('MESSAGE');
      const [stat] = await b.router.queueStats();
      assert.equal(stat!.name, '/queue/s');
      assert.deepEqual({ depth: stat!.depth, unacked: stat!.unacked, consumers: stat!.consumers, dropped: stat!.dropped }, { depth: 3, unacked: 1, consumers: 1, dropped: 3 });
      assert.ok(stat!.oldestAgeMs >= 100 && stat!.oldestAgeMs < 5000, `oldest ${stat!.oldestAgeMs} ms`);
    } finally {
      await b.stop();
    }
  });

  it('a message whose expires time (ms since epoch) has passed is never delivered', async () => {
    const b = await startBroker();
    try {
      const producer = await client(b.tcpPort!, 'p');
      producer.sendFrame('SEND', { destination: '/queue/e', expires: String(Date.now() + 200), seq: 'short' }, 'a');
      producer.sendFrame('SEND', { destination: '/queue/e', expires: String(Date.now() + 60_000), seq: 'long' }, 'b');
      producer.sendFrame('SEND', { destination: '/queue/e', expires: '0', seq: 'never', receipt: 'r' }, 'c');
      await producer.expect('RECEIPT');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const consumer = await client(b.tcpPort!, 'c');
      consumer.sendFrame('SUBSCRIBE', { destination: '/queue/e', id: '1' });
      assert.equal(header(await consumer.expect('MESSAGE'), 'seq'), 'long');
      assert.equal(header(await consumer.expect('MESSAGE'), 'seq'), 'never');
      await consumer.expectSilence(200);
      assert.equal((await b.router.queueStats())[0]!.expired, 1);
      assert.equal(b.router.stats().queuedBytes, 0, 'the expired message no longer counts');
    } finally {
      await b.stop();
    }
  });
});
