// Queues shared by several stompd processes on one real redis-server (Redis Streams): one
// queue everywhere, competing consumers on different instances, NACK and lost consumers
// redelivered elsewhere (marked redelivered), an instance killed with SIGKILL loses nothing,
// ack modes as in the embedded broker, limits, expiry, and what a Redis outage does.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Frame } from '../../src/codec';
import { BrokerProcess } from '../helpers/broker-process';
import { startBroker } from '../helpers/broker';
import { until as untilWithin } from '../helpers/until';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const clients = clientsOfThisFile();
const until = (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10000): Promise<void> => untilWithin(condition, what, timeoutMs);

const client = (port: number, login: string): Promise<RawClient> => connectedAs(clients, port, login);

async function subscribe(c: RawClient, destination: string, headers: Record<string, string> = {}, id = 'sub'): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `sub-${id}`, ...headers });
  await c.expect('RECEIPT');
}

/** Send `count` messages with a receipt on the last; seq headers from `from`. */
async function sendAll(c: RawClient, destination: string, count: number, from = 0, extra: Record<string, string> = {}): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const headers: Record<string, string> = { destination, seq: String(i), ...extra };
    if (i === from + count - 1) headers.receipt = `sent-${i}`;
    c.sendFrame('SEND', headers, `m${i}`);
  }
  await c.expect('RECEIPT', 10000);
}

/** ACK (client-individual) every MESSAGE as it arrives, a few ms later, like a busy consumer. */
function ackAsTheyCome(c: RawClient): NodeJS.Timeout {
  let acked = 0;
  return setInterval(() => {
    const messages = messagesOf(c);
    for (; acked < messages.length; acked++) c.sendFrame('ACK', { id: header(messages[acked]!, 'ack')! });
  }, 3).unref();
}

/** Every MESSAGE a client got so far (taken), as frames. */
function messagesOf(c: RawClient): Frame[] {
  return c.frames.filter((f) => f.command === 'MESSAGE');
}

