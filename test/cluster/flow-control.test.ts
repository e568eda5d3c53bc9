// Publisher flow control with Redis, two instances on one real redis-server: the subscribers
// on the publisher's own instance hold it as in embedded mode (while those on the other
// instance receive everything); subscribers behind on the other instance hold it too, through
// that instance's congestion report, and nothing is dropped; and such a hold is bounded:
// subscribers there that take nothing are given up on (FLOW_CONTROL_STALL_MS) and the
// publisher goes on. Outcomes only, no timings.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Decoder } from '../../src/codec';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { until } from '../helpers/until';

const brokers: RunningServer[] = [];
const sockets: net.Socket[] = [];
const clients: RawClient[] = [];
let redis: RedisServer;

before(async () => {
  redis = await startRedis();
});

after(async () => {
  for (const s of sockets) s.destroy();
  for (const c of clients) c.close();
  await Promise.all(brokers.map((b) => b.stop()));
  await redis?.stop();
});

/** Holds end only by draining here, unless a test sets the stall bound. */
const NO_STALLS = { FLOW_CONTROL_STALL_MS: '600000', FLOW_CONTROL_MAX_HOLD_MS: '3600000' };
/** Paused sockets fall behind unevenly (the kernel takes a different amount for each): any one behind holds. */
const ANY_ONE_BEHIND = { FLOW_CONTROL_BEHIND_SHARE: '0.2' };
const BODY_BYTES = 8 * 1024;
/** 24 MiB of 8 KiB messages: more than loopback socket buffers hold. */
const FLOOD = 3000;

async function pair(env: Record<string, string>): Promise<[RunningServer, RunningServer]> {
  const common = { REDIS_URL: redis.url, HEARTBEAT: '0,0', WRITE_BUFFER_LIMIT_BYTES: '262144', ...env };
  const a = await startBroker({ ...common, INSTANCE_ID: `flow-a-${brokers.length}` });
  const b = await startBroker({ ...common, INSTANCE_ID: `flow-b-${brokers.length}` });
  brokers.push(a, b);
  return [a, b];
}

