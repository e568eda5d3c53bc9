// Per-session and per-subscription bounds as a client sees them: prefetch (MAX_UNACKED,
// prefetch-count), the topic client-ack bound, a closing session's unacked messages,
// transaction size, the subscription cap, and the outbound overflow cap for a client that
// does not even read its RECEIPTs.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import type { DisconnectEvent } from '../../src/session/events';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness();
const broker = (overrides: Record<string, string> = {}): Promise<RunningServer> => h.broker(overrides);
const connected = (b: RunningServer, login?: string): Promise<RawClient> => h.connected(b, login !== undefined ? { login } : {});

/** Wait for the RECEIPT `id`, whatever MESSAGEs come around it. */
async function receipt(c: RawClient, id: string): Promise<void> {
  await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === id), 3000, `RECEIPT ${id}`);
}

async function subscribe(c: RawClient, headers: Record<string, string>): Promise<void> {
  c.sendFrame('SUBSCRIBE', { ...headers, receipt: `sub-${headers.id}` });
  await receipt(c, `sub-${headers.id}`);
}

/** Publish `bodies` to `destination`, and wait until the broker has handled them all. */
async function publish(c: RawClient, destination: string, bodies: string[]): Promise<void> {
  for (const body of bodies) c.sendFrame('SEND', { destination }, body);
  c.sendFrame('SEND', { destination: '/topic/nobody', receipt: 'published' });
  assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'published');
}

const messagesOf = (c: RawClient): Frame[] => c.frames.filter((f) => f.command === 'MESSAGE');
const bodiesOf = (frames: Frame[]): string[] => frames.map((f) => f.body.toString());

async function expectError(c: RawClient, code: string): Promise<Frame> {
  await c.waitUntil(() => c.frames.some((f) => f.command === 'ERROR'), 3000, 'an ERROR');
  const error = c.frames.find((f) => f.command === 'ERROR')!;
  assert.match(header(error, 'message') ?? '', new RegExp(`^${code}: `));
  await c.waitClosed();
  return error;
}

describe('prefetch: unacked queue messages per subscription', { timeout: 15000 }, () => {
  it('prefetch-count:2 takes 2 of 5 queued messages, the queue keeps 3; one ACK lets exactly one more through', async () => {
    const b = await broker();
    const pub = await connected(b);
    await publish(pub, '/queue/pf', ['m1', 'm2', 'm3', 'm4', 'm5']);
    assert.equal(b.router.queueDepth('/queue/pf'), 5);

    const c = await connected(b);
    await subscribe(c, { id: 's', destination: '/queue/pf', ack: 'client-individual', 'prefetch-count': '2' });
    await c.waitUntil(() => messagesOf(c).length >= 2, 3000, '2 messages');
    await c.expectSilence(200);
    assert.deepEqual(bodiesOf(messagesOf(c)), ['m1', 'm2']);
    assert.equal(b.router.queueDepth('/queue/pf'), 3);

    c.sendFrame('ACK', { id: header(messagesOf(c)[0]!, 'ack')!, receipt: 'ack1' });
    await receipt(c, 'ack1');
    await c.expectSilence(200);
    assert.deepEqual(bodiesOf(messagesOf(c)), ['m1', 'm2', 'm3'], 'exactly one more');
    assert.equal(b.router.queueDepth('/queue/pf'), 2);
  });

  it('MAX_UNACKED=3 bounds a subscription without prefetch-count, and a larger prefetch-count too', async () => {
    const b = await broker({ MAX_UNACKED: '3' });
    const pub = await connected(b);
    await publish(pub, '/queue/mu', ['m1', 'm2', 'm3', 'm4', 'm5']);
    await publish(pub, '/queue/mu2', ['n1', 'n2', 'n3', 'n4', 'n5']);

    const c = await connected(b);
    await subscribe(c, { id: 's', destination: '/queue/mu', ack: 'client-individual' });
    await subscribe(c, { id: 't', destination: '/queue/mu2', ack: 'client', 'prefetch-count': '10' });
    await c.waitUntil(() => messagesOf(c).length >= 6, 3000, '6 messages');
    await c.expectSilence(200);
    assert.deepEqual(bodiesOf(messagesOf(c).filter((m) => header(m, 'subscription') === 's')), ['m1', 'm2', 'm3']);
    assert.deepEqual(bodiesOf(messagesOf(c).filter((m) => header(m, 'subscription') === 't')), ['n1', 'n2', 'n3']);
    assert.equal(b.router.queueDepth('/queue/mu'), 2);
    assert.equal(b.router.queueDepth('/queue/mu2'), 2);
  });

  for (const value of ['0', 'abc']) {
    it(`prefetch-count:${value} is refused with INVALID_HEADER`, async () => {
      const b = await broker();
      const c = await connected(b);
      c.sendFrame('SUBSCRIBE', { id: 's', destination: '/queue/bad', ack: 'client-individual', 'prefetch-count': value, receipt: 'r' });
      const error = await expectError(c, 'INVALID_HEADER');
      assert.equal(header(error, 'receipt-id'), 'r');
    });
  }
});