describe('queues across instances (processes on one redis-server)', { timeout: 120000 }, () => {
  let redis: RedisServer;
  let a: BrokerProcess;
  let b: BrokerProcess;

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '500' };
    [a, b] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('a SEND on A reaches a consumer on B: the queue is kept in Redis, the RECEIPT comes after it is stored', async () => {
    const producer = await client(a.tcpPort, 'p1');
    producer.sendFrame('SEND', { destination: '/queue/tickets', receipt: 'r1', 'x-id': '42' }, 'ticket 42');
    await producer.expect('RECEIPT');
    // Stored before anyone consumes: the stream holds it.
    assert.equal(redis.cli('xlen', 'ws:queue:{/queue/tickets}').trim(), '1');
    const consumer = await client(b.tcpPort, 'agent');
    await subscribe(consumer, '/queue/tickets', { ack: 'client-individual' });
    const message = await consumer.expect('MESSAGE');
    assert.equal(message.body.toString(), 'ticket 42');
    assert.equal(header(message, 'x-id'), '42');
    assert.equal(header(message, 'destination'), '/queue/tickets');
    assert.equal(header(message, 'redelivered'), undefined);
    consumer.sendFrame('ACK', { id: header(message, 'ack')!, receipt: 'acked' });
    await consumer.expect('RECEIPT');
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/tickets}').trim() === '0', 'the acked entry to leave the stream');
  });

  it('producer on A, consumers on A and B share the queue: every message once, each consumer in publish order', async () => {
    const onA = await client(a.tcpPort, 'ca');
    const onB = await client(b.tcpPort, 'cb');
    await subscribe(onA, '/queue/shared', { ack: 'client-individual', 'prefetch-count': '5' });
    await subscribe(onB, '/queue/shared', { ack: 'client-individual', 'prefetch-count': '5' });
    const ackers = [ackAsTheyCome(onA), ackAsTheyCome(onB)];
    const producer = await client(a.tcpPort, 'p2');
    const count = 400;
    await sendAll(producer, '/queue/shared', count);
    await until(() => messagesOf(onA).length + messagesOf(onB).length >= count, 'every message delivered');
    await new Promise((resolve) => setTimeout(resolve, 300)); // nothing more comes
    const seqA = messagesOf(onA).map((m) => Number(header(m, 'seq')));
    const seqB = messagesOf(onB).map((m) => Number(header(m, 'seq')));
    assert.equal(seqA.length + seqB.length, count, 'no duplicates');
    assert.deepEqual(
      [...seqA, ...seqB].sort((x, y) => x - y),
      Array.from({ length: count }, (_, i) => i),
    );
    assert.ok(seqA.length > 0 && seqB.length > 0, `both instances consume (A ${seqA.length}, B ${seqB.length})`);
    assert.deepEqual(
      seqA,
      [...seqA].sort((x, y) => x - y),
      'A in order',
    );
    assert.deepEqual(
      seqB,
      [...seqB].sort((x, y) => x - y),
      'B in order',
    );
    assert.ok(messagesOf(onA).every((m) => header(m, 'redelivered') === undefined));
    ackers.forEach(clearInterval);
  });

  it('client-individual: a NACK on A redelivers to the consumer on B, marked redelivered', async () => {
    const onA = await client(a.tcpPort, 'na');
    await subscribe(onA, '/queue/nack', { ack: 'client-individual' });
    const producer = await client(a.tcpPort, 'p3');
    await sendAll(producer, '/queue/nack', 1);
    const first = await onA.expect('MESSAGE');
    const onB = await client(b.tcpPort, 'nb');
    await subscribe(onB, '/queue/nack', { ack: 'client-individual' });
    await until(() => redis.cli('hlen', 'ws:queue:{/queue/nack}:consumers').trim() === '2', 'both instances registered');
    onA.sendFrame('NACK', { id: header(first, 'ack')! });
    const again = await onB.expect('MESSAGE', 5000);
    assert.equal(again.body.toString(), 'm0');
    assert.equal(header(again, 'redelivered'), 'true');
    assert.equal(header(again, 'message-id'), header(first, 'message-id'));
    await onA.expectSilence(300);
    onB.sendFrame('ACK', { id: header(again, 'ack')!, receipt: 'ok' });
    await onB.expect('RECEIPT');
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/nack}').trim() === '0', 'the entry gone');
  });

  it('a NACK with no other consumer anywhere comes back to the same consumer', async () => {
    const only = await client(b.tcpPort, 'alone');
    await subscribe(only, '/queue/alone', { ack: 'client-individual' });
    const producer = await client(a.tcpPort, 'p4');
    await sendAll(producer, '/queue/alone', 1);
    const first = await only.expect('MESSAGE');
    only.sendFrame('NACK', { id: header(first, 'ack')! });
    const again = await only.expect('MESSAGE', 5000);
    assert.equal(header(again, 'redelivered'), 'true');
    assert.equal(again.body.toString(), 'm0');
  });

  it('a consumer that disconnects with unacknowledged messages: they go to the consumer on the other instance', async () => {
    const leaving = await client(a.tcpPort, 'leaving');
    await subscribe(leaving, '/queue/leave', { ack: 'client', 'prefetch-count': '3' });
    const producer = await client(a.tcpPort, 'p5');
    await sendAll(producer, '/queue/leave', 5);
    for (let i = 0; i < 3; i++) await leaving.expect('MESSAGE');
    await leaving.expectSilence(200); // prefetch-count bounds what it holds
    const staying = await client(b.tcpPort, 'staying');
    await subscribe(staying, '/queue/leave', { ack: 'client-individual' });
    const early = [await staying.expect('MESSAGE', 5000), await staying.expect('MESSAGE', 5000)];
    assert.deepEqual(
      early.map((m) => header(m, 'seq')),
      ['3', '4'],
      'the two the leaver could not hold',
    );
    leaving.destroy(); // socket lost, nothing acked
    const back: Frame[] = [];
    for (let i = 0; i < 3; i++) back.push(await staying.expect('MESSAGE', 5000));
    assert.deepEqual(
      back.map((m) => header(m, 'seq')),
      ['0', '1', '2'],
    );
    assert.ok(back.every((m) => header(m, 'redelivered') === 'true'));
  });

  it('client mode: one ACK covers every earlier message; auto mode: removed when written', async () => {
    const c = await client(b.tcpPort, 'cumulative');
    await subscribe(c, '/queue/cumulative', { ack: 'client' });
    const producer = await client(a.tcpPort, 'p6');
    await sendAll(producer, '/queue/cumulative', 4);
    const got: Frame[] = [];
    for (let i = 0; i < 4; i++) got.push(await c.expect('MESSAGE'));
    assert.equal(redis.cli('xlen', 'ws:queue:{/queue/cumulative}').trim(), '4', 'unacknowledged: still in Redis');
    c.sendFrame('ACK', { id: header(got[2]!, 'ack')!, receipt: 'a' });
    await c.expect('RECEIPT');
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/cumulative}').trim() === '1', 'three acked at once');

    const auto = await client(a.tcpPort, 'auto');
    await subscribe(auto, '/queue/auto');
    await sendAll(producer, '/queue/auto', 3);
    for (let i = 0; i < 3; i++) await auto.expect('MESSAGE');
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/auto}').trim() === '0', 'auto: acked when written');
  });

  it('a queue with no messages and no consumers left anywhere is forgotten (MAX_QUEUES counts only live ones)', async () => {
    const c = await client(a.tcpPort, 'ephemeral');
    await subscribe(c, '/queue/ephemeral', { ack: 'client-individual' });
    const producer = await client(b.tcpPort, 'p-eph');
    await sendAll(producer, '/queue/ephemeral', 1);
    const m = await c.expect('MESSAGE');
    assert.match(redis.cli('smembers', 'ws:queues'), /\/queue\/ephemeral/);
    // ACK and leave at once: the ack reaches Redis before the "no consumer here any more".
    c.sendFrame('ACK', { id: header(m, 'ack')! });
    c.sendFrame('DISCONNECT', { receipt: 'bye' });
    await c.waitClosed();
    await until(() => !redis.cli('smembers', 'ws:queues').includes('/queue/ephemeral'), 'the queue forgotten');
    assert.equal(redis.cli('keys', 'ws:queue:{/queue/ephemeral}*').trim(), '', 'no key left');
  });

  it('expired messages (expires, ms since epoch) are never delivered; the others are', async () => {
    const producer = await client(a.tcpPort, 'p7');
    producer.sendFrame('SEND', { destination: '/queue/exp', expires: String(Date.now() + 300), seq: 'short' }, 'short');
    producer.sendFrame('SEND', { destination: '/queue/exp', expires: String(Date.now() + 600_000), seq: 'long' }, 'long');
    producer.sendFrame('SEND', { destination: '/queue/exp', expires: '0', seq: 'never', receipt: 'r' }, 'never');
    await producer.expect('RECEIPT');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const c = await client(b.tcpPort, 'exp');
    await subscribe(c, '/queue/exp');
    assert.equal(header(await c.expect('MESSAGE'), 'seq'), 'long');
    assert.equal(header(await c.expect('MESSAGE'), 'seq'), 'never');
    await c.expectSilence(300);
    assert.match(redis.cli('hget', 'ws:queue:{/queue/exp}:counts', 'expired'), /^1/);
  });
});

