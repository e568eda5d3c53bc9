// Bounds as a client sees them: prefetch (MAX_UNACKED, prefetch-count), the topic client-ack
// bound, a closing session's unacked messages, transaction size, the subscription cap, the
// outbound overflow cap for a client that does not even read its RECEIPTs, and the memory
// limits: frame size, frames in progress, held headers, queue bytes and queue count.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import pino from 'pino';
import WebSocket from 'ws';
import type { Frame } from '../../src/codec';
import type { RunningServer, ServerOptions } from '../../src/server';
import type { DisconnectEvent } from '../../src/session/events';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness();
const broker = (overrides: Record<string, string> = {}, options: ServerOptions = {}): Promise<RunningServer> => h.broker(overrides, options);
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
    assert.ok(
      owed.every((d) => d.message === undefined),
      'a topic owes acks, it keeps no messages',
    );

    // A cumulative ACK of the last one covers what is still owed.
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
      assert.ok(heldByS1.length > 0 && takenByS2.length > 0, `both subscriptions got messages: ${heldByS1.join(',')} / ${takenByS2.join(',')}`);
      const unacked = secondAck === 'auto' ? heldByS1 : [...heldByS1, ...takenByS2];

      a.sendFrame('DISCONNECT', { receipt: 'bye' });
      await a.waitClosed();
      const receiptAt = a.frames.findIndex((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === 'bye');
      assert.ok(receiptAt !== -1, 'the DISCONNECT receipt came');
      const afterReceipt = a.frames.slice(receiptAt + 1);
      assert.deepEqual(
        afterReceipt.map((f) => `${f.command} ${f.body.toString()}`),
        [],
        'nothing after the RECEIPT',
      );
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
  // A held SEND counts its body, its headers and ~0.6 KB of overhead (heldByteSize).
  it('MAX_TRANSACTION_BYTES=2000: a 600-byte body is held, another is refused with TRANSACTION_TOO_LARGE; nothing published', async () => {
    const b = await broker({ MAX_TRANSACTION_BYTES: '2000' });
    const listener = await connected(b);
    await subscribe(listener, { id: 'l', destination: '/topic/tx-bytes' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't', receipt: 'begun' });
    await c.expect('RECEIPT');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes', transaction: 't', receipt: 'held' }, 'x'.repeat(600));
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'held');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes', transaction: 't', receipt: 'over' }, 'y'.repeat(600));
    const error = await expectError(c, 'TRANSACTION_TOO_LARGE');
    assert.equal(header(error, 'receipt-id'), 'over');
    await listener.expectSilence(200);
    assert.equal(messagesOf(listener).length, 0);
  });

  it('MAX_TRANSACTION_BYTES counts every open transaction of the session', async () => {
    const b = await broker({ MAX_TRANSACTION_BYTES: '2000' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't1' });
    c.sendFrame('BEGIN', { transaction: 't2' });
    c.sendFrame('SEND', { destination: '/topic/tx-bytes2', transaction: 't1', receipt: 'held' }, 'x'.repeat(600));
    assert.equal(header(await c.expect('RECEIPT'), 'receipt-id'), 'held');
    c.sendFrame('SEND', { destination: '/topic/tx-bytes2', transaction: 't2' }, 'y'.repeat(600));
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
    assert.equal(
      [...b.sessions()].some((s) => s.principal?.userId === 'deaf'),
      false,
      'the session is gone',
    );
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

// --- Memory limits (issue 13): what a client sends cannot grow the broker without bound ---

/** A connected client over `transport`. */
async function client(b: RunningServer, transport: 'tcp' | 'ws', login = 'u'): Promise<RawClient> {
  const c = transport === 'tcp' ? await h.tcp(b) : await h.ws(b);
  await c.connect({ login });
  return c;
}

/** A body of `bytes` bytes with a recognisable pattern. */
function patterned(bytes: number): Buffer {
  const body = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) body[i] = 0x61 + (i % 26);
  return body;
}

/** The broker still serves: a SEND with a receipt round trip on a fresh or given client. */
async function stillServes(c: RawClient, id: string): Promise<void> {
  c.sendFrame('SEND', { destination: '/topic/alive', receipt: id }, 'ping');
  await receipt(c, id);
}

describe('body sizes as RabbitMQ users expect (default MAX_FRAME_BYTES: 4 MiB)', { timeout: 30000 }, () => {
  for (const transport of ['tcp', 'ws'] as const) {
    for (const [label, bytes] of [
      ['1 MiB', 1024 * 1024],
      ['3.9 MiB', Math.floor(3.9 * 1024 * 1024)],
    ] as const) {
      it(`a ${label} body goes through over ${transport} with default settings`, async () => {
        const b = await broker();
        const consumer = await client(b, transport, 'consumer');
        await subscribe(consumer, { id: 's', destination: `/queue/big-${transport}` });
        const producer = await client(b, transport, 'producer');
        const body = patterned(bytes);
        producer.sendFrame('SEND', { destination: `/queue/big-${transport}`, receipt: 'sent' }, body);
        await receipt(producer, 'sent');
        await consumer.waitUntil(() => messagesOf(consumer).length === 1, 10000, 'the MESSAGE');
        assert.ok(messagesOf(consumer)[0]!.body.equals(body), 'the same bytes');
      });
    }

    it(`a 4 MiB + 1 byte body is refused with FRAME_TOO_LARGE over ${transport}; others go on`, async () => {
      const b = await broker();
      const other = await client(b, 'tcp', 'other');
      const c = await client(b, transport, 'sender');
      c.sendFrame('SEND', { destination: '/queue/too-big', receipt: 'r' }, patterned(4 * 1024 * 1024 + 1));
      await expectError(c, 'FRAME_TOO_LARGE');
      await stillServes(other, 'alive');
      assert.equal(b.router.queueDepth('/queue/too-big'), 0);
      assert.equal(b.pendingBudget.usedBytes, 0, 'the refused frame gave its bytes back');
    });
  }
});

describe('frames in progress: bounded per connection and across connections', { timeout: 30000 }, () => {
  it('a frame sent as 1-byte WebSocket messages is served, holding about its size, and others keep working', async () => {
    const b = await broker();
    const consumer = await client(b, 'tcp', 'consumer');
    await subscribe(consumer, { id: 's', destination: '/queue/dribble' });
    const subscriptionBytes = b.pendingBudget.usedBytes; // the subscription is counted too
    const other = await client(b, 'tcp', 'other');
    const c = await client(b, 'ws', 'dribbler');
    const body = patterned(20 * 1024);
    const frame = Buffer.concat([Buffer.from(`SEND\ndestination:/queue/dribble\nx-pad:${'p'.repeat(2000)}\n\n`), body, Buffer.from([0])]);
    let maxHeld = 0;
    for (let i = 0; i < frame.length; i++) {
      c.send(frame.subarray(i, i + 1));
      if (i % 2000 === 1999) {
        await new Promise((resolve) => setTimeout(resolve, 5)); // let the broker read
        maxHeld = Math.max(maxHeld, b.pendingBudget.usedBytes - subscriptionBytes);
        if (i === 9999) await stillServes(other, 'meanwhile');
      }
    }
    await consumer.waitUntil(() => messagesOf(consumer).length === 1, 10000, 'the MESSAGE');
    assert.ok(messagesOf(consumer)[0]!.body.equals(body));
    assert.ok(maxHeld > 0, 'the frame in progress was accounted');
    // ~2x its bytes at most (capacity doubling), plus what ws holds of messages in progress.
    assert.ok(maxHeld <= 2 * frame.length + 64 * 1024, `${maxHeld} bytes held for a ${frame.length}-byte frame`);
    assert.equal(b.pendingBudget.usedBytes, subscriptionBytes, 'nothing held once the frame is out');
    await stillServes(other, 'after');
  });

  it('MAX_PENDING_FRAME_BYTES: a partial frame past the budget gets SERVER_BUSY, the budget is given back, others go on', async () => {
    const b = await broker({ MAX_PENDING_FRAME_BYTES: String(64 * 1024) });
    const other = await client(b, 'tcp', 'other');
    const hog = await client(b, 'tcp', 'hog');
    hog.send(`SEND\ndestination:/queue/hog\ncontent-length:${200 * 1024}\n\n`);
    const part = patterned(8 * 1024);
    for (let i = 0; i < 16 && !hog.isClosed; i++) {
      hog.send(part);
      await new Promise((resolve) => setTimeout(resolve, 10)); // separate reads
    }
    await expectError(hog, 'SERVER_BUSY');
    assert.equal(b.pendingBudget.usedBytes, 0);
    assert.ok(b.pendingBudget.refusedCount >= 1);
    await stillServes(other, 'alive');
    // A frame that fits is still taken, even split.
    const frame = Buffer.from(`SEND\ndestination:/topic/fits\nreceipt:fits\n\n${'f'.repeat(20 * 1024)}\0`);
    for (let i = 0; i < frame.length; i += 4096) other.send(frame.subarray(i, i + 4096));
    await receipt(other, 'fits');
  });

  it('MAX_PENDING_FRAME_BYTES counts a WebSocket message in progress (sent as fragments)', async () => {
    const b = await broker({ MAX_PENDING_FRAME_BYTES: String(64 * 1024) });
    const other = await client(b, 'tcp', 'other');
    const ws = rawWebSocket(b);
    ws.on('error', () => undefined);
    const received: string[] = [];
    ws.on('message', (data: Buffer) => received.push(data.toString()));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:frag\n\n\0');
    await waitFor(() => received.some((m) => m.startsWith('CONNECTED')), 'CONNECTED');
    ws.send('SEND\ndestination:/queue/frag\n\n', { fin: false });
    for (let i = 0; i < 20 && ws.readyState === WebSocket.OPEN; i++) {
      ws.send(patterned(8 * 1024), { fin: false });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await waitFor(() => received.some((m) => m.startsWith('ERROR')), 'an ERROR');
    assert.match(
      received.find((m) => m.startsWith('ERROR'))!,
      /message:SERVER_BUSY\\c /,
    );
    await waitFor(() => ws.readyState === WebSocket.CLOSED, 'the close');
    assert.equal(b.pendingBudget.usedBytes, 0);
    await stillServes(other, 'alive');
  });

  it('a WebSocket message in thousands of tiny fragments is closed (1008) before it costs much; a few fragments are fine', async () => {
    const b = await broker();
    const open = async (): Promise<{ ws: WebSocket; received: string[]; closeCode: () => number | undefined }> => {
      const ws = rawWebSocket(b);
      ws.on('error', () => undefined);
      const received: string[] = [];
      let code: number | undefined;
      ws.on('message', (data: Buffer) => received.push(data.toString()));
      ws.on('close', (c: number) => (code = c));
      await new Promise((resolve) => ws.once('open', resolve));
      ws.send('CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:frag\n\n\0');
      await waitFor(() => received.some((m) => m.startsWith('CONNECTED')), 'CONNECTED');
      return { ws, received, closeCode: () => code };
    };
    const polite = await open();
    polite.ws.send('SEND\ndestination:/topic/x\nreceipt:few\n\n', { fin: false });
    for (let i = 0; i < 100; i++) polite.ws.send(patterned(100), { fin: false });
    polite.ws.send('\0', { fin: true });
    await waitFor(() => polite.received.some((m) => m.includes('receipt-id:few')), 'the RECEIPT');

    const rude = await open();
    rude.ws.send('SEND\ndestination:/topic/x\n\n', { fin: false });
    const one = Buffer.from('a');
    for (let i = 0; i < 10000 && rude.ws.readyState === WebSocket.OPEN; i++) {
      rude.ws.send(one, { fin: false });
      if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
    }
    await waitFor(() => rude.closeCode() !== undefined, 'the close');
    assert.equal(rude.closeCode(), 1008);
    assert.equal(b.pendingBudget.usedBytes, 0);
    const other = await client(b, 'ws', 'other');
    await stillServes(other, 'alive');
  });
});

describe('held frames count their headers', { timeout: 30000 }, () => {
  /** ~450 KB of headers and an empty body: what bodies-only accounting missed. */
  const heavyHeaders = (): Record<string, string> => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < 56; i++) headers[`x-h${i}`] = String(i % 10).repeat(8000);
    return headers;
  };

  it('header-heavy SENDs with empty bodies fill MAX_TRANSACTION_BYTES (8 MiB): TRANSACTION_TOO_LARGE, budget given back', async () => {
    const b = await broker();
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't' });
    let held = 0;
    for (let i = 0; i < 40 && !c.isClosed; i++) {
      c.sendFrame('SEND', { destination: '/queue/heavy', transaction: 't', receipt: `r${i}`, ...heavyHeaders() });
      try {
        await receipt(c, `r${i}`);
        held++;
      } catch {
        break;
      }
    }
    await expectError(c, 'TRANSACTION_TOO_LARGE');
    assert.ok(held >= 15 && held <= 18, `${held} frames of ~450 KB held under 8 MiB`);
    await c.waitClosed();
    assert.equal(b.pendingBudget.usedBytes, 0, 'the closed session gave its transaction bytes back');
  });

  it('header-heavy SENDs into queues without consumers count against MAX_TOTAL_QUEUE_BYTES: QUEUE_FULL', async () => {
    const b = await broker({ MAX_TOTAL_QUEUE_BYTES: String(2 * 1024 * 1024) });
    const c = await connected(b);
    let accepted = 0;
    for (let i = 0; i < 10 && !c.isClosed; i++) {
      c.sendFrame('SEND', { destination: `/queue/heavy-${i}`, receipt: `r${i}`, ...heavyHeaders() });
      try {
        await receipt(c, `r${i}`);
        accepted++;
      } catch {
        break;
      }
    }
    await expectError(c, 'QUEUE_FULL');
    assert.equal(accepted, 4, 'four ~450 KB messages fit in 2 MiB');
    const stats = b.router.stats();
    assert.ok(stats.queuedBytes <= 2 * 1024 * 1024 && stats.queuedBytes > 4 * 448000, `${stats.queuedBytes} bytes queued`);
    assert.equal(stats.refusedQueueFull, 1);
  });
});