describe('topic client-ack bound', { timeout: 15000 }, () => {
  it('MAX_UNACKED=5: a client-ack topic subscriber gets all 20 messages while owing at most 5 acks', async () => {
    const b = await broker({ MAX_UNACKED: '5' });
    const c = await connected(b, 'topic-acker');
    await subscribe(c, { id: 'ts', destination: '/topic/bound', ack: 'client' });
    const pub = await connected(b);
    const bodies = Array.from({ length: 20 }, (_, i) => `t${i + 1}`);
    await publish(pub, '/topic/bound', bodies);

    await c.waitUntil(() => messagesOf(c).length >= 20, 3000, '20 messages');
    assert.deepEqual(bodiesOf(messagesOf(c)), bodies, 'topics keep delivering');
    const session = [...b.sessions()].find((s) => s.principal?.userId === 'topic-acker');
    assert.ok(session !== undefined);
    const pending = session.subscriptions.get('ts')!.pending.size;
    assert.ok(pending <= 5, `${pending} owed acks`);
    assert.equal(pending, 5);
    const owed = [...session.subscriptions.get('ts')!.pending.values()];
    assert.ok(owed.every((d) => d.message === undefined), 'a topic owes acks, it keeps no messages');

    // A cumulative ACK of the last one settles what is still owed.
    c.sendFrame('ACK', { id: header(messagesOf(c)[19]!, 'ack')!, receipt: 'acked' });
    await receipt(c, 'acked');
    assert.equal(session.subscriptions.get('ts')!.pending.size, 0);
  });
});