describe('an instance killed with SIGKILL while holding unacknowledged queue messages', { timeout: 120000 }, () => {
  let redis: RedisServer;
  let survivor: BrokerProcess;
  let doomed: BrokerProcess;

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '1000' };
    [survivor, doomed] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env)]);
  });

  after(async () => {
    await Promise.all([survivor?.stop(), doomed?.stop()]);
    await redis?.stop();
  });

  it('redelivers them on the survivor within 10 s, marked redelivered; each message is consumed exactly once', async () => {
    const victim = await client(doomed.tcpPort, 'victim');
    await subscribe(victim, '/queue/crash', { ack: 'client-individual', 'prefetch-count': '10' });
    const producer = await client(survivor.tcpPort, 'crash-producer');
    const count = 30;
    await sendAll(producer, '/queue/crash', count);
    await victim.waitUntil(() => messagesOf(victim).length === 10, 3000, "the victim's prefetch");
    // Acknowledge 4 of them: those must never come back; 4 more take their place.
    for (const m of messagesOf(victim).slice(0, 4)) victim.sendFrame('ACK', { id: header(m, 'ack')! });
    await victim.waitUntil(() => messagesOf(victim).length === 14, 3000, 'four more after the acks');
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/crash}').trim() === String(count - 4), 'the 4 acks stored');
    const held = messagesOf(victim).slice(4);
    const rescuer = await client(survivor.tcpPort, 'rescuer');
    await subscribe(rescuer, '/queue/crash', { ack: 'client-individual', 'prefetch-count': '100' });
    // The rescuer takes what the victim could not hold; the victim's 6 are stuck with it.
    await until(() => messagesOf(rescuer).length === count - 14, 'the unheld messages on the survivor');
    await rescuer.expectSilence(300);

    const killedAt = Date.now();
    await doomed.kill();
    await until(() => messagesOf(rescuer).length === count - 4, "the dead instance's unacked on the survivor", 12000);
    const elapsedMs = Date.now() - killedAt;
    assert.ok(elapsedMs < 10000, `redelivered after ${elapsedMs} ms`);

    const received = messagesOf(rescuer);
    const seqs = received.map((m) => Number(header(m, 'seq')));
    assert.deepEqual(
      [...seqs].sort((x, y) => x - y),
      Array.from({ length: count - 4 }, (_, i) => i + 4),
      'the 26 not acked, once each',
    );
    const heldSeqs = new Set(held.map((m) => Number(header(m, 'seq'))));
    assert.equal(heldSeqs.size, 10);
    for (const m of received) {
      const seq = Number(header(m, 'seq'));
      assert.equal(header(m, 'redelivered') === 'true', heldSeqs.has(seq), `seq ${seq}: redelivered only if the dead instance had delivered it`);
    }
    for (const m of received) rescuer.sendFrame('ACK', { id: header(m, 'ack')! });
    await until(() => redis.cli('xlen', 'ws:queue:{/queue/crash}').trim() === '0', 'all acked, the stream empty');
    await rescuer.expectSilence(1500); // nothing delivered twice
  });

  it("a graceful stop (SIGTERM) gives its consumers' unacknowledged messages back at once, for the survivor", async () => {
    const leaving = await BrokerProcess.start({ REDIS_URL: redis.url, HEARTBEAT: '0,0', INSTANCE_HEARTBEAT_MS: '1000' });
    const holder = await client(leaving.tcpPort, 'holder');
    await subscribe(holder, '/queue/term', { ack: 'client-individual' });
    const producer = await client(survivor.tcpPort, 'term-producer');
    await sendAll(producer, '/queue/term', 5);
    await holder.waitUntil(() => messagesOf(holder).length === 5, 3000, "the holder's messages");
    const taker = await client(survivor.tcpPort, 'taker');
    await subscribe(taker, '/queue/term', { ack: 'client-individual' });
    await taker.expectSilence(200);
    const stoppedAt = Date.now();
    assert.equal(await leaving.stop(), 0);
    await until(() => messagesOf(taker).length === 5, 'the unacknowledged on the survivor', 5000);
    assert.ok(Date.now() - stoppedAt < 3000, 'without waiting for a reaper');
    assert.deepEqual(
      messagesOf(taker).map((m) => header(m, 'redelivered')),
      ['true', 'true', 'true', 'true', 'true'],
    );
  });
});