describe('queue byte budgets and the number of queues', { timeout: 30000 }, () => {
  it('MAX_QUEUE_BYTES: a queue drops its oldest past its bytes, counted in stats() and one log line', async () => {
    type LogLine = { msg: string; droppedMessages?: number };
    const lines: LogLine[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) });
    const b = await broker({ MAX_QUEUE_BYTES: '10000' }, { logger });
    const c = await connected(b);
    const bodies = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(2, '0')}${'b'.repeat(998)}`);
    await publish(c, '/queue/bytes', bodies);
    const depth = b.router.queueDepth('/queue/bytes');
    assert.ok(depth >= 4 && depth <= 7, `${depth} messages of ~1.6 KB kept in 10000 bytes`);
    const stats = b.router.stats();
    assert.equal(stats.droppedFromQueues, 20 - depth);
    assert.ok(stats.queuedBytes <= 10000);
    assert.ok(stats.droppedBytesFromQueues > (20 - depth) * 1000);
    const limitLines = lines.filter((l) => l.msg.startsWith('queue limits'));
    assert.equal(limitLines.length, 1, 'rate-limited: one line for a burst of drops');
    assert.equal(limitLines[0]!.droppedMessages, 1);

    const consumer = await connected(b);
    await subscribe(consumer, { id: 's', destination: '/queue/bytes' });
    await consumer.waitUntil(() => messagesOf(consumer).length === depth, 3000, `${depth} messages`);
    assert.deepEqual(bodiesOf(messagesOf(consumer)), bodies.slice(20 - depth), 'the newest are kept');
    assert.equal(b.router.stats().queuedBytes, 0);
  });

  it('unacknowledged queue messages stay counted until ACKed', async () => {
    const b = await broker();
    const c = await connected(b);
    await publish(c, '/queue/unacked', ['a'.repeat(1000), 'b'.repeat(1000)]);
    const queued = b.router.stats().queuedBytes;
    assert.ok(queued > 2000);
    const consumer = await connected(b);
    await subscribe(consumer, { id: 's', destination: '/queue/unacked', ack: 'client-individual' });
    await consumer.waitUntil(() => messagesOf(consumer).length === 2, 3000, '2 messages');
    assert.equal(b.router.queueDepth('/queue/unacked'), 0);
    assert.equal(b.router.stats().queuedBytes, queued, 'delivered, not acknowledged: still held');
    consumer.sendFrame('ACK', { id: header(messagesOf(consumer)[0]!, 'ack')!, receipt: 'a1' });
    await receipt(consumer, 'a1');
    assert.ok(b.router.stats().queuedBytes < queued && b.router.stats().queuedBytes > 1000);
    consumer.sendFrame('ACK', { id: header(messagesOf(consumer)[1]!, 'ack')!, receipt: 'a2' });
    await receipt(consumer, 'a2');
    assert.equal(b.router.stats().queuedBytes, 0);
  });

  it('MAX_TOTAL_QUEUE_BYTES: a SEND past it is refused with QUEUE_FULL; room comes back as consumers take messages', async () => {
    const b = await broker({ MAX_TOTAL_QUEUE_BYTES: '8000' });
    const c = await connected(b);
    await publish(c, '/queue/t1', ['x'.repeat(2500), 'y'.repeat(2500)]);
    c.sendFrame('SEND', { destination: '/queue/t2', receipt: 'over' }, 'z'.repeat(2500));
    const error = await expectError(c, 'QUEUE_FULL');
    assert.equal(header(error, 'receipt-id'), 'over');
    assert.equal(b.router.queueDepth('/queue/t1'), 2, 'nothing of another queue was dropped');
    assert.equal(b.router.queueDepth('/queue/t2'), 0);
    assert.equal(b.router.stats().refusedQueueFull, 1);

    const consumer = await connected(b);
    await subscribe(consumer, { id: 's', destination: '/queue/t1' });
    await consumer.waitUntil(() => messagesOf(consumer).length === 2, 3000, '2 messages');
    const again = await connected(b);
    await publish(again, '/queue/t2', ['z'.repeat(2500)]);
    assert.equal(b.router.queueDepth('/queue/t2'), 1);
  });

  it('a COMMIT whose SENDs would pass MAX_TOTAL_QUEUE_BYTES is refused whole (QUEUE_FULL): nothing published', async () => {
    const b = await broker({ MAX_TOTAL_QUEUE_BYTES: '8000' });
    const c = await connected(b);
    c.sendFrame('BEGIN', { transaction: 't' });
    for (let i = 0; i < 3; i++) c.sendFrame('SEND', { destination: '/queue/tx', transaction: 't' }, 'q'.repeat(2500));
    c.sendFrame('COMMIT', { transaction: 't', receipt: 'commit' });
    const error = await expectError(c, 'QUEUE_FULL');
    assert.equal(header(error, 'receipt-id'), 'commit');
    assert.equal(b.router.queueDepth('/queue/tx'), 0, 'all or nothing');
    assert.equal(b.pendingBudget.usedBytes, 0);
  });

  it('MAX_QUEUES=3: a SEND or SUBSCRIBE creating a fourth queue is refused with QUEUE_LIMIT; existing queues still work', async () => {
    const b = await broker({ MAX_QUEUES: '3' });
    const c = await connected(b);
    await publish(c, '/queue/a', ['1']);
    await publish(c, '/queue/b', ['1']);
    await publish(c, '/queue/c', ['1']);
    c.sendFrame('SEND', { destination: '/queue/d', receipt: 'fourth' }, '1');
    const error = await expectError(c, 'QUEUE_LIMIT');
    assert.equal(header(error, 'receipt-id'), 'fourth');
    const other = await connected(b);
    await publish(other, '/queue/a', ['2']);
    assert.equal(b.router.queueDepth('/queue/a'), 2);
    await subscribe(other, { id: 'on-a', destination: '/queue/a' });
    assert.equal(b.router.stats().queues, 3);
    other.sendFrame('SUBSCRIBE', { id: 'on-e', destination: '/queue/e', receipt: 'fifth' });
    await expectError(other, 'QUEUE_LIMIT');
    assert.equal(b.router.stats().refusedQueueLimit, 2);
  });
});

/** A plain `ws` client (to send fragments), terminated after the file's tests. */
function rawWebSocket(b: RunningServer): WebSocket {
  const ws = new WebSocket(`ws://127.0.0.1:${b.wsPort!}/ws`, ['v12.stomp']);
  h.track({ destroy: () => ws.terminate() });
  return ws;
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