describe('a closing session does not take back its own unacked queue messages', { timeout: 15000 }, () => {
  for (const secondAck of ['client-individual', 'auto']) {
    it(`two subscriptions on one queue (the second ${secondAck}): nothing after the DISCONNECT receipt, nothing lost`, async () => {
      const b = await broker();
      const destination = `/queue/closing-${secondAck}`;
      const a = await connected(b, 'holder');
      await subscribe(a, { id: 's1', destination, ack: 'client-individual' });
      await subscribe(a, { id: 's2', destination, ack: secondAck });
      const pub = await connected(b);
      const bodies = ['m1', 'm2', 'm3', 'm4'];
      await publish(pub, destination, bodies);
      await a.waitUntil(() => messagesOf(a).length >= 4, 3000, '4 messages');
      const bySubscription = (id: string) => bodiesOf(messagesOf(a).filter((m) => header(m, 'subscription') === id));
      const heldByS1 = bySubscription('s1');
      const takenByS2 = bySubscription('s2');
      assert.ok(heldByS1.length > 0 && takenByS2.length > 0, `both subscriptions got messages: ${heldByS1} / ${takenByS2}`);
      const unacked = secondAck === 'auto' ? heldByS1 : [...heldByS1, ...takenByS2];

      a.sendFrame('DISCONNECT', { receipt: 'bye' });
      await a.waitClosed();
      const receiptAt = a.frames.findIndex((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'bye');
      assert.ok(receiptAt !== -1, 'the DISCONNECT receipt came');
      const afterReceipt = a.frames.slice(receiptAt + 1);
      assert.deepEqual(afterReceipt.map((f) => `${f.command} ${f.body.toString()}`), [], 'nothing after the RECEIPT');
      assert.equal(messagesOf(a).length, 4);

      assert.equal(b.router.queueDepth(destination), unacked.length, 'the unacked messages wait in the queue');
      const heir = await connected(b, 'heir');
      await subscribe(heir, { id: 'h', destination });
      await heir.waitUntil(() => messagesOf(heir).length >= unacked.length, 3000, `${unacked.length} messages`);
      await heir.expectSilence(200);
      assert.deepEqual(bodiesOf(messagesOf(heir)).sort(), [...unacked].sort(), 'every unacked message reaches the next consumer');
      for (const m of messagesOf(heir)) assert.equal(header(m, 'redelivered'), 'true');
      const seen = secondAck === 'auto' ? [...takenByS2, ...bodiesOf(messagesOf(heir))] : bodiesOf(messagesOf(heir));
      assert.deepEqual(seen.sort(), bodies, 'none lost');
    });
  }
});

describe('transaction size', { timeout: 15000 }, () => {
  it('MAX_TRANSACTION_BYTES=100: 60 body bytes are held, 60 more are refused with TRANSACTION_TOO_LARGE; nothing published', async () => {
    const b = await broker({ MAX_TRANSACTION_BYTES: '100' });
    const listener = await connected(b);
    await subscribe(listener, { id: 'l', destination: '/topic/tx-bytes' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't', receipt: 'begun' });
    await c.expect('RECEIPT');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes', transaction: 't', receipt: 'held' }, 'x'.repeat(60));
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'held');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes', transaction: 't', receipt: 'over' }, 'y'.repeat(60));
    const error = await expectError(c, 'TRANSACTION_TOO_LARGE');
    assert.equal(header(error, 'receipt-id'), 'over');
    await listener.expectSilence(200);
    assert.equal(messagesOf(listener).length, 0);
  });

  it('MAX_TRANSACTION_BYTES counts every open transaction of the session', async () => {
    const b = await broker({ MAX_TRANSACTION_BYTES: '100' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't1' });
    c.sendFrame('BEGIN', { transaction: 't2' });
    c.sendFrame('SEND', { destination: '/topic/tx-bytes2', transaction: 't1', receipt: 'held' }, 'x'.repeat(60));
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'held');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes2', transaction: 't2' }, 'y'.repeat(60));
    await expectError(c, 'TRANSACTION_TOO_LARGE');
  });

  it('MAX_TRANSACTION_FRAMES=2: the third held frame is refused with TRANSACTION_TOO_LARGE', async () => {
    const b = await broker({ MAX_TRANSACTION_FRAMES: '2' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't' });
    c.sendFrame('SEND', { destination: '/topic/tx-frames', transaction: 't' }, 'one');
    c.sendFrame('SEND', { destination: '/topic/tx-frames', transaction: 't', receipt: 'two' }, 'two');
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'two');
    c.sendFrame('SEND', { destination: '/topic/tx-frames', transaction: 't', receipt: 'three' }, 'three');
    const error = await expectError(c, 'TRANSACTION_TOO_LARGE');
    assert.equal(header(error, 'receipt-id'), 'three');
  });
});

describe('subscriptions per session', { timeout: 10000 }, () => {
  it('MAX_SUBSCRIPTIONS_PER_SESSION=2: the third SUBSCRIBE is refused with TOO_MANY_SUBSCRIPTIONS', async () => {
    const b = await broker({ MAX_SUBSCRIPTIONS_PER_SESSION: '2' });
    const c = await connected(b);
    await subscribe(c, { id: 'a', destination: '/topic/a' });
    await subscribe(c, { id: 'b', destination: '/queue/b' });
    c.sendFrame('SUBSCRIBE', { id: 'c', destination: '/topic/c', receipt: 'third' });
    const error = await expectError(c, 'TOO_MANY_SUBSCRIPTIONS');
    assert.equal(header(error, 'receipt-id'), 'third');
  });
});