describe('queue limits and outages with Redis (in-process brokers)', { timeout: 60000 }, () => {
  it('a RECEIPT is sent only once Redis has the message: none while Redis is paused, then the entry is there', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'pause-a' });
    try {
      const producer = await client(a.tcpPort!, 'pp');
      await sendAll(producer, '/queue/paused', 1); // the queue exists: only the XADD is left to wait for
      redis.cli('client', 'pause', '800', 'WRITE');
      const sentAt = Date.now();
      producer.sendFrame('SEND', { destination: '/queue/paused', receipt: 'stored', seq: 'p' }, 'x');
      const receipt = await producer.expect('RECEIPT', 5000);
      assert.equal(header(receipt, 'receipt-id'), 'stored');
      assert.ok(Date.now() - sentAt >= 600, `RECEIPT after ${Date.now() - sentAt} ms: it waited for the paused Redis`);
      assert.equal(redis.cli('xlen', 'ws:queue:{/queue/paused}').trim(), '2');
      // A transaction's queue SENDs: the COMMIT's RECEIPT follows once all are stored.
      producer.sendFrame('BEGIN', { transaction: 't' });
      for (let i = 0; i < 3; i++) producer.sendFrame('SEND', { destination: '/queue/paused', transaction: 't' }, `t${i}`);
      redis.cli('client', 'pause', '500', 'WRITE');
      producer.sendFrame('COMMIT', { transaction: 't', receipt: 'committed' });
      await producer.expect('RECEIPT', 5000);
      assert.equal(redis.cli('xlen', 'ws:queue:{/queue/paused}').trim(), '5');
    } finally {
      await a.stop();
      await redis.stop();
    }
  });

  it('an entry read for this instance whose reply was lost with the connection is given back after the reconnect', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'rc-a' });
    try {
      const producer = await client(a.tcpPort!, 'rp');
      await sendAll(producer, '/queue/lost', 1); // nobody consumes yet: it waits in the stream
      // Play the lost reply: the entry is read for rc-a, but rc-a never sees it.
      redis.cli('xreadgroup', 'group', 'stompd', 'rc-a', 'count', '1', 'streams', 'ws:queue:{/queue/lost}', '>');
      redis.cli('sadd', 'ws:instance:{rc-a}:queues', '/queue/lost');
      const c = await client(a.tcpPort!, 'rc');
      await subscribe(c, '/queue/lost', { ack: 'client-individual' });
      await c.expectSilence(700); // stuck in rc-a's pending entries
      redis.cli('client', 'kill', 'type', 'normal', 'skipme', 'yes'); // the broker's connections drop and come back
      const m = await c.expect('MESSAGE', 10000);
      assert.equal(header(m, 'seq'), '0');
      assert.equal(header(m, 'redelivered'), 'true');
      c.sendFrame('ACK', { id: header(m, 'ack')! });
      await until(() => redis.cli('xlen', 'ws:queue:{/queue/lost}').trim() === '0', 'acked');
    } finally {
      await a.stop();
      await redis.stop();
    }
  });

  it('an entry read for this instance whose reply timed out on a connection that stayed up is given back, with no reconnect', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'to-a' });
    try {
      const producer = await client(a.tcpPort!, 'tp');
      await sendAll(producer, '/queue/timedout', 1); // nobody consumes yet: it waits in the stream
      const reconnectsBefore = (a.clusterHealth() as { reconnects?: number } | undefined)?.reconnects;
      const c = await client(a.tcpPort!, 'tc');
      // Redis answers nobody for longer than the command timeout (3 s): the read the SUBSCRIBE
      // starts runs when the pause ends, and its reply comes to a command already given up.
      redis.cli('client', 'pause', '3600', 'ALL');
      c.sendFrame('SUBSCRIBE', { destination: '/queue/timedout', id: 'sub', ack: 'client-individual' });
      const m = await c.expect('MESSAGE', 15000);
      assert.equal(header(m, 'seq'), '0');
      c.sendFrame('ACK', { id: header(m, 'ack')! });
      await until(() => redis.cli('xlen', 'ws:queue:{/queue/timedout}').trim() === '0', 'acked');
      assert.equal((a.clusterHealth() as { reconnects?: number } | undefined)?.reconnects, reconnectsBefore, 'no reconnect: the connection stayed up');
    } finally {
      await a.stop();
      await redis.stop();
    }
  });

  it('MAX_QUEUES: a SEND creating one queue too many is refused with QUEUE_LIMIT, across instances', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, MAX_QUEUES: '2', INSTANCE_ID: 'lim-a' });
    const b = await startBroker({ REDIS_URL: redis.url, MAX_QUEUES: '2', INSTANCE_ID: 'lim-b' });
    try {
      const onA = await client(a.tcpPort!, 'la');
      await sendAll(onA, '/queue/one', 1);
      const onB = await client(b.tcpPort!, 'lb');
      await sendAll(onB, '/queue/two', 1);
      await sendAll(onB, '/queue/one', 1); // existing: fine
      onB.sendFrame('SEND', { destination: '/queue/three', receipt: 'r3' }, 'x');
      const error = await onB.expect('ERROR');
      assert.match(header(error, 'message')!, /^QUEUE_LIMIT: /);
      assert.equal(header(error, 'receipt-id'), 'r3');
      assert.equal(redis.cli('exists', 'ws:queue:{/queue/three}').trim(), '0');
      const subscriber = await client(a.tcpPort!, 'ls');
      subscriber.sendFrame('SUBSCRIBE', { destination: '/queue/four', id: 'x', receipt: 'r4' });
      assert.match(header(await subscriber.expect('ERROR'), 'message')!, /^QUEUE_LIMIT: /, 'a SUBSCRIBE creating one is refused too');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.stop();
    }
  });

  it('MAX_QUEUE_MESSAGES: a queue without consumers keeps the newest, the dropped are counted', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, MAX_QUEUE_MESSAGES: '5', INSTANCE_ID: 'trim-a' });
    try {
      const producer = await client(a.tcpPort!, 'trim');
      await sendAll(producer, '/queue/trim', 12);
      const stats = await a.router.queueStats();
      const trim = stats.find((s) => s.name === '/queue/trim')!;
      assert.deepEqual({ depth: trim.depth, dropped: trim.dropped, consumers: trim.consumers }, { depth: 5, dropped: 7, consumers: 0 });
      const c = await client(a.tcpPort!, 'trim-c');
      await subscribe(c, '/queue/trim');
      const seqs: string[] = [];
      for (let i = 0; i < 5; i++) seqs.push(header(await c.expect('MESSAGE'), 'seq')!);
      assert.deepEqual(seqs, ['7', '8', '9', '10', '11']);
    } finally {
      await a.stop();
      await redis.stop();
    }
  });

  it('queueStats: depth, unacked, consumers on every instance and the oldest message age', async () => {
    const redis = await startRedis();
    const a = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'st-a' });
    const b = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'st-b' });
    try {
      const c1 = await client(a.tcpPort!, 's1');
      const c2 = await client(b.tcpPort!, 's2');
      await subscribe(c1, '/queue/stats', { ack: 'client-individual', 'prefetch-count': '1' });
      await subscribe(c2, '/queue/stats', { ack: 'client-individual', 'prefetch-count': '1' });
      const producer = await client(a.tcpPort!, 'sp');
      await sendAll(producer, '/queue/stats', 5);
      await until(() => messagesOf(c1).length + messagesOf(c2).length === 2, 'one each');
      await new Promise((resolve) => setTimeout(resolve, 150));
      for (const broker of [a, b]) {
        const stat = (await broker.router.queueStats()).find((s) => s.name === '/queue/stats')!;
        assert.equal(stat.depth, 3);
        assert.equal(stat.unacked, 2);
        assert.equal(stat.consumers, 2);
        assert.ok(stat.oldestAgeMs >= 100 && stat.oldestAgeMs < 10000, `oldest ${stat.oldestAgeMs} ms`);
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.stop();
    }
  });

  it('Redis away: a SEND to a queue is refused with UNAVAILABLE (no RECEIPT); Redis back with its data (AOF): nothing acknowledged-for-sending is lost, consumption resumes', async () => {
    const redis = await startRedis({ appendonly: true });
    const a = await startBroker({ REDIS_URL: redis.url, INSTANCE_ID: 'out-a' });
    try {
      const consumer = await client(a.tcpPort!, 'oc');
      await subscribe(consumer, '/queue/outage', { ack: 'client-individual', 'prefetch-count': '1' });
      const producer = await client(a.tcpPort!, 'op');
      await sendAll(producer, '/queue/outage', 5);
      const first = await consumer.expect('MESSAGE');
      await redis.stop(); // SIGTERM: the AOF is flushed
      await until(() => a.clusterHealth()?.isDegraded === true, 'the broker to notice');
      const refused = await client(a.tcpPort!, 'refused');
      refused.sendFrame('SEND', { destination: '/queue/outage', receipt: 'lost?' }, 'during');
      const error = await refused.expect('ERROR');
      assert.match(header(error, 'message')!, /^UNAVAILABLE: /);
      assert.equal(header(error, 'receipt-id'), 'lost?');
      const noReceipt = await client(a.tcpPort!, 'refused2');
      noReceipt.sendFrame('SEND', { destination: '/queue/outage' }, 'during, no receipt asked');
      assert.match(header(await noReceipt.expect('ERROR'), 'message')!, /^UNAVAILABLE: /, 'refused even when nobody waits for a RECEIPT');
      consumer.sendFrame('ACK', { id: header(first, 'ack')! }); // kept and sent when Redis is back
      await redis.restart();
      await until(() => a.clusterHealth()?.isDegraded === false, 'Redis back');
      const seqs = [header(first, 'seq')];
      for (let i = 0; i < 4; i++) {
        const m = await consumer.expect('MESSAGE', 10000);
        seqs.push(header(m, 'seq'));
        consumer.sendFrame('ACK', { id: header(m, 'ack')! });
      }
      assert.deepEqual(seqs, ['0', '1', '2', '3', '4']);
      await until(() => redis.cli('xlen', 'ws:queue:{/queue/outage}').trim() === '0', 'every ack stored, the one made during the outage too');
      await consumer.expectSilence(300);
    } finally {
      await a.stop();
      await redis.stop();
    }
  });
});