interface Subscriber {
  readonly messages: Frame[];
  readonly socket: net.Socket;
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

async function readingSubscriber(b: RunningServer, destination: string, login: string): Promise<RawClient> {
  const reader = await RawClient.tcp(b.tcpPort!);
  clients.push(reader);
  await reader.connect({ login });
  reader.sendFrame('SUBSCRIBE', { id: 'r', destination, receipt: 'sub' });
  await reader.expect('RECEIPT');
  return reader;
}

/** All `count` SENDs written at once, eight to a write, the last asking for receipt `done`. */
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

async function untilReceived(subscriber: Subscriber, count: number, who: string, dropped: () => number): Promise<void> {
  try {
    await until(() => subscriber.messages.length >= count, `${who}'s messages`, 60_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}: ${subscriber.messages.length} of ${count}, ${dropped()} dropped by the broker`);
  }
}

async function connectedPublisher(b: RunningServer): Promise<RawClient> {
  const publisher = await RawClient.tcp(b.tcpPort!);
  clients.push(publisher);
  await publisher.connect({ login: 'host' });
  return publisher;
}

/** The publisher's SENDs the broker has read so far. */
function sendsRead(b: RunningServer): number {
  return [...b.sessions()].find((s) => s.userId === 'host')!.deps.counters.framesIn.SEND ?? 0;
}

describe('publisher flow control with Redis (two instances)', { timeout: 180_000 }, () => {
  it("subscribers behind on the publisher's instance hold it as in embedded mode; the other instance's reader gets everything", async () => {
    const [a, b] = await pair({ ...NO_STALLS, ...ANY_ONE_BEHIND });
    const room: Subscriber[] = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(a, '/topic/quiz', `local${i}`));
    const remoteReader = await readingSubscriber(b, '/topic/quiz', 'remote');
    const publisher = await connectedPublisher(a);
    flood(publisher, '/topic/quiz', FLOOD);

    await until(() => a.router.flow!.stats.heldNow === 1 && sendsRead(a) < FLOOD, 'the publisher to be held with SENDs unread', 30_000);
    assert.equal(hasReceipt(publisher, 'done'), false);

    for (const subscriber of room) subscriber.socket.resume();
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 60_000, 'the RECEIPT once the room drained');
    for (const [i, subscriber] of room.entries()) {
      await untilReceived(subscriber, FLOOD, `local${i}`, () => a.router.stats().droppedForSlowConsumers);
      assertInOrder(subscriber.messages, FLOOD, `local${i}`);
    }
    const remoteMessages = (): Frame[] => remoteReader.frames.filter((f) => f.command === 'MESSAGE');
    await remoteReader.waitUntil(() => remoteMessages().length === FLOOD, 60_000, "the other instance's reader's messages");
    assertInOrder(remoteMessages(), FLOOD, 'remote');
    assert.equal(a.router.stats().droppedForSlowConsumers, 0);
    assert.equal(b.router.stats().droppedForSlowConsumers, 0);
    assert.ok(a.router.flow!.stats.releasedByDrain >= 1);
  });

  it('subscribers behind on another instance hold the publisher too (their instance reports them), and nothing is dropped', async () => {
    const [a, b] = await pair({ ...NO_STALLS, ...ANY_ONE_BEHIND });
    const room: Subscriber[] = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(b, '/topic/far', `far${i}`));
    const publisher = await connectedPublisher(a);
    flood(publisher, '/topic/far', FLOOD);

    // B holds its fan-out of A's messages, says so, and A holds its publisher: the SENDs wait on A, unread.
    await until(() => b.router.flow!.stats.heldNow === 1, "B's fan-out held for its subscribers", 30_000);
    await until(() => a.router.flow!.stats.heldNow === 1 && sendsRead(a) < FLOOD, 'the publisher on A held by the report from B', 30_000);
    assert.equal(hasReceipt(publisher, 'done'), false);
    // What waits on B is bounded by the hold on A, far below RELAY_BACKLOG_BYTES: nothing is dropped there.
    assert.equal(b.router.remoteStats.dropped, 0);

    for (const subscriber of room) subscriber.socket.resume();
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 90_000, 'the RECEIPT once the room on B drained');
    for (const [i, subscriber] of room.entries()) {
      await untilReceived(subscriber, FLOOD, `far${i}`, () => b.router.stats().droppedForSlowConsumers + b.router.remoteStats.dropped);
      assertInOrder(subscriber.messages, FLOOD, `far${i}`);
    }
    assert.equal(b.router.stats().droppedForSlowConsumers, 0);
    assert.equal(b.router.remoteStats.dropped, 0);
  });

  it('a hold for subscribers on another instance that take nothing is bounded: they are given up on there, the publisher gets its RECEIPT', async () => {
    const [a, b] = await pair({ ...ANY_ONE_BEHIND, FLOW_CONTROL_STALL_MS: '300', FLOW_CONTROL_MAX_HOLD_MS: '3600000', SLOW_CONSUMER_POLICY: 'drop' });
    const room: Subscriber[] = [];
    for (let i = 0; i < 3; i++) room.push(await pausedSubscriber(b, '/topic/gone', `gone${i}`));
    const publisher = await connectedPublisher(a);
    flood(publisher, '/topic/gone', FLOOD);

    // Nobody on B ever reads again.
    await publisher.waitUntil(() => hasReceipt(publisher, 'done'), 90_000, 'the RECEIPT though the room on B reads nothing');
    assert.ok(a.router.flow!.stats.holds >= 1, 'A held its publisher for the room on B first');
    assert.ok(b.router.flow!.stats.stalls >= 3, `B gave up on each of them (${b.router.flow!.stats.stalls})`);
    await until(() => b.router.remoteStats.waitingMessages === 0, "B's backlog to be empty");
    assert.ok(b.router.stats().droppedForSlowConsumers > 0, 'the stalled ones got the drop policy on B');
    await until(() => a.router.flow!.stats.heldNow === 0, "A to hold nobody once B's report lapsed");
  });
});
