// Publisher flow control, as clients see it: when most subscribers are behind, the publisher's
// RECEIPT waits and its socket is not read until they drain, and nothing is dropped; a
// minority of slow subscribers never holds it (they get the slow-consumer policy); stalled
// subscribers are given up on; the HTTP API's publish answers once accepted; /metrics shows it.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { Decoder } from '../../src/codec';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { ApiClient, parsePrometheus } from '../helpers/http';
import { RawClient, header } from '../helpers/raw-client';
import { until } from '../helpers/until';

const brokers: RunningServer[] = [];
const sockets: net.Socket[] = [];
const clients: RawClient[] = [];

after(async () => {
  for (const s of sockets) s.destroy();
  for (const c of clients) c.close();
  await Promise.all(brokers.map((b) => b.stop()));
});

/** Holds never end on their own here: only draining (or the test's explicit stall settings) ends them. */
const NO_STALLS = { FLOW_CONTROL_STALL_MS: '600000', FLOW_CONTROL_MAX_HOLD_MS: '3600000' };
/**
 * "Everyone equally slow" with paused sockets: the kernel takes a different amount for each
 * before the broker sees it behind, so one may be behind well before the others, a minority
 * that would be dropped for. Any one of the room behind holds the publisher here.
 */
const ANY_ONE_BEHIND = { FLOW_CONTROL_BEHIND_SHARE: '0.2' };
const BODY_BYTES = 8 * 1024;
/** 24 MiB of 8 KiB messages: more than loopback socket buffers hold, so paused readers fall behind. */
const FLOOD = 3000;

interface Subscriber {
  readonly messages: Frame[];
  readonly socket: net.Socket;
  /** x-dropped summed over the MESSAGEs received. */
  toldDropped(): number;
}

/** A TCP subscriber to `destination` that stops reading after its RECEIPT (until socket.resume()). */
async function pausedSubscriber(b: RunningServer, destination: string, login: string): Promise<Subscriber> {
  const socket = net.connect(b.tcpPort!, '127.0.0.1');
  sockets.push(socket);
  await new Promise((resolve) => socket.once('connect', resolve));
  const messages: Frame[] = [];
  let isSubscribed = false;
  const decoder = new Decoder(
    (frame) => {
      if (frame.command === 'RECEIPT') isSubscribed = true;
      if (frame.command === 'MESSAGE') messages.push(frame);
    },
    { acceptServerCommands: true, limits: { maxFrameBytes: 1 << 20, maxHeaders: 100 } },
  );
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:${login}\n\n\0SUBSCRIBE\nid:1\ndestination:${destination}\nreceipt:r\n\n\0`);
  await until(() => isSubscribed, 'the SUBSCRIBE receipt');
  socket.pause();
  return { messages, socket, toldDropped: () => messages.reduce((sum, m) => sum + Number(header(m, 'x-dropped') ?? 0), 0) };
}

/**
 * All `count` SENDs written at once (the broker reads them as fast as it lets itself), eight
 * to a write (a WebSocket message), the last asking for receipt `done`.
 */
function flood(publisher: RawClient, destination: string, count: number): void {
  for (let i = 0; i < count; i += 8) {
    const frames: Buffer[] = [];
    for (let j = i; j < Math.min(count, i + 8); j++) {
      const receipt = j === count - 1 ? 'receipt:done\n' : '';
      frames.push(Buffer.from(`SEND\ndestination:${destination}\n${receipt}\n${String(j).padEnd(BODY_BYTES, 'x')}\0`));
    }
    publisher.send(Buffer.concat(frames));
  }
}

/** Wait until `subscriber` has `count` MESSAGEs; a timeout says how far it got and what the broker dropped. */
async function untilReceived(b: RunningServer, subscriber: Subscriber, count: number, who: string): Promise<void> {
  try {
    await until(() => subscriber.messages.length >= count, `${who}'s messages`, 60_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${subscriber.messages.length} of ${count}, ${b.router.stats().droppedForSlowConsumers} dropped by the broker`);
  }
}

function hasReceipt(client: RawClient, id: string): boolean {
  return client.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === id);
}

function assertInOrder(messages: readonly Frame[], count: number, who: string): void {
  assert.equal(messages.length, count, `${who}: every message`);
  messages.forEach((m, i) => assert.equal(m.body.toString().replace(/x+$/, ''), String(i), `${who}: message ${i} in order`));
  assert.ok(
    messages.every((m) => header(m, 'x-dropped') === undefined),
    `${who}: nothing dropped`,
  );
}

async function connectedPublisher(b: RunningServer, transport: 'tcp' | 'ws'): Promise<RawClient> {
  const publisher = transport === 'tcp' ? await RawClient.tcp(b.tcpPort!) : await RawClient.ws(b.wsPort!);
  clients.push(publisher);
  await publisher.connect({ login: 'publisher' });
  return publisher;
}