describe('outbound overflow', { timeout: 15000 }, () => {
  // Overflow at 2 × 64 KiB + 4 KiB buffered in the broker.
  const LIMITS = { WRITE_BUFFER_LIMIT_BYTES: '65536', MAX_FRAME_BYTES: '4096' };
  const PAD = 'r'.repeat(200);
  /** SENDs per write: ~24 KB in, ~23 KB of RECEIPTs out, well under the overflow limit. */
  const PER_CHUNK = 100;

  async function rawConnected(b: RunningServer, login: string): Promise<{ socket: net.Socket; isClosed: () => boolean }> {
    const socket = net.connect(b.tcpPort!, '127.0.0.1');
    h.track(socket);
    socket.on('error', () => undefined);
    let closed = false;
    socket.on('close', () => (closed = true));
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:${login}\n\n\0`);
    await new Promise<void>((resolve) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('CONNECTED')) {
          socket.off('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
    });
    return { socket, isClosed: () => closed };
  }

  /**
   * SENDs asking for ~230-byte RECEIPTs to a topic nobody listens on, in paced chunks (the
   * broker flushes between them), until `stop()` or `maxFrames` or `maxMs`. Returns the count.
   */
  async function sendReceipted(socket: net.Socket, maxFrames: number, maxMs: number, stop: () => boolean): Promise<number> {
    const startedAt = Date.now();
    let sent = 0;
    while (sent < maxFrames && !stop() && Date.now() - startedAt < maxMs) {
      let chunk = '';
      for (let i = 0; i < PER_CHUNK; i++, sent++) chunk += `SEND\ndestination:/topic/nobody-listens\nreceipt:${PAD}-${sent}\n\n\0`;
      if (!socket.write(chunk)) {
        await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), new Promise((resolve) => setTimeout(resolve, 50))]);
      } else {
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    return sent;
  }

  it('a client that does not read even its RECEIPTs is closed: kicked, SLOW_CONSUMER', async () => {
    const b = await broker(LIMITS);
    const disconnects: DisconnectEvent[] = [];
    b.events.on('disconnect', (e) => disconnects.push(e));
    const { socket, isClosed } = await rawConnected(b, 'deaf');
    socket.pause(); // from here on, nothing is read

    // Bounded: 400k SENDs would ask for ~90 MB of RECEIPTs, far past loopback buffers.
    const startedAt = Date.now();
    const isKicked = () => disconnects.some((e) => e.session.userId === 'deaf');
    const sent = await sendReceipted(socket, 400_000, 5000, () => isKicked() || isClosed());
    const deadline = Date.now() + 2000;
    while (!isKicked() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));

    const event = disconnects.find((e) => e.session.userId === 'deaf');
    assert.ok(event !== undefined, `no disconnect after ${sent} SENDs in ${Date.now() - startedAt} ms`);
    assert.equal(event.reason, 'kicked');
    assert.equal(event.errorCode, 'SLOW_CONSUMER');
    assert.equal([...b.sessions()].some((s) => s.principal?.userId === 'deaf'), false, 'the session is gone');
  });

  it('control: a client that reads its RECEIPTs, sending the same way, is not closed', async () => {
    const b = await broker(LIMITS);
    const disconnects: DisconnectEvent[] = [];
    b.events.on('disconnect', (e) => disconnects.push(e));
    const { socket, isClosed } = await rawConnected(b, 'reader');
    let receipts = 0;
    socket.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf('RECEIPT\n'); at !== -1; at = chunk.indexOf('RECEIPT\n', at + 1)) receipts++;
    });
    const sent = await sendReceipted(socket, 20_000, 5000, isClosed); // ~4.6 MB of RECEIPTs
    const deadline = Date.now() + 5000;
    while (receipts < sent && !isClosed() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(disconnects, []);
    assert.equal(isClosed(), false);
    assert.equal(receipts, sent);
  });
  it('a reading client that pipelines more RECEIPTs in one turn than the overflow limit is not closed', async () => {
    // 600 SENDs in one write ask for ~140 KB of RECEIPTs in one turn: over 2 x 64 KiB + 4 KiB,
    // but the reader takes them. Only what the socket still holds from earlier turns counts.
    const b = await broker(LIMITS);
    const disconnects: DisconnectEvent[] = [];
    b.events.on('disconnect', (e) => disconnects.push(e));
    const { socket, isClosed } = await rawConnected(b, 'pipeliner');
    let receipts = 0;
    socket.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf('RECEIPT\n'); at !== -1; at = chunk.indexOf('RECEIPT\n', at + 1)) receipts++;
    });
    let burst = '';
    for (let i = 0; i < 600; i++) burst += `SEND\ndestination:/topic/none\nreceipt:${'r'.repeat(200)}-${i}\n\n\0`;
    socket.write(burst);
    const deadline = Date.now() + 5000;
    while (receipts < 600 && !isClosed() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(receipts, 600);
    assert.deepEqual(disconnects, []);
  });
});