/** A client-individual consumer that acks (or now and then NACKs) what it gets, and can be restarted. */
class Churner {
  client!: RawClient;
  private timer: NodeJS.Timeout | undefined;
  private seen = 0;
  private isAcking = true;

  constructor(
    private readonly port: number,
    private readonly name: string,
    private readonly record: (seq: number, isRedelivered: boolean, isAcked: boolean) => void,
  ) {}

  async start(): Promise<void> {
    this.client = await client(this.port, this.name);
    this.seen = 0;
    this.isAcking = true;
    await subscribe(this.client, '/queue/churn', { ack: 'client-individual', 'prefetch-count': '20' });
    this.timer = setInterval(() => this.work(), 2);
    this.timer.unref();
  }

  private work(): void {
    const c = this.client;
    for (; this.seen < c.frames.length; this.seen++) {
      const frame = c.frames[this.seen]!;
      if (frame.command !== 'MESSAGE' || !this.isAcking) continue;
      const seq = Number(header(frame, 'seq'));
      const isNack = Math.random() < 0.02;
      c.sendFrame(isNack ? 'NACK' : 'ACK', { id: header(frame, 'ack')! });
      this.record(seq, header(frame, 'redelivered') === 'true', !isNack);
    }
  }

  /** Stop acking; make sure every ACK sent was processed; then lose the connection (abruptly or not) and come back. */
  async restart(isAbrupt: boolean): Promise<void> {
    this.work();
    this.isAcking = false;
    clearInterval(this.timer);
    const c = this.client;
    c.sendFrame('UNSUBSCRIBE', { id: 'no-such-subscription', receipt: 'acks-processed' });
    await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'acks-processed'), 5000, 'the acks processed');
    // What it received after its last ACK goes back unacknowledged: recorded as seen, not acked.
    for (const frame of c.frames.slice(this.seen)) if (frame.command === 'MESSAGE') this.record(Number(header(frame, 'seq')), header(frame, 'redelivered') === 'true', false);
    if (isAbrupt) c.destroy();
    else {
      c.sendFrame('DISCONNECT', { receipt: 'bye' });
      await c.waitClosed(5000);
    }
    await this.start();
  }

  stop(): void {
    clearInterval(this.timer);
    this.client.destroy();
  }
}