describe('publisher flow control', { timeout: 120_000 }, () => {
  for (const transport of ['tcp', 'ws'] as const) {
    it(`everyone behind: a publisher over ${transport} is held (no RECEIPT, not read) until they drain, and nothing is dropped`, async () => {
      const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', HTTP_PORT: '0', ...NO_STALLS, ...ANY_ONE_BEHIND });
      brokers.push(b);
      const room = [];
      for (let i = 0; i < 4; i++) room.push(await pausedSubscriber(b, '/topic/quiz', `player${i}`));
      const publisher = await connectedPublisher(b, transport);
      flood(publisher, '/topic/quiz', FLOOD);

      // Held for good once a subscriber's socket buffers are full (before that, a hold may end as they take more).
      const api = new ApiClient(b.httpPort!);
      let metrics = new Map<string, number>();
      await until(
        async () => {
          metrics = parsePrometheus((await api.get('/metrics')).text);
          return metrics.get('stompd_flow_held_publishers') === 1;
        },
        '/metrics to show the publisher held',
        20_000,
      );
      assert.ok(metrics.get('stompd_flow_holds_total')! >= 1);
      const sendsRead = (): number => [...b.sessions()].find((s) => s.userId === 'publisher')!.deps.counters.framesIn.SEND!;
      assert.ok(sendsRead() < FLOOD, `held: only ${sendsRead()} of ${FLOOD} SENDs read so far`);
      assert.equal(hasReceipt(publisher, 'done'), false);

      for (const subscriber of room) subscriber.socket.resume();
      await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT once the room drained');
      for (const [i, subscriber] of room.entries()) {
        await untilReceived(b, subscriber, FLOOD, `player${i}`);
        assertInOrder(subscriber.messages, FLOOD, `player${i}`);
      }
      assert.equal(b.router.stats().droppedForSlowConsumers, 0);
      assert.equal(b.router.flow!.stats.heldNow, 0);
      assert.ok(b.router.flow!.stats.releasedByDrain >= 1);
    });
  }

  it('a held publisher is not taken for silent: its heart-beat deadline does not run while its socket is not read', async () => {
    // The publisher must beat every 200 ms; the broker closes it after 400 ms without a byte read.
    const b = await startBroker({ HEARTBEAT: '200,200', WRITE_BUFFER_LIMIT_BYTES: '262144', ...NO_STALLS, ...ANY_ONE_BEHIND });
    brokers.push(b);
    const room = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(b, '/topic/beats', `watcher${i}`));
    const publisher = await RawClient.tcp(b.tcpPort!);
    clients.push(publisher);
    await publisher.connect({ login: 'publisher', 'heart-beat': '200,200' });
    const beating = setInterval(() => publisher.send('\n'), 100);
    const counters = [...b.sessions()].find((s) => s.userId === 'publisher')!.deps.counters;
    try {
      flood(publisher, '/topic/beats', FLOOD);
      // Held for good once the room's socket buffers are full (before, a hold ends as the
      // kernel takes more): the same hold across three of the broker's beats.
      let holds = -1;
      await until(
        async () => {
          const { heldNow, holds: now } = b.router.flow!.stats;
          if (heldNow === 1 && now === holds) return true;
          holds = now;
          const beats = publisher.heartbeatsReceived;
          await publisher.waitUntil(() => publisher.heartbeatsReceived >= beats + 3, 5000, 'three heart-beats');
          return false;
        },
        'the publisher to be held for good',
        60_000,
      );
      // The broker's own beats to the held publisher go on: ten of them span many read deadlines.
      const beatsBefore = publisher.heartbeatsReceived;
      await publisher.waitUntil(() => publisher.heartbeatsReceived >= beatsBefore + 10, 20_000, 'ten heart-beats from the broker while held');
      assert.equal(b.router.flow!.stats.heldNow, 1, 'still held');
      assert.equal(b.router.flow!.stats.holds, holds, 'by the same hold: its socket was not read all along');
      assert.equal(publisher.isClosed, false, 'the held publisher is still connected');
      assert.equal(counters.heartbeatTimeouts, 0, 'no heart-beat timeout');

      for (const subscriber of room) subscriber.socket.resume();
      await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT once the room drained');
      for (const [i, subscriber] of room.entries()) {
        await untilReceived(b, subscriber, FLOOD, `watcher${i}`);
        assertInOrder(subscriber.messages, FLOOD, `watcher${i}`);
      }
      // Read again, its beats count again: it stays connected while it beats.
      await publisher.waitUntil(() => publisher.heartbeatsReceived >= beatsBefore + 15, 20_000, 'more heart-beats once released');
      assert.equal(publisher.isClosed, false);
      assert.equal(counters.heartbeatTimeouts, 0);
    } finally {
      clearInterval(beating);
    }
  });

  it('a minority behind never holds the publisher: the slow one gets the drop policy, the others everything', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', SLOW_CONSUMER_POLICY: 'drop', ...NO_STALLS });
    brokers.push(b);
    const slow = await pausedSubscriber(b, '/topic/room', 'phone');
    const readers: RawClient[] = [];
    for (let i = 0; i < 3; i++) {
      const reader = await RawClient.tcp(b.tcpPort!);
      clients.push(reader);
      await reader.connect({ login: `reader${i}` });
      reader.sendFrame('SUBSCRIBE', { id: 'r', destination: '/topic/room', receipt: 'sub' });
      await reader.expect('RECEIPT');
      readers.push(reader);
    }
    const publisher = await connectedPublisher(b, 'tcp');
    flood(publisher, '/topic/room', FLOOD);
    // Stalls are never judged here, so only a publisher that a minority does not hold gets this.
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT while the slow subscriber still does not read');
    for (const [i, reader] of readers.entries()) {
      await reader.waitUntil(() => reader.frames.filter((f) => f.command === 'MESSAGE').length === FLOOD, 20_000, `reader${i}'s messages`);
      assertInOrder(
        reader.frames.filter((f) => f.command === 'MESSAGE'),
        FLOOD,
        `reader${i}`,
      );
    }
    const phone = [...b.sessions()].find((s) => s.userId === 'phone')!;
    assert.ok(phone.droppedMessages > 0, 'the slow one missed messages');
    // It reads again: whatever it missed, its next MESSAGE says so.
    slow.socket.resume();
    await until(() => slow.messages.length === FLOOD - phone.droppedMessages, 'what was buffered for the slow one', 20_000);
    publisher.sendFrame('SEND', { destination: '/topic/room', receipt: 'last' }, 'last');
    await until(() => slow.messages.length === FLOOD - phone.droppedMessages + 1, 'the message after the gap', 20_000);
    assert.equal(slow.toldDropped(), phone.droppedMessages);
    assert.equal(slow.messages.length + slow.toldDropped(), FLOOD + 1, 'received + told dropped = published');
  });

  it('stalled subscribers (taking nothing for FLOW_CONTROL_STALL_MS) are given up on: the publisher goes on, they get the policy', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', SLOW_CONSUMER_POLICY: 'drop', FLOW_CONTROL_STALL_MS: '200', FLOW_CONTROL_MAX_HOLD_MS: '3600000' });
    brokers.push(b);
    const room = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(b, '/topic/night', `away${i}`));
    const publisher = await connectedPublisher(b, 'tcp');
    flood(publisher, '/topic/night', FLOOD);
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT though nobody reads');
    const stats = b.router.flow!.stats;
    assert.ok(stats.holds >= 1, 'held first');
    assert.ok(stats.stalls >= 3, `then each subscriber found stalled (${stats.stalls})`);
    assert.equal(stats.releasedByTimeout, 0, 'not by the bound: by the stall');
    assert.ok(b.router.stats().droppedForSlowConsumers > 0, 'the stalled got the drop policy');
  });

  it('a publish over the HTTP API that finds most subscribers behind answers once they drained', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', HTTP_PORT: '0', ...NO_STALLS, ...ANY_ONE_BEHIND });
    brokers.push(b);
    const room = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(b, '/topic/news', `reader${i}`));
    const publisher = await connectedPublisher(b, 'tcp');
    flood(publisher, '/topic/news', FLOOD);
    await until(() => b.router.flow!.stats.heldNow === 1, 'the STOMP publisher to be held (the room is behind)', 20_000);

    const api = new ApiClient(b.httpPort!);
    let answered = 0;
    // More than a window of deliveries: the first publishes are answered, then the API is held.
    const publishes = Array.from({ length: 40 }, (_, i) =>
      api.post('/api/publish', { destination: '/topic/news', body: `api ${i}` }).then((response) => {
        answered++;
        return response;
      }),
    );
    await until(() => b.router.flow!.stats.heldNow === 2, 'the API to be held too', 20_000);
    assert.ok(answered < 40, `held: ${answered} of 40 publishes answered`);
    for (const subscriber of room) subscriber.socket.resume();
    const responses = await Promise.all(publishes);
    assert.ok(
      responses.every((r) => r.status === 200),
      JSON.stringify(responses.map((r) => r.status)),
    );
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, "the STOMP publisher's RECEIPT");
    for (const [i, subscriber] of room.entries()) {
      await untilReceived(b, subscriber, FLOOD + 40, `reader${i}`);
      assert.equal(subscriber.toldDropped(), 0);
    }
    assert.equal(b.router.stats().droppedForSlowConsumers, 0);
  });

  it('FLOW_CONTROL=off: publishers are never held, behind subscribers get the policy', async () => {
    const b = await startBroker({ HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', FLOW_CONTROL: 'off' });
    brokers.push(b);
    assert.equal(b.router.flow, undefined);
    for (let i = 0; i < 2; i++) await pausedSubscriber(b, '/topic/off', `s${i}`);
    const publisher = await connectedPublisher(b, 'tcp');
    flood(publisher, '/topic/off', FLOOD);
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT');
    assert.ok(b.router.stats().droppedForSlowConsumers > 0);
  });
});