describe('10,000 messages through 4 consumers on 2 instances, consumers restarting at random', { timeout: 120000 }, () => {
  it('every message is acknowledged exactly once; a message seen twice is marked redelivered', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0' };
    const [a, b] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env)]);
    try {
      const count = 10_000;
      const acks = new Array<number>(count).fill(0);
      const deliveries = new Array<number>(count).fill(0);
      const unmarkedRepeats: number[] = [];
      let acked = 0;
      const record = (seq: number, isRedelivered: boolean, isAcked: boolean): void => {
        if (deliveries[seq]! > 0 && !isRedelivered) unmarkedRepeats.push(seq);
        deliveries[seq]!++;
        if (isAcked && acks[seq]!++ === 0) acked++;
      };
      const consumers = [new Churner(a.tcpPort, 'c1', record), new Churner(a.tcpPort, 'c2', record), new Churner(b.tcpPort, 'c3', record), new Churner(b.tcpPort, 'c4', record)];
      await Promise.all(consumers.map((c) => c.start()));
      const producers = [await client(a.tcpPort, 'churn-pa'), await client(b.tcpPort, 'churn-pb')];
      const sending = Promise.all(producers.map((p, i) => sendAll(p, '/queue/churn', count / 2, (i * count) / 2)));
      let restarts = 0;
      const deadline = Date.now() + 90_000;
      while (acked < count && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 40 + Math.random() * 60));
        if (acked >= count) break;
        await consumers[Math.floor(Math.random() * consumers.length)]!.restart(restarts++ % 2 === 0);
      }
      await sending;
      await until(() => acked === count, `every message acked (${acked} of ${count})`, 30000);
      await new Promise((resolve) => setTimeout(resolve, 500)); // nothing more comes
      for (const c of consumers) c.stop();
      assert.ok(restarts >= 5, `consumers restarted ${restarts} times`);
      assert.deepEqual(unmarkedRepeats, [], 'a message delivered again is marked redelivered');
      const notOnce = acks.flatMap((n, seq) => (n === 1 ? [] : [`${seq}:${n}`]));
      assert.deepEqual(notOnce, [], 'each acknowledged exactly once');
      await until(() => redis.cli('xlen', 'ws:queue:{/queue/churn}').trim() === '0', 'the stream empty');
      assert.ok(
        deliveries.some((n) => n > 1),
        'some were redelivered (restarts and NACKs happened while messages were held)',
      );
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      await redis.stop();
    }
  });
});

describe('MAX_QUEUE_MESSAGES with Redis bounds what waits, never what a consumer holds', { timeout: 60000 }, () => {
  it('delivered, unacknowledged messages survive a full queue and are redelivered when their consumer leaves', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', MAX_QUEUE_MESSAGES: '5' };
    const [a, b] = [await startBroker(env), await startBroker(env)];
    try {
      const holder = await client(a.tcpPort!, 'holder');
      await subscribe(holder, '/queue/bounded', { ack: 'client-individual', 'prefetch-count': '5' });
      const producer = await client(a.tcpPort!, 'bounded-producer');
      for (let i = 0; i < 5; i++) {
        producer.sendFrame('SEND', { destination: '/queue/bounded', seq: String(i), receipt: `r${i}` }, `m${i}`);
        await producer.expect('RECEIPT');
      }
      await holder.waitUntil(() => messagesOf(holder).length === 5, 5000, 'five held');
      for (let i = 5; i < 12; i++) {
        producer.sendFrame('SEND', { destination: '/queue/bounded', seq: String(i), receipt: `r${i}` }, `m${i}`);
        await producer.expect('RECEIPT');
      }
      // 5 held (not trimmed), 7 waiting: the 2 oldest waiting (5, 6) dropped to keep 5.
      holder.sendFrame('DISCONNECT', { receipt: 'bye' });
      await holder.waitUntil(() => holder.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'bye'), 5000, 'the DISCONNECT receipt');
      const taker = await client(b.tcpPort!, 'taker');
      await subscribe(taker, '/queue/bounded', { ack: 'auto' });
      await taker.waitUntil(() => messagesOf(taker).length >= 10, 10000, 'ten messages');
      await taker.expectSilence(300);
      const seqs = messagesOf(taker)
        .map((m) => Number(header(m, 'seq')))
        .sort((x, y) => x - y);
      assert.deepEqual(seqs, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]);
      for (const m of messagesOf(taker)) if (Number(header(m, 'seq')) < 5) assert.equal(header(m, 'redelivered'), 'true');
      const { dropped } = (await a.router.queueStats()).find((q) => q.name === '/queue/bounded') ?? { dropped: -1 };
      assert.equal(dropped, 2);
    } finally {
      await a.stop();
      await b.stop();
      await redis.stop();
    }
  });
});

describe('expiry with Redis also holds for redeliveries', { timeout: 60000 }, () => {
  it('a message NACKed after its expires time is not delivered again', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0' };
    const [a, b] = [await startBroker(env), await startBroker(env)];
    try {
      const first = await client(a.tcpPort!, 'first');
      await subscribe(first, '/queue/fleeting', { ack: 'client-individual' });
      const other = await client(a.tcpPort!, 'other-local');
      await subscribe(other, '/queue/fleeting', { ack: 'client-individual' });
      const elsewhere = await client(b.tcpPort!, 'elsewhere');
      await subscribe(elsewhere, '/queue/fleeting', { ack: 'client-individual' });
      const producer = await client(a.tcpPort!, 'fleeting-producer');
      producer.sendFrame('SEND', { destination: '/queue/fleeting', expires: String(Date.now() + 400), receipt: 'r' }, 'soon stale');
      await producer.expect('RECEIPT');
      const holders = [first, other, elsewhere];
      await until(() => holders.some((c) => messagesOf(c).length === 1), 'one consumer to get it');
      const holder = holders.find((c) => messagesOf(c).length === 1)!;
      await new Promise((resolve) => setTimeout(resolve, 600)); // past its expires time
      holder.sendFrame('NACK', { id: header(messagesOf(holder)[0]!, 'ack')!, receipt: 'nacked' });
      await holder.waitUntil(() => holder.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'nacked'), 5000, 'the NACK receipt');
      await new Promise((resolve) => setTimeout(resolve, 1200)); // a give-back would have been taken by now
      assert.equal(
        holders.reduce((n, c) => n + messagesOf(c).length, 0),
        1,
        'delivered once, never again',
      );
      await until(async () => ((await a.router.queueStats()).find((q) => q.name === '/queue/fleeting')?.expired ?? 0) === 1, 'counted as expired');
    } finally {
      await a.stop();
      await b.stop();
      await redis.stop();
    }
  });
});
